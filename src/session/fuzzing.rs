//! The session machine without sockets, for the fuzz targets (`fuzz/`, `fuzzing` feature only).
//!
//! What it owns: a [`Session`] around the crate-internal `machine::Machine`, fed one frame at a
//! time as the driver feeds it, with every frame the driver would write returned instead. Why
//! it exists: the machine is crate-internal; this is the one door the fuzzer uses, so it stays
//! so. What it must not do: decide anything itself: it only takes what the machine queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::error::Refusal;
use super::machine::{self, Dest, Event, Machine, Terms};
use crate::mqtt::ProtocolVersion;
use crate::policy::{Identity, Policy, Subject};

/// What the CONNECT and CONNACK agreed for the whole session (`connect.rs` `session_terms`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// The Receive Maximum moat advertised to an MQTT 5 client; `None` for 3.x.
    pub receive_maximum: Option<u16>,
    /// The client's Maximum Packet Size (MQTT 5).
    pub client_max_packet_size: Option<usize>,
    /// The MQTT 5 CONNECT's Session Expiry Interval was 0.
    pub session_expiry_zero: bool,
    /// The broker resumed a stored session.
    pub resumed: bool,
}

/// How a packet ended the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A DISCONNECT went on (the driver closes both sides after writing it).
    Goodbye,
    /// moat ended the session: what the client is told (`Refusal::outcome`) and why.
    Refused {
        /// The outcome, as `Debug` text (`Disconnect(ProtocolError)`, `Close`, …).
        outcome: String,
        /// The refusal's message.
        reason: String,
    },
}

/// Everything one packet made moat write, in order per side.
#[derive(Debug, Default)]
pub struct Effects {
    /// Frames written to the broker.
    pub to_broker: Vec<Bytes>,
    /// Frames written to the client.
    pub to_client: Vec<Bytes>,
    /// Audit lines written.
    pub audits: usize,
    /// The machine asked the driver not to read the client for this long after the packet.
    pub throttled: Option<Duration>,
    /// The session ends after these writes.
    pub end: Option<End>,
}

/// One session after CONNACK: the machine, judged against one policy snapshot.
#[derive(Debug)]
pub struct Session {
    /// The session machine.
    machine: Machine,
}

// === impl Session ===

impl Session {
    /// A session of `subject` speaking `version`, with the topic-alias maximum moat advertises
    /// to that version and the limits `policy` gives the subject's identity. No keep alive is
    /// enforced: the fuzzer feeds packets, not timeouts.
    pub fn new(
        version: ProtocolVersion,
        subject: Subject,
        policy: Arc<Policy>,
        setup: Setup,
    ) -> Session {
        let identity = Identity {
            name: subject.name.clone(),
            groups: policy
                .groups_of(&subject.name)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            source: subject.source,
        };
        let limits = policy.client_limits(&identity);
        let setup = machine::Setup {
            version,
            subject,
            topic_alias_maximum: match version {
                ProtocolVersion::V5 => super::connect::TOPIC_ALIAS_MAXIMUM,
                _ => 0,
            },
            terms: Terms {
                receive_maximum: setup.receive_maximum,
                client_max_packet_size: setup.client_max_packet_size,
                session_expiry_zero: setup.session_expiry_zero,
                resumed: setup.resumed,
                // The default deployment: moat refuses the filters rumqttd cannot serve itself.
                embedded_broker: true,
            },
            limits,
            keep_alive: 0,
            ping_every: None,
        };
        let policy = Arc::new(ArcSwap::new(policy));
        Session {
            machine: Machine::new(Instant::now(), setup, policy),
        }
    }

    /// One whole frame from the client, read at `now`.
    pub fn client(&mut self, now: Instant, frame: Bytes) -> Effects {
        let result = self.machine.handle_client(now, frame);
        self.effects(now, result)
    }

    /// One whole frame from the broker.
    pub fn broker(&mut self, frame: Bytes) -> Effects {
        let now = Instant::now();
        let result = self.machine.handle_broker(now, frame);
        self.effects(now, result)
    }

    /// What the machine queued, as the driver would take it.
    fn effects(&mut self, now: Instant, result: Result<(), Refusal>) -> Effects {
        let mut fx = Effects::default();
        while let Some(event) = self.machine.poll_event() {
            match event {
                Event::Refused(_) => fx.audits += 1,
                // With no keep alive and no pings, the only deadline is the throttle's end.
                Event::Throttled => {
                    fx.throttled = self
                        .machine
                        .poll_timeout()
                        .map(|t| t.saturating_duration_since(now))
                }
                Event::Shadow(_) => {}
            }
        }
        fx.to_broker.extend(std::iter::from_fn(|| {
            self.machine.poll_transmit(Dest::Broker)
        }));
        fx.to_client.extend(std::iter::from_fn(|| {
            self.machine.poll_transmit(Dest::Client)
        }));
        fx.end = match result {
            Err(refusal) => {
                // A limit refusal is audited where the session ends.
                fx.audits += usize::from(matches!(refusal, Refusal::Policy(_)));
                Some(End::Refused {
                    outcome: format!("{:?}", refusal.outcome()),
                    reason: refusal.to_string(),
                })
            }
            Ok(()) if self.machine.closing().is_some() => Some(End::Goodbye),
            Ok(()) => None,
        };
        fx
    }
}
