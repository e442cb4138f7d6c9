//! Transports: turn an accepted socket into one duplex byte stream plus a [`Peer`] record.
//!
//! Everything after a transport is transport-agnostic. Transports know nothing of MQTT or of
//! policy; they only terminate encryption (and, later, WebSocket framing or QUIC streams).

mod peer;
pub mod tls;

pub use peer::{normalise as peer_addr, Peer, TransportKind};
