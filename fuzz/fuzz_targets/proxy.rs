//! Fuzz target: the PROXY protocol header (`transport/proxy_header.rs`) fed anything a
//! balancer could send before TLS. The framing and checks are in `shared/proxy.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/proxy.rs"]
mod input;

fuzz_target!(|data: &[u8]| {
    let _ = input::run(data);
});
