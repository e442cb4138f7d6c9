//! Deliveries from the broker to the client, and the acknowledgements they owe the broker, sent
//! in the broker's order.
//!
//! What it owns: the state of every QoS 1/2 delivery until it is complete, and the order in
//! which the broker expects its acknowledgements. rumqttd 0.20 accepts them only in order
//! (`router/iobufs.rs`): PUBACK and PUBREC in the order of its deliveries (one queue for both,
//! `register_ack`), PUBCOMP in the order of its PUBRELs (`register_pubcomp`); anything else is an
//! "out of order ack" and it closes the connection. moat drops deliveries the client must not
//! get (receive ACL, the client's Maximum Packet Size) and acknowledges them itself: such an
//! acknowledgement is *held* until every earlier delivery has been acknowledged by the client,
//! then released in order, in the same write as the client's. A client that acknowledges out of
//! order [MQTT-4.6.0-2] is held the same way (re-encoded with its reason code when released).
//! mosquitto does not care about the order; holding costs it nothing but the wait.
//! Why it is separate: one concern (the broker-side order) with its own invariants, kept out of
//! the client's exchanges in `flow.rs` and the ACL decisions in `state.rs`.
//! What it must not do: buffer messages or client bytes: it keeps one small state per packet id
//! and two queues of ids, each id at most once per queue, so neither exceeds 65 535 entries.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::hashing::LazyMap;
use crate::mqtt::{self, Packet, ProtocolVersion, QoS};
use crate::session::error::{BrokerFault, InternalFault, Refusal};

/// An acknowledgement of a delivery, toward the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// PUBACK.
    Ack,
    /// PUBREC.
    Rec,
    /// PUBCOMP.
    Comp,
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// QoS 1, forwarded: waits for the client's PUBACK. In `first`.
    Ack,
    /// QoS 2, forwarded: waits for the client's PUBREC. In `first`.
    Rec,
    /// The PUBREC went to the broker: waits for its PUBREL. `mine`: moat dropped the delivery
    /// and answers that PUBREL itself. In no queue.
    Rel { mine: bool },
    /// The PUBREL went to the client: waits for its PUBCOMP. In `comp`.
    Comp,
    /// The acknowledgement is decided (by moat, or by a client out of order) and waits for the
    /// earlier ones of its queue: `kind` with `reason` goes to the broker at the head.
    Held { kind: Kind, reason: u8, mine: bool },
}

/// The two orders the broker checks, allocated on the first QoS 1/2 delivery (most sessions
/// never get one).
#[derive(Debug, Default)]
struct Queues {
    /// Deliveries whose PUBACK or PUBREC the broker waits for, in delivery order.
    first: VecDeque<u16>,
    /// Deliveries whose PUBCOMP the broker waits for, in the order of its PUBRELs.
    comp: VecDeque<u16>,
}

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    First,
    Comp,
}

/// What happens to a delivery from the broker.
#[derive(Debug)]
pub(super) enum Delivered {
    /// Send it to the client.
    Forward,
    /// Dropped; these acknowledgements go to the broker now (`None`: held, or nothing owed).
    Dropped(Option<Bytes>),
}

/// What happens to a broker PUBREL.
#[derive(Debug)]
pub(super) enum Released {
    /// Send it to the client.
    Forward,
    /// moat's own exchange: these bytes go back to the broker (`None`: held or nothing to do).
    Answer(Option<Bytes>),
}

/// Every QoS 1/2 delivery of one session until it is complete, by the broker's packet id.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    open: LazyMap<u16, Delivery>,
    order: Option<Box<Queues>>,
}

// === impl Kind ===

impl Kind {
    fn line(self) -> Line {
        match self {
            Kind::Ack | Kind::Rec => Line::First,
            Kind::Comp => Line::Comp,
        }
    }

    fn packet(self, ack: mqtt::Ack) -> Packet {
        match self {
            Kind::Ack => Packet::PubAck(ack),
            Kind::Rec => Packet::PubRec(ack),
            Kind::Comp => Packet::PubComp(ack),
        }
    }
}

// === impl Delivery ===

impl Delivery {
    /// The queue this state waits in, if any.
    fn line(self) -> Option<Line> {
        match self {
            Delivery::Ack | Delivery::Rec => Some(Line::First),
            Delivery::Comp => Some(Line::Comp),
            Delivery::Held { kind, .. } => Some(kind.line()),
            Delivery::Rel { .. } => None,
        }
    }

    /// The state after `kind` with `reason` went to the broker (`None`: complete).
    fn after(kind: Kind, reason: u8, mine: bool) -> Option<Delivery> {
        match kind {
            // A PUBREC below 0x80 goes on to PUBREL; one of 0x80 or above ends the exchange.
            Kind::Rec if reason < 0x80 => Some(Delivery::Rel { mine }),
            _ => None,
        }
    }
}

// === impl Deliveries ===

impl Deliveries {
    /// A QoS 1/2 delivery with packet id `id`: forwarded (`drop == false`) or dropped by moat.
    pub(super) fn deliver(
        &mut self,
        id: u16,
        qos: QoS,
        drop: bool,
        version: ProtocolVersion,
    ) -> Result<Delivered, Refusal> {
        match self.open.get(&id).copied() {
            None => {}
            // The broker sends a delivery again (DUP) while its first acknowledgement is still
            // owed: the same exchange, already in line.
            Some(Delivery::Ack | Delivery::Rec) if !drop => return Ok(Delivered::Forward),
            Some(
                Delivery::Ack
                | Delivery::Rec
                | Delivery::Held {
                    kind: Kind::Ack | Kind::Rec,
                    ..
                },
            ) => {
                return Ok(Delivered::Dropped(None));
            }
            Some(_) => return Err(BrokerFault::ReusedPacketId(id).into()),
        }
        let kind = match qos {
            QoS::ExactlyOnce => Kind::Rec,
            _ => Kind::Ack,
        };
        let state = match (drop, kind) {
            (false, Kind::Rec) => Delivery::Rec,
            (false, _) => Delivery::Ack,
            (true, kind) => Delivery::Held {
                kind,
                reason: 0,
                mine: true,
            },
        };
        self.open.insert(id, state);
        self.queues().first.push_back(id);
        if !drop {
            return Ok(Delivered::Forward);
        }
        let mut out = BytesMut::new();
        self.release(Line::First, &mut out, version)?;
        Ok(Delivered::Dropped(nonempty(out)))
    }

    /// A PUBREL from the broker for delivery `id`.
    pub(super) fn pubrel(
        &mut self,
        id: u16,
        version: ProtocolVersion,
    ) -> Result<Released, Refusal> {
        let state = match self.open.get(&id).copied() {
            Some(Delivery::Rel { mine: true }) => Delivery::Held {
                kind: Kind::Comp,
                reason: 0,
                mine: true,
            },
            // Unknown: the broker resumed a stored session, or it goes on after a PUBREC with
            // an error code (rumqttd does); it expects a PUBCOMP either way.
            Some(Delivery::Rel { mine: false }) | None => Delivery::Comp,
            // A resend while the PUBCOMP is owed: the client answers it again (its second
            // PUBCOMP is dropped), or moat's held one does.
            Some(Delivery::Comp) => return Ok(Released::Forward),
            Some(Delivery::Held {
                kind: Kind::Comp, ..
            }) => return Ok(Released::Answer(None)),
            Some(Delivery::Ack | Delivery::Rec | Delivery::Held { .. }) => {
                return Err(BrokerFault::PubRelBeforePubRec(id).into())
            }
        };
        self.open.insert(id, state);
        self.queues().comp.push_back(id);
        if state == Delivery::Comp {
            return Ok(Released::Forward);
        }
        let mut out = BytesMut::new();
        self.release(Line::Comp, &mut out, version)?;
        Ok(Released::Answer(nonempty(out)))
    }

    /// The client's PUBACK, PUBREC or PUBCOMP (`frame`, as it sent it): what goes to the
    /// broker now. `None` when it belongs to no delivery the client was given (rumqttd closes
    /// the connection on an unsolicited acknowledgement), or when it has to wait for earlier
    /// ones.
    pub(super) fn client_ack(
        &mut self,
        frame: Bytes,
        packet: &Packet,
        version: ProtocolVersion,
    ) -> Result<Option<Bytes>, Refusal> {
        let (kind, ack) = match packet {
            Packet::PubAck(a) => (Kind::Ack, a),
            Packet::PubRec(a) => (Kind::Rec, a),
            Packet::PubComp(a) => (Kind::Comp, a),
            _ => return Ok(None),
        };
        let (id, reason) = (ack.pkid, ack.reason);
        let expected = match kind {
            Kind::Ack => Delivery::Ack,
            Kind::Rec => Delivery::Rec,
            Kind::Comp => Delivery::Comp,
        };
        if self.open.get(&id) != Some(&expected) {
            return Ok(None);
        }
        let line = kind.line();
        if self.queue(line).and_then(|q| q.front()) != Some(&id) {
            // Earlier deliveries are not acknowledged yet: this one waits for them.
            self.open.insert(
                id,
                Delivery::Held {
                    kind,
                    reason,
                    mine: false,
                },
            );
            return Ok(None);
        }
        if let Some(q) = self.queue_mut(line) {
            q.pop_front();
        }
        self.advance(id, kind, reason, false);
        let mut held = BytesMut::new();
        self.release(line, &mut held, version)?;
        if held.is_empty() {
            // The common case: nothing was held behind it, and its bytes go on untouched.
            return Ok(Some(frame));
        }
        let mut out = BytesMut::with_capacity(frame.len() + held.len());
        out.extend_from_slice(&frame);
        out.extend_from_slice(&held);
        Ok(Some(out.freeze()))
    }

    /// Sends every acknowledgement held at the head of `line`, in order, into `out`.
    fn release(
        &mut self,
        line: Line,
        out: &mut BytesMut,
        version: ProtocolVersion,
    ) -> Result<(), Refusal> {
        while let Some(&id) = self.queue(line).and_then(|q| q.front()) {
            match self.open.get(&id).copied() {
                Some(Delivery::Held { kind, reason, mine }) if kind.line() == line => {
                    let ack = mqtt::Ack {
                        reason,
                        ..mqtt::Ack::new(id)
                    };
                    kind.packet(ack)
                        .encode(version, out)
                        .map_err(InternalFault::Encode)?;
                    self.advance(id, kind, reason, mine);
                }
                // The client still owes this one: everything behind it waits.
                Some(state) if state.line() == Some(line) => break,
                // Not in this line any more; cannot happen, but must never stop the line.
                _ => {}
            }
            if let Some(q) = self.queue_mut(line) {
                q.pop_front();
            }
        }
        Ok(())
    }

    /// The state of `id` after `kind` went to the broker.
    fn advance(&mut self, id: u16, kind: Kind, reason: u8, mine: bool) {
        match Delivery::after(kind, reason, mine) {
            Some(next) => self.open.insert(id, next),
            None => self.open.remove(&id),
        };
    }

    fn queues(&mut self) -> &mut Queues {
        self.order.get_or_insert_with(Box::default)
    }

    fn queue(&self, line: Line) -> Option<&VecDeque<u16>> {
        let q = self.order.as_deref()?;
        Some(match line {
            Line::First => &q.first,
            Line::Comp => &q.comp,
        })
    }

    fn queue_mut(&mut self, line: Line) -> Option<&mut VecDeque<u16>> {
        let q = self.order.as_deref_mut()?;
        Some(match line {
            Line::First => &mut q.first,
            Line::Comp => &mut q.comp,
        })
    }
}

fn nonempty(out: BytesMut) -> Option<Bytes> {
    (!out.is_empty()).then(|| out.freeze())
}
