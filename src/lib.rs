//! # moat: a TLS-terminating MQTT security proxy
//!
//! moat is the front door of an MQTT deployment. Devices connect to it over TLS, WebSocket
//! (WSS) or QUIC; it admits or refuses each connection, authenticates the client, parses every
//! MQTT packet strictly and forwards only well-formed, authorized cleartext MQTT to a broker on
//! an isolated segment (by default an embedded rumqttd bound to loopback).
//!
//! ```text
//!  device ──TCP──► listener ──► transport ──► session ─────────────────────► broker (loopback)
//!        ──UDP──►  server/      TLS, WS        CONNECT → authenticate         embedded rumqttd
//!                  accept,      upgrade, QUIC  strict codec (mqtt/),          or an upstream
//!                  admission/,  (transport/)   policy decisions (policy/),    address (broker/)
//!                  spawn                       per-client limits, timers
//!                                              (session/machine/, fed `now`)
//! ```
//!
//! Design in one sentence: the codec (`mqtt`), the policy (`policy`), the configuration
//! (`config`) and the session machine (`session::machine`) are pure code that never touch
//! sockets, files, tokio or the clock; everything that does I/O (`server`, `transport`, the
//! session's driver, `broker`, `ops`) feeds them bytes and the time, and acts on their
//! decisions. The server sits on top: nothing imports it.
//!
//! Non-features: moat is not a broker (it keeps no subscriptions or retained messages of its own)
//! and it never forwards a packet it could not parse exactly one way.
//!
//! Module map:
//! - `admission`: IP allow/deny, bans, connection rates and caps on the bare address.
//! - [`mqtt`]: strict MQTT 3.1 / 3.1.1 / 5.0 codec.
//! - [`config`]: `moat.yaml` → validated [`config::Config`].
//! - [`policy`]: policy files → immutable [`policy::Policy`]; authentication and topic-ACL decisions.
//! - `transport`: PROXY protocol header (behind a trusted balancer), TLS handshake, WebSocket
//!   upgrade or QUIC stream → byte stream + [`transport::Peer`].
//! - `authn`: password verification as a bounded service: verifier threads with memory
//!   allocated once, a queue fair per source, and a cache of recent successes.
//! - `session`: one MQTT proxy session per connection: the CONNECT phase, then a pure machine
//!   (`session::machine`) fed by one `select!` loop (`session::driver`).
//! - `server`: on top: starts everything, listeners, the one spawn site.
//! - [`shutdown`]: the drain every task holds, and the revocation epoch.
//! - [`stats`]: counters every part bumps.
//! - `broker`: the embedded rumqttd and external broker targets.
//! - [`certs`]: CA / server / client certificate generation (rcgen).
//! - `admin`: the admin HTTP listener: `/metrics`, `/healthz`, `/readyz`, runtime control.
//! - [`control`]: runtime control without HTTP: sessions, kicks, bans, the drain schedule.
//! - `ops`: loading files, policy reload, audit log.
//! - `tunnel`: `moat tunnel`, local TCP MQTT carried over QUIC to a moat QUIC listener.
//! - [`cli`]: the `moat` command line.
#![forbid(unsafe_code)]

pub mod admin;
pub(crate) mod admission;
mod authn;
pub(crate) mod broker;
pub mod certs;
pub mod cli;
pub mod config;
pub mod control;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hashing;
pub mod mqtt;
pub mod ops;
pub mod policy;
pub mod server;
pub(crate) mod session;
pub mod shutdown;
pub mod stats;
pub mod transport;
pub(crate) mod tunnel;
