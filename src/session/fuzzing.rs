//! The session's per-packet path without sockets, for the fuzz targets (`fuzz/`, `fuzzing`
//! feature only).
//!
//! What it owns: the same steps `driver.rs` takes for each frame — the per-client limits, then
//! the pure state, both ways — with every byte the driver would write returned instead. Why it
//! exists: `State` and `SessionLimits` are crate-internal; this is the one door the fuzzer
//! uses, so they stay so. What it must not do: decide anything itself; a change to how the
//! driver acts on a `Step` belongs here too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::limits::{Check, SessionLimits};
use super::state::{State, Step, Terms};
use crate::mqtt::ProtocolVersion;
use crate::policy::{Identity, Policy, Subject};

/// What the CONNECT and CONNACK agreed for the whole session (`connect.rs` `session_terms`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// The Receive Maximum moat enforces on an MQTT 5 client; `None` for 3.x.
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
    /// The limits asked the driver to stop reading from the client for this long first.
    pub throttled: Option<Duration>,
    /// The session ends after these writes.
    pub end: Option<End>,
}

/// One session after CONNACK: its state, its limits and the policy snapshot in force.
#[derive(Debug)]
pub struct Session {
    /// The pure state machine.
    state: State,
    /// Per-client rates and quotas, shown every frame both ways as the driver does.
    limits: SessionLimits,
    /// The snapshot every decision is made against.
    policy: Arc<Policy>,
}

// === impl Session ===

impl Session {
    /// A session of `subject` speaking `version`, with the topic-alias maximum moat advertises
    /// to that version and the limits `policy` gives the subject's identity.
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
        let limits = SessionLimits::new(version, policy.client_limits(&identity));
        let alias_maximum = match version {
            ProtocolVersion::V5 => super::connect::TOPIC_ALIAS_MAXIMUM,
            _ => 0,
        };
        let terms = Terms {
            receive_maximum: setup.receive_maximum,
            client_max_packet_size: setup.client_max_packet_size,
            session_expiry_zero: setup.session_expiry_zero,
            resumed: setup.resumed,
            // The default deployment: moat refuses the filters rumqttd cannot serve itself.
            embedded_broker: true,
        };
        Session {
            state: State::new(version, alias_maximum, subject).with_terms(terms),
            limits,
            policy,
        }
    }

    /// One whole frame from the client, read at `now`.
    pub fn client(&mut self, now: Instant, frame: Bytes) -> Effects {
        let mut fx = Effects::default();
        match self.limits.on_client_frame(now, &frame) {
            Check::Pass => {}
            Check::Wait(wait) => fx.throttled = Some(wait),
            Check::Refuse(refusal) => {
                fx.audits += 1;
                fx.end = Some(refused(&refusal));
                return fx;
            }
        }
        match self.state.on_client_packet(frame, &self.policy) {
            Ok(Step::Forward(b)) => fx.to_broker.push(b),
            Ok(Step::Reply(b)) => fx.to_client.push(b),
            Ok(Step::Refuse {
                reply,
                forward,
                audits,
            }) => {
                fx.audits += audits.len();
                fx.to_broker.extend(forward);
                fx.to_client.extend(reply);
            }
            Ok(Step::Nothing) => {}
            Ok(Step::Goodbye(b)) => {
                fx.to_broker.push(b);
                fx.end = Some(End::Goodbye);
            }
            Err(refusal) => fx.end = Some(refused(&refusal)),
        }
        self.show_limits(&fx);
        fx
    }

    /// One whole frame from the broker.
    pub fn broker(&mut self, frame: Bytes) -> Effects {
        let mut fx = Effects::default();
        match self.state.on_broker_packet(frame, &self.policy) {
            Ok(Step::Forward(b)) => fx.to_client.push(b),
            Ok(Step::Reply(b)) => fx.to_broker.push(b),
            Ok(Step::Refuse {
                reply,
                forward,
                audits,
            }) => {
                fx.audits += audits.len();
                fx.to_broker.extend(reply);
                fx.to_client.extend(forward);
            }
            Ok(Step::Nothing) => {}
            Ok(Step::Goodbye(b)) => {
                fx.to_client.push(b);
                fx.end = Some(End::Goodbye);
            }
            Err(refusal) => fx.end = Some(refused(&refusal)),
        }
        self.show_limits(&fx);
        fx
    }

    /// The driver shows the limits every frame it writes to the client.
    fn show_limits(&mut self, fx: &Effects) {
        for frame in &fx.to_client {
            self.limits.on_frame_to_client(frame);
        }
    }
}

fn refused(refusal: &super::error::Refusal) -> End {
    End::Refused {
        outcome: format!("{:?}", refusal.outcome()),
        reason: refusal.to_string(),
    }
}
