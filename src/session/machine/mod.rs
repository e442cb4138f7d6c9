//! The session machine: one MQTT session after CONNACK, without I/O (quinn-proto's shape).
//!
//! It never touches a socket, tokio or the clock: the driver (`session/driver.rs`) passes in
//! what happened, with the time it happened, and carries out what the machine asks for.
//!
//! ```text
//!  inputs                                   outputs
//!  handle_client(now, frame) ──┐       ┌──► poll_transmit(Client | Broker): frames to write,
//!  handle_broker(now, frame) ──┼─► Machine   in order, as they came in where unchanged
//!  handle_timeout(now) ────────┘       ├──► poll_timeout(): the next deadline (keep alive,
//!                                      │    PINGREQ to the broker, end of a throttle)
//!                                      ├──► client_readable(now): "do not read the client
//!                                      │    before t" (the throttle)
//!                                      ├──► poll_event(): audit lines, throttles
//!                                      └──► closing(): a DISCONNECT is on its way
//! ```
//!
//! Inside: `state.rs` judges each packet (ACL decisions, topic aliases, `state/flow.rs`: the
//! one table of open QoS 1/2 exchanges and the one Receive Maximum refusal, `state/
//! deliveries.rs`, `state/filters.rs`), `limits.rs` holds the per-client rates and quotas,
//! `timers.rs` the clocks. A refusal that ends the session is returned from the `handle_*`
//! call as a [`Refusal`]; `error.rs` says what the client is told.
//!
//! Memory: an idle session is mostly this struct, so its queues and tables allocate only
//! when used, its rate buckets are boxed, and frames are queued as the `Bytes` they came in.

mod alias;
mod limits;
mod state;
mod timers;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::mqtt::ProtocolVersion;
use crate::policy::{ClientLimits, Policy, Subject};
use crate::session::error::{BrokerFault, PeerFault, Refusal};
pub(crate) use state::{Audit, ShadowNote, Terms};
use state::{State, Step};
use timers::{Expired, Timers};

/// PINGREQ, sent upstream by moat on its own schedule.
const PINGREQ: &[u8] = &[0xc0, 0x00];

/// Acknowledgements moat may owe the broker (for deliveries it dropped) before they are
/// written. Far above any broker's in-flight window (rumqttd: 100), so a broker that overflows
/// it is misbehaving.
const BROKER_ACK_QUEUE: usize = 1024;

/// Which side a frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    /// The client.
    Client,
    /// The broker.
    Broker,
}

/// What the driver reports or counts; nothing it must act on.
#[derive(Debug)]
pub(crate) enum Event {
    /// A refusal that leaves the session up: one audit line.
    Refused(Audit),
    /// The client went over its rate: it is not read until `client_readable` says so.
    Throttled,
    /// The shadow policy decided otherwise than the enforced one: counted and logged.
    Shadow(Box<ShadowNote>),
}

/// How a session starts: what the CONNECT phase agreed.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The client's protocol version (the upstream speaks the same, 3.1 as 3.1.1).
    pub(crate) version: ProtocolVersion,
    /// Who the client is.
    pub(crate) subject: Subject,
    /// How many topic aliases the CONNACK allowed the client.
    pub(crate) topic_alias_maximum: u16,
    /// The limits the CONNECT and CONNACK agreed.
    pub(crate) terms: Terms,
    /// This identity's per-client limits.
    pub(crate) limits: ClientLimits,
    /// The keep alive enforced on the client, in seconds (0: none).
    pub(crate) keep_alive: u16,
    /// How often moat pings the broker (`None`: never, see `upstream::ping_every`).
    pub(crate) ping_every: Option<Duration>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Machine {
    /// The judgement of each packet.
    state: State,
    /// Keep alive, PINGREQ, throttle.
    timers: Timers,
    /// The policy in force, loaded for every packet (a reload applies from the next one).
    policy: Arc<ArcSwap<Policy>>,
    /// Frames for the client, in order.
    to_client: VecDeque<Bytes>,
    /// Frames for the broker, in order: acknowledgements moat owes it keep their place before
    /// any client packet judged after them (`state/deliveries.rs` chose that order).
    to_broker: VecDeque<Bytes>,
    /// Audit lines and throttles not yet taken.
    events: VecDeque<Event>,
    /// Where a DISCONNECT went, once one did.
    closing: Option<Dest>,
    /// What went each way, for the line that ends the session.
    tally: Tally,
}

/// Traffic of one session, counted as frames are read: what the client sent (`in`) and what
/// the broker sent (`out`), whether moat passed it on or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// PUBLISH packets read from the client.
    pub(crate) messages_in: u64,
    /// PUBLISH packets read from the broker.
    pub(crate) messages_out: u64,
    /// Bytes of every packet read from the client.
    pub(crate) bytes_in: u64,
    /// Bytes of every packet read from the broker.
    pub(crate) bytes_out: u64,
}

// === impl Tally ===

impl Tally {
    /// Counts one frame: its size, and one message if it is a PUBLISH.
    fn count(messages: &mut u64, bytes: &mut u64, frame: &[u8]) {
        *bytes = bytes.saturating_add(frame.len() as u64);
        if frame.first().is_some_and(|b| b >> 4 == PUBLISH_TYPE) {
            *messages = messages.saturating_add(1);
        }
    }
}

/// The packet type of PUBLISH, in the high nibble of the first byte.
const PUBLISH_TYPE: u8 = 3;

// === impl Machine ===

impl Machine {
    /// A session that starts at `now`, judged against `policy`.
    pub(crate) fn new(now: Instant, setup: Setup, policy: Arc<ArcSwap<Policy>>) -> Machine {
        let state = State::new(setup.version, setup.topic_alias_maximum, setup.subject)
            .with_terms(setup.terms)
            .with_limits(setup.limits);
        Machine {
            state,
            timers: Timers::new(now, setup.keep_alive, setup.ping_every),
            policy,
            to_client: VecDeque::new(),
            to_broker: VecDeque::new(),
            events: VecDeque::new(),
            closing: None,
            tally: Tally::default(),
        }
    }

    /// The client's protocol version.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.state.version()
    }

    /// Who the client is.
    pub(crate) fn subject(&self) -> &Subject {
        self.state.subject()
    }

    /// One whole frame from the client, read at `now`. `Err` ends the session; what was
    /// queued before stays queued.
    pub(crate) fn handle_client(&mut self, now: Instant, frame: Bytes) -> Result<(), Refusal> {
        self.timers.client_packet(now);
        Tally::count(
            &mut self.tally.messages_in,
            &mut self.tally.bytes_in,
            &frame,
        );
        let policy = self.policy.load();
        let judged = self.state.on_client(now, frame, &policy);
        if policy.shadow().is_some() {
            self.take_differences();
        }
        let (step, wait) = judged?;
        if let Some(wait) = wait {
            self.timers.throttle(now, wait);
            self.events.push_back(Event::Throttled);
        }
        match step {
            Step::Forward(b) => self.to_broker.push_back(b),
            Step::Reply(b) => self.to_client.push_back(b),
            Step::Refuse {
                reply,
                forward,
                audits,
            } => {
                self.events.extend(audits.into_iter().map(Event::Refused));
                self.to_broker.extend(forward);
                self.to_client.extend(reply);
            }
            Step::Nothing => {}
            Step::Goodbye(b) => {
                self.to_broker.push_back(b);
                self.closing = Some(Dest::Broker);
            }
        }
        Ok(())
    }

    /// One whole frame from the broker, read at `now`.
    pub(crate) fn handle_broker(&mut self, _now: Instant, frame: Bytes) -> Result<(), Refusal> {
        Tally::count(
            &mut self.tally.messages_out,
            &mut self.tally.bytes_out,
            &frame,
        );
        let policy = self.policy.load();
        let judged = self.state.on_broker_packet(frame, &policy);
        if policy.shadow().is_some() {
            self.take_differences();
        }
        let step = judged?;
        let (forward, reply) = match step {
            Step::Forward(b) => (Some(b), None),
            Step::Reply(b) => (None, Some(b)),
            Step::Refuse {
                reply,
                forward,
                audits,
            } => {
                self.events.extend(audits.into_iter().map(Event::Refused));
                (forward, reply)
            }
            Step::Nothing => (None, None),
            Step::Goodbye(b) => {
                self.closing = Some(Dest::Client);
                (Some(b), None)
            }
        };
        self.to_client.extend(forward);
        if let Some(ack) = reply {
            if self.to_broker.len() >= BROKER_ACK_QUEUE {
                return Err(BrokerFault::Misbehaved("broker exceeded its in-flight window").into());
            }
            self.to_broker.push_back(ack);
        }
        Ok(())
    }

    /// Time has reached `now` (at or after [`Machine::poll_timeout`], or earlier: then nothing
    /// happens).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), Refusal> {
        match self.timers.expire(now) {
            Expired::KeepAlive => Err(PeerFault::KeepAlive.into()),
            Expired::Ping => {
                self.to_broker.push_back(Bytes::from_static(PINGREQ));
                Ok(())
            }
            Expired::Nothing => Ok(()),
        }
    }

    /// The next frame to write to `to`, in order.
    pub(crate) fn poll_transmit(&mut self, to: Dest) -> Option<Bytes> {
        match to {
            Dest::Client => self.to_client.pop_front(),
            Dest::Broker => self.to_broker.pop_front(),
        }
    }

    /// How many frames wait for `to`.
    pub(crate) fn pending(&self, to: Dest) -> usize {
        match to {
            Dest::Client => self.to_client.len(),
            Dest::Broker => self.to_broker.len(),
        }
    }

    /// The next deadline, if any: [`Machine::handle_timeout`] is due then.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether the client may be read at `now` (false while a throttle lasts).
    pub(crate) fn client_readable(&self, now: Instant) -> bool {
        self.timers.client_readable(now)
    }

    fn take_differences(&mut self) {
        let notes = self.state.take_differences();
        self.events
            .extend(notes.into_iter().map(|n| Event::Shadow(Box::new(n))));
    }

    /// The next event to log or count.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the session carried so far.
    pub(crate) fn tally(&self) -> Tally {
        self.tally
    }

    /// The side a DISCONNECT went to, once one did: the session ends when the frames queued
    /// for that side are written. Nothing more is read.
    pub(crate) fn closing(&self) -> Option<Dest> {
        self.closing
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
