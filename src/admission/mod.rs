//! Admission: the cheapest refusal, decided on the bare peer address before any TLS,
//! WebSocket or QUIC work.
//!
//! [`Gate::admit`] is called by every listener (TCP accept loop, QUIC `Incoming`) with the
//! socket's peer address and the listener's name. In order it checks: the policy's `network:`
//! allow/deny lists, static and automatic bans on the source, memory shedding, the per-source
//! and global connection rates (governor, IPv6 counted by prefix), and the concurrent caps
//! (per source, per listener, in total). A yes is an [`Admitted`] guard that holds the
//! connection's slots until it is dropped; a no is a [`Refused`] the caller answers by closing
//! the socket at once. Refusals are counted ([`Counters`]) and logged once per source and
//! reason per interval, with a count, so a flood cannot flood the log.
//!
//! The session calls back for what only it can see: [`Gate::check_identity`] (bans on user
//! names and client ids at CONNECT), [`Gate::auth_failed`] and [`Gate::session_ended`]
//! (automatic bans). Everything kept per source is bounded and cleaned by
//! [`Gate::housekeep`], the gate's one background task.
//!
//! Depends on `policy` (the decisions) and tokio (time); never on a transport.

mod bans;
mod caps;
mod gate;
mod log;
mod manual;
mod memory;
pub(crate) use memory::resident_bytes;
mod rate;

pub use bans::BanInfo;
pub(crate) use bans::BanKey;
pub use caps::Admitted;
pub use gate::{CountersSnapshot, Gate, RefusalReason};
pub use manual::BanError;
pub(crate) use manual::ManualBan;
