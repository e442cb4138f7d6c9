//! The policy loader's fuzz input, shared by the `policy` target and `tests/fuzz_corpus.rs`
//! (which replays the committed corpus in `cargo test`).
//!
//! An input is a file's bytes. `ops/load.rs` refuses anything that is not UTF-8 before a parser
//! sees it; the text is then read the way `moat check` reads its files, with the pure halves of
//! `load_config` and `load_policy`: as moat.yaml (`config::parse`) and as a policy file
//! (`policy::password_files`, then `policy::compile_with_files`). A line `---8<---` cuts the
//! input into parts: the first is moat.yaml and the first policy file, the second (default: the
//! first) is the text of every password file the policy names (`password_file:`), the third a
//! second policy file (policies merge across files).
//!
//! Checked beyond "never panics": every error names a file that was loaded, and a loaded
//! configuration has at least one listener, with unique names.

use std::path::{Path, PathBuf};

use moat::config::{self, Config};
use moat::policy::{self, Policy, PolicySource};

/// The name moat.yaml is loaded under.
pub const CONFIG: &str = "fuzz/moat.yaml";
/// The names the policy files are loaded under.
pub const POLICIES: [&str; 2] = ["fuzz/policy.yaml", "fuzz/second.yaml"];
/// The line that separates the parts of an input.
pub const CUT: &str = "\n---8<---\n";

/// Loads one input; `None` for a part that was refused (after checking the error).
pub fn load(data: &[u8]) -> (Option<Config>, Option<Policy>) {
    let Ok(text) = std::str::from_utf8(data) else {
        return (None, None);
    };
    let parts: Vec<&str> = text.splitn(3, CUT).collect();
    let first = parts.first().copied().unwrap_or_default();
    let config = match config::parse(first, Path::new(CONFIG)) {
        Ok(cfg) => {
            assert!(
                !cfg.listeners.is_empty(),
                "a configuration without listeners"
            );
            for (i, l) in cfg.listeners.iter().enumerate() {
                let again = cfg.listeners.iter().skip(i + 1).any(|o| o.name == l.name);
                assert!(!again, "two listeners named {:?}", l.name);
            }
            Some(cfg)
        }
        Err(e) => {
            assert_eq!(e.at.file, Path::new(CONFIG), "{e}");
            None
        }
    };
    let passwords = parts.get(1).copied().unwrap_or(first);
    let mut sources = vec![PolicySource {
        path: POLICIES[0].into(),
        text: first.to_owned(),
    }];
    if let Some(second) = parts.get(2) {
        sources.push(PolicySource {
            path: POLICIES[1].into(),
            text: (*second).to_owned(),
        });
    }
    let mut loaded: Vec<PathBuf> = sources.iter().map(|s| s.path.clone()).collect();
    let policy = policy::password_files(&sources).and_then(|paths| {
        let files: Vec<PolicySource> = paths
            .into_iter()
            .map(|path| PolicySource {
                path,
                text: passwords.to_owned(),
            })
            .collect();
        loaded.extend(files.iter().map(|f| f.path.clone()));
        policy::compile_with_files(&sources, &files)
    });
    let policy = match policy {
        Ok(policy) => Some(policy),
        Err(e) => {
            assert!(loaded.contains(&e.at.file), "{e} names a file not loaded");
            None
        }
    };
    (config, policy)
}

/// What `moat check` does with a compiled policy besides printing: its test cases, and the
/// decisions `moat explain` makes.
pub fn exercise(policy: &Policy) {
    for outcome in policy.run_cases() {
        let _ = outcome.passed();
    }
    let subject = policy::Subject::describe(
        Some("alice"),
        None,
        None,
        None,
        std::net::IpAddr::from([192, 0, 2, 1]),
    );
    for topic in ["a/b", "#", "$SYS/x", "alice/x"] {
        let _ = policy.authorize_subscribe(&subject, topic);
        let _ = policy.authorize_receive(&subject, topic);
    }
    let _ = policy.summary();
}
