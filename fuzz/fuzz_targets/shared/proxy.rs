//! The `proxy` target's input and checks, shared with `tests/fuzz_corpus.rs` (which replays the
//! corpus through them in every `cargo test`).
//!
//! The input is what a balancer could send before TLS. It is framed exactly as
//! `proxy_header::read` frames a socket (`next_read`, one permitted step at a time) for each
//! accepted-version setting, and what is framed is parsed. Beyond "never panics": every step
//! reads at least one byte and never past the header's bound; a complete v1 header ends at its
//! first `\r\n` and a complete v2 header is exactly its fixed part plus its declared length, so
//! a TLS byte after the header is never consumed. `parse` is also fed the raw input.
#![allow(clippy::indexing_slicing)] // a fuzz check: a panic is a finding

use moat::config::ProxyProtocol;
use moat::transport::proxy_header::{
    next_read, parse, Origin, Step, MAX_V2_LENGTH, V1_MAX, V2_SIGNATURE,
};

/// Runs the checks on `data`; returns what the `any` setting made of it (`None`: refused or
/// incomplete), so the corpus test can assert its seeds parse.
pub fn run(data: &[u8]) -> Option<Origin> {
    let mut any = None;
    for accepted in [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any] {
        let mut buf: Vec<u8> = Vec::new();
        let mut rest = data;
        loop {
            match next_read(&buf, accepted) {
                Err(_) => break,
                Ok(Step::Read(n)) => {
                    assert!(n > 0, "a step that reads nothing loops forever");
                    assert!(buf.len() + n <= 16 + MAX_V2_LENGTH, "read past any header");
                    let Some((more, tail)) = rest.split_at_checked(n) else {
                        break; // the peer stopped sending: `read` times out
                    };
                    buf.extend_from_slice(more);
                    rest = tail;
                }
                Ok(Step::Complete) => {
                    if buf.starts_with(&V2_SIGNATURE) {
                        let declared = u16::from_be_bytes([buf[14], buf[15]]);
                        assert_eq!(buf.len(), 16 + usize::from(declared));
                    } else {
                        assert!(buf.len() <= V1_MAX);
                        let end = buf.windows(2).position(|w| w == b"\r\n");
                        assert_eq!(end, Some(buf.len() - 2), "framed past the first CRLF");
                    }
                    let parsed = parse(&buf).ok();
                    if accepted == ProxyProtocol::Any {
                        any = parsed;
                    }
                    break;
                }
            }
        }
    }
    let _ = parse(data);
    any
}
