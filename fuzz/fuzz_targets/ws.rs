//! Fuzz target: the WebSocket upgrade and the frames ↔ bytes adapter (`transport/ws.rs`,
//! `transport/ws_stream.rs`) fed anything from the peer side. The input format and the checks
//! are in `shared/ws.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/ws.rs"]
mod input;

fuzz_target!(|data: &[u8]| {
    let _ = input::run(data);
});
