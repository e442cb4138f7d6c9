//! Fuzz target: the frame reader and the codec, as a session sees them.
//!
//! The input is a byte stream from a peer. It is cut into frames exactly as
//! `session/reader.rs` does — [`mqtt::check`] on the fixed header with a size limit, then
//! the declared length — and every whole frame is decoded as the first packet
//! ([`Connect::decode`]) and in each protocol version's grammar ([`decode`], and the SUBSCRIBE
//! reader that reports invalid filters in place). Beyond "never panics", every packet the
//! decoder accepts must encode, and its encoding must decode to the same packet: the reading
//! moat forwards is the reading it checked (catalogue §C.53).
//!
//! The codec is compiled from `src/mqtt/` itself (it is pure: `bytes` and `thiserror` only), so
//! what is fuzzed is byte for byte the code moat runs.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

#[path = "../../src/mqtt/mod.rs"]
#[allow(dead_code, unused_imports)]
// the target uses the decoders and encoders, not every re-export
mod mqtt;

use mqtt::{Connect, ProtocolVersion};

/// The reader's limit in the fuzzer: small, so oversized declarations are exercised too.
const MAX_PACKET_SIZE: usize = 64 * 1024;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(header)) = mqtt::check(rest, MAX_PACKET_SIZE) {
        let Some((frame, tail)) = rest.split_at_checked(header.frame_len()) else {
            break; // incomplete: a reader would wait for more bytes
        };
        let frame = Bytes::copy_from_slice(frame);
        first_packet(&frame);
        for version in VERSIONS {
            later_packet(&frame, version);
        }
        rest = tail;
    }
});

fn first_packet(frame: &Bytes) {
    let Ok(connect) = Connect::decode(frame.clone()) else {
        return;
    };
    let mut out = BytesMut::new();
    connect
        .encode(&mut out)
        .expect("an accepted CONNECT re-encodes");
    assert_eq!(
        Connect::decode(out.freeze()).as_ref(),
        Ok(&connect),
        "CONNECT re-encoding reads differently"
    );
}

fn later_packet(frame: &Bytes, version: ProtocolVersion) {
    let _ = mqtt::decode_subscribe_request(frame.clone(), version);
    let Ok(packet) = mqtt::decode(frame.clone(), version) else {
        return;
    };
    let bytes = packet
        .to_bytes(version)
        .expect("an accepted packet re-encodes");
    assert_eq!(
        mqtt::decode(bytes, version).as_ref(),
        Ok(&packet),
        "re-encoding reads differently"
    );
}
