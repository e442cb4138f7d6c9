//! Packet identifiers in flight, both ways, and the limits the client's CONNECT set.
//!
//! What it owns: which QoS 1/2 exchanges are open between the client and the broker, so that
//! moat (1) never forwards an acknowledgement for an exchange that does not exist (rumqttd drops
//! the whole connection on an "unsolicited ack"), (2) finishes the exchanges it started itself
//! (a refused QoS 2 PUBLISH, a delivery too large for the client) without the other side ever
//! seeing them, (3) passes each of the client's QoS 2 messages to the broker once, however
//! often the client resends it [MQTT-4.3.3-10], (4) enforces the Receive Maximum it advertised
//! (DISCONNECT 0x93) and the client's Maximum Packet Size on deliveries [MQTT-3.1.2-24,
//! MQTT-3.1.2-25], and (5) refuses a DISCONNECT that raises a Session Expiry Interval the
//! CONNECT set to 0 (catalogue §B.33, §B.34). Deliveries from the broker, and the order their
//! acknowledgements must keep, are `deliveries.rs`.
//! Why it is separate: it is one concern (packet-id bookkeeping) with its own tests, kept out of
//! the ACL decisions in `state.rs`.
//! What it must not do: judge topics, or buffer messages: every table is keyed by a `u16`
//! packet identifier, so none can hold more than 65 535 entries.

use crate::hashing::LazyMap;

use std::sync::Arc;

use bytes::Bytes;

use super::deliveries::{Delivered, Deliveries, Released};
use super::{State, Step};
use crate::mqtt::{self, Packet, QoS};
use crate::policy::Policy;
use crate::policy::RuleRef;
use crate::session::error::{Denied, Exceeded, PeerFault, PolicyRefusal, Refusal};

/// The rule an inflight refusal names when the broker's Receive Maximum, not the policy's
/// `max_inflight`, was the limit.
const BROKER_RECEIVE_MAXIMUM: &str = "broker Receive Maximum [MQTT-3.3.4-7]";

/// What the client's CONNECT and moat's CONNACK agreed for the whole session.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Terms {
    /// The Receive Maximum moat advertised to an MQTT 5 client, before the policy's
    /// `max_inflight` lowered it; `None` for 3.x (the policy's limit alone applies).
    pub(crate) receive_maximum: Option<u16>,
    /// The client's Maximum Packet Size (MQTT 5): larger deliveries are dropped.
    pub(crate) client_max_packet_size: Option<usize>,
    /// The MQTT 5 CONNECT's Session Expiry Interval was 0 (or absent).
    pub(crate) session_expiry_zero: bool,
    /// The broker resumed a stored session: it may hold QoS 2 exchanges from an earlier
    /// connection that moat never saw, whose PUBREL the client resends [MQTT-4.4.0-1].
    pub(crate) resumed: bool,
    /// The broker is the embedded rumqttd, whose limits moat answers for (`$`-filters).
    pub(crate) embedded_broker: bool,
}

/// The next packet an open exchange waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// QoS 1: the receiver's PUBACK.
    Ack,
    /// QoS 2: the receiver's PUBREC.
    Rec,
    /// QoS 2: the sender's PUBREL.
    Rel,
    /// QoS 2: the receiver's PUBCOMP.
    Comp,
}

/// Open exchanges of one session.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    /// The session's limits.
    terms: Terms,
    /// Client → broker PUBLISHes forwarded and not yet complete, by the client's packet id.
    outbound: LazyMap<u16, Awaiting>,
    /// Broker → client deliveries not yet complete, and the order of their acknowledgements.
    deliveries: Deliveries,
}

// === impl Flows ===

impl Flows {
    /// The broker is the embedded rumqttd.
    pub(super) fn embedded_broker(&self) -> bool {
        self.terms.embedded_broker
    }
}

// === impl State (flows) ===

impl State {
    /// Sets the session's limits (from the CONNECT and the CONNACK moat sent).
    pub(crate) fn with_terms(mut self, terms: Terms) -> Self {
        self.flows.terms = terms;
        self
    }

    /// A client PUBLISH: packet-id rules and Receive Maximum around the policy decision.
    pub(super) fn client_publish_flow(
        &mut self,
        frame: Bytes,
        p: mqtt::Publish,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        let (qos, Some(id)) = (p.qos, p.pkid) else {
            return self.client_publish(frame, p, policy);
        };
        if self.local_qos2.contains(&id) {
            // moat is the receiver of this QoS 2 exchange: a resent PUBLISH gets the same PUBREC
            // again and is never delivered twice [MQTT-4.3.3-10].
            return match qos {
                QoS::ExactlyOnce => Ok(Step::Reply(
                    self.encode(&Packet::PubRec(mqtt::Ack::new(id)))?,
                )),
                _ => Err(Refusal::Peer(PeerFault::Protocol(
                    "packet identifier in use [MQTT-2.2.1-3]",
                ))),
            };
        }
        match self.flows.outbound.get(&id) {
            // A resend of an open exchange (DUP): not a new message for the Receive Maximum.
            Some(Awaiting::Ack) if qos == QoS::AtLeastOnce => {}
            // A resend of a QoS 2 message the broker already has never reaches it again: the
            // receiver must not deliver it twice [MQTT-4.3.3-10], and rumqttd would (it
            // records every PUBLISH and releases the oldest at each PUBREL, whatever its id:
            // the resend would go out in place of the next message that reuses the id).
            // Before the broker's PUBREC, that PUBREC answers the resend too; after it, moat
            // answers with the same PUBREC.
            Some(Awaiting::Rec) if qos == QoS::ExactlyOnce => return Ok(Step::Nothing),
            Some(Awaiting::Rel) if qos == QoS::ExactlyOnce => {
                return Ok(Step::Reply(
                    self.encode(&Packet::PubRec(mqtt::Ack::new(id)))?,
                ));
            }
            Some(_) => {
                return Err(Refusal::Peer(PeerFault::Protocol(
                    "packet identifier in use [MQTT-2.2.1-3]",
                )))
            }
            None => self.check_inflight()?,
        }
        let step = self.client_publish(frame, p, policy)?;
        if matches!(step, Step::Forward(_)) {
            let first = match qos {
                QoS::ExactlyOnce => Awaiting::Rec,
                _ => Awaiting::Ack,
            };
            self.flows.outbound.entry(id).or_insert(first);
        }
        Ok(step)
    }

    /// The one inflight limit: a new QoS 1/2 PUBLISH while as many exchanges of the client are
    /// open as moat allows is refused [MQTT-3.3.4-7]. The limit is the policy's `max_inflight`,
    /// and for MQTT 5 also the Receive Maximum moat advertised (the smaller of its own and the
    /// broker's); the exchanges are those forwarded and not complete, and the QoS 2 ones moat
    /// answered itself and still owes a PUBCOMP.
    fn check_inflight(&self) -> Result<(), Refusal> {
        let policy_max = self.limits.max_inflight();
        let advertised = self.flows.terms.receive_maximum.unwrap_or(u16::MAX);
        let open = self.flows.outbound.len() + self.local_qos2.len();
        if open < usize::from(policy_max.min(advertised)) {
            return Ok(());
        }
        Err(if policy_max <= advertised {
            self.limits.refuse(Exceeded::Inflight)
        } else {
            PolicyRefusal::Limit(Exceeded::Inflight, RuleRef::builtin(BROKER_RECEIVE_MAXIMUM))
                .into()
        })
    }

    /// A client PUBREL for one of its own QoS 2 PUBLISHes (moat's own exchanges are answered
    /// before this is called).
    pub(super) fn client_pubrel(&mut self, frame: Bytes, id: u16) -> Result<Step, Refusal> {
        match self.flows.outbound.get(&id) {
            Some(Awaiting::Rel) => {
                self.flows.outbound.insert(id, Awaiting::Comp);
                Ok(Step::Forward(frame))
            }
            // A resend while the broker's PUBCOMP is on its way: that PUBCOMP answers it. Never
            // forwarded: rumqttd releases its oldest recorded QoS 2 message at every PUBREL, so
            // a second one would publish the client's next QoS 2 message before its PUBREL.
            Some(Awaiting::Comp) => Ok(Step::Nothing),
            Some(_) => Err(Refusal::Peer(PeerFault::Protocol(
                "PUBREL before the PUBREC [MQTT-4.3.3-4]",
            ))),
            // The broker kept this exchange from an earlier connection: it is the broker's.
            None if self.flows.terms.resumed => Ok(Step::Forward(frame)),
            None => {
                // Nobody holds this exchange: answer it here so the client can free the id
                // (v5: 0x92 Packet Identifier not found), and never let the broker see it.
                let reason = Denied::UnknownPacketId.code(self.version);
                let comp = mqtt::Ack {
                    reason,
                    ..mqtt::Ack::new(id)
                };
                Ok(Step::Reply(self.encode(&Packet::PubComp(comp))?))
            }
        }
    }

    /// A client PUBACK, PUBREC or PUBCOMP: forwarded only for a delivery it belongs to (the
    /// broker drops the whole connection on an acknowledgement it does not expect: catalogue
    /// §B.33, "ignore"), and only in the broker's order, with moat's own acknowledgements
    /// that waited for it (`deliveries.rs`).
    pub(super) fn client_delivery_ack(
        &mut self,
        frame: Bytes,
        packet: &Packet,
    ) -> Result<Step, Refusal> {
        let version = self.version;
        Ok(
            match self.flows.deliveries.client_ack(frame, packet, version)? {
                Some(bytes) => Step::Forward(bytes),
                None => Step::Nothing,
            },
        )
    }

    /// A client DISCONNECT. [v5 §3.14.2.2.2] A Session Expiry Interval in DISCONNECT must not be
    /// non-zero when the CONNECT's was 0 (catalogue §B.34): the session ends as a protocol error.
    pub(super) fn client_disconnect(
        &mut self,
        frame: Bytes,
        d: &mqtt::Disconnect,
    ) -> Result<Step, Refusal> {
        let raises = d.properties.session_expiry.is_some_and(|s| s != 0);
        if raises && self.flows.terms.session_expiry_zero {
            return Err(Refusal::Peer(PeerFault::Protocol(
                "DISCONNECT sets a Session Expiry Interval the CONNECT set to 0 [v5 §3.14.2.2.2]",
            )));
        }
        Ok(Step::Goodbye(frame))
    }

    /// A broker PUBLISH the client may receive: dropped and acknowledged by moat when it is
    /// larger than the client accepts [MQTT-3.1.2-25], otherwise tracked and forwarded.
    pub(super) fn broker_publish(
        &mut self,
        frame: Bytes,
        p: &mqtt::Publish,
    ) -> Result<Step, Refusal> {
        let too_large = self
            .flows
            .terms
            .client_max_packet_size
            .is_some_and(|max| frame.len() > max);
        // "Discard it without sending it and then behave as if it had completed sending that
        // Application Message" [MQTT-3.1.2-25]: moat acknowledges it upstream, in order.
        Ok(match self.track_delivery(p, too_large)? {
            Delivered::Forward => Step::Forward(frame),
            Delivered::Dropped(Some(acks)) => Step::Reply(acks),
            Delivered::Dropped(None) => Step::Nothing,
        })
    }

    /// Records a delivery from the broker, forwarded or dropped (`drop`); for a dropped one,
    /// the acknowledgements that go to the broker now. QoS 0 needs none.
    pub(super) fn track_delivery(
        &mut self,
        p: &mqtt::Publish,
        drop: bool,
    ) -> Result<Delivered, Refusal> {
        let (Some(id), QoS::AtLeastOnce | QoS::ExactlyOnce) = (p.pkid, p.qos) else {
            return Ok(if drop {
                Delivered::Dropped(None)
            } else {
                Delivered::Forward
            });
        };
        let version = self.version;
        self.flows.deliveries.deliver(id, p.qos, drop, version)
    }

    /// A broker PUBREL: moat's own (dropped delivery) is answered here, in order; the client's
    /// goes on.
    pub(super) fn broker_pubrel(&mut self, frame: Bytes, id: u16) -> Result<Step, Refusal> {
        let version = self.version;
        Ok(match self.flows.deliveries.pubrel(id, version)? {
            Released::Forward => Step::Forward(frame),
            Released::Answer(Some(comp)) => Step::Reply(comp),
            Released::Answer(None) => Step::Nothing,
        })
    }

    /// A broker PUBACK, PUBREC or PUBCOMP for one of the client's PUBLISHes: closes or advances
    /// the exchange (freeing Receive Maximum quota) and goes on to the client.
    pub(super) fn broker_publish_ack(&mut self, frame: Bytes, packet: &Packet) -> Step {
        let (id, expected, next) = match packet {
            Packet::PubAck(a) => (a.pkid, Awaiting::Ack, None),
            Packet::PubRec(a) if a.reason < 0x80 => (a.pkid, Awaiting::Rec, Some(Awaiting::Rel)),
            Packet::PubRec(a) => (a.pkid, Awaiting::Rec, None),
            Packet::PubComp(a) => (a.pkid, Awaiting::Comp, None),
            _ => return Step::Forward(frame),
        };
        if self.flows.outbound.get(&id) == Some(&expected) {
            match next {
                Some(n) => self.flows.outbound.insert(id, n),
                None => self.flows.outbound.remove(&id),
            };
        }
        Step::Forward(frame)
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
