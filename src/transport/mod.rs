//! Transports: turn an accepted socket into one duplex byte stream plus a [`Peer`] record.
//!
//! Everything after a transport is transport-agnostic. Transports know nothing of MQTT or of
//! policy; they only terminate encryption, WebSocket framing (`ws`, over TCP or TLS) or a QUIC
//! stream (`quic`), and report what they learned about the other end.

mod cert_info;
mod crl;
pub mod forwarded;
mod handshake_refusal;
mod material;
mod peer;
pub mod proxy_header;
pub mod quic;
pub mod quic_client;
pub mod tls;
mod tls_stream;
pub mod ws;
mod ws_stream;

pub use crate::config::TransportKind;
pub use cert_info::{cert_facts, CertFacts, CertInfoError};
pub use crl::Revocations;
pub use handshake_refusal::HandshakeRefusal;
pub(crate) use material::Handshakes;
pub use material::{MaterialError, TlsState, TlsSummary};
pub use peer::{normalise as peer_addr, ClientCert, Peer};
pub use tls_stream::ServerTls;
pub use ws_stream::WsBytes;
