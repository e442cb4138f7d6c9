//! Fuzz target: any bytes as moat.yaml and as policy files (with the password files they name)
//! are an error that names its file, or a configuration and a policy — never a panic, and
//! within libFuzzer's time and memory limits (`scripts/fuzz` sets them). The input format is in
//! `shared/policy.rs`; a loaded pair then goes through everything else `moat check` does
//! (summary, descriptor budget, the policy's test cases).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat::config::Config;
use moat::policy::Policy;

#[path = "shared/policy.rs"]
mod input;

fuzz_target!(|data: &[u8]| {
    let (config, policy) = input::load(data);
    if let Some(policy) = &policy {
        input::exercise(policy);
    }
    // A text is rarely both a valid moat.yaml and a valid policy: the summary of whichever
    // loaded is printed next to the default of the other.
    if config.is_some() || policy.is_some() {
        let cfg = config.unwrap_or_else(|| Config::default_for_dir(Path::new("fuzz")));
        let policy = policy.unwrap_or_else(Policy::deny_all);
        let _ = moat::fuzzing::check_summary(Path::new(input::CONFIG), &cfg, &policy);
    }
});
