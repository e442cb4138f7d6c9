//! What to do with each packet after CONNACK, both ways: the judgement inside the machine.
//!
//! No sockets, no tokio, no clock: the machine (`machine/mod.rs`) feeds frames in, with `now`,
//! and queues what the returned [`Step`] says. Each client frame is decoded once; the decoded
//! packet goes to the per-client limits (`limits.rs`) and then to the decisions here. Original
//! bytes are forwarded whenever the codec accepted the packet unchanged (the codec accepts only
//! one reading of any byte string); a packet moat changes is re-encoded.
//!
//! Every topic decision is made here against the policy snapshot the machine passes in for
//! that packet, so a reload applies to live sessions from their next packet on: PUBLISH after
//! alias resolution, each SUBSCRIBE filter, and each delivery from the broker (`receive`).

use crate::hashing::{LazyMap, LazySet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::alias::{AliasError, AliasTable};
use super::limits::{Check, SessionLimits};
use crate::mqtt::{self, Packet, ProtocolVersion, QoS};
use crate::policy::{AclCache, AclDecision, Action, ClientLimits, Policy, PublishFacts, Subject};
use crate::session::error::{
    BrokerFault, Denied, InternalFault, PeerFault, PolicyRefusal, Refusal,
};

// Packet-id bookkeeping, the broker's acknowledgement order and the MQTT 5 invalid-filter
// answer live in their own files.
mod deliveries;
mod filters;
mod flow;
mod shadow;

pub(crate) use flow::Terms;
pub(crate) use shadow::ShadowNote;

/// What one packet leads to (the machine queues it for the driver).
#[derive(Debug)]
pub(crate) enum Step {
    /// Send these bytes on to the other side.
    Forward(Bytes),
    /// Answer the sender with these bytes (the client for a client packet, the broker for a
    /// broker packet); nothing goes on.
    Reply(Bytes),
    /// A policy refusal: answer the sender with `reply` (if any), forward `forward` (if any),
    /// write one audit line per entry of `audits`.
    Refuse {
        /// What the sender is told (PUBACK 0x87, SUBACK, an acknowledgement to the broker for a
        /// dropped delivery), if anything.
        reply: Option<Bytes>,
        /// What still goes on (a SUBSCRIBE with the refused filters removed), if anything.
        forward: Option<Bytes>,
        /// One entry per refused topic or filter.
        audits: Vec<Audit>,
    },
    /// Nothing to send.
    Nothing,
    /// The client said goodbye: forward its DISCONNECT, then close both sides.
    Goodbye(Bytes),
}

/// One refusal, as the audit line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Audit {
    /// publish, subscribe or receive.
    pub(crate) action: Action,
    /// The topic or filter.
    pub(crate) topic: String,
    /// Why (`no rule matched`, `QoS 2 above max_qos 1`, …).
    pub(crate) reason: String,
    /// The rule that decided.
    pub(crate) rule: String,
}

// === impl Audit ===

impl Audit {
    fn new(action: Action, topic: &str, decision: &AclDecision) -> Audit {
        Audit {
            action,
            topic: topic.to_owned(),
            reason: decision.reason.to_string(),
            rule: decision.rule().to_string(),
        }
    }
}

/// Per-session protocol state shared by both directions.
#[derive(Debug)]
pub(crate) struct State {
    /// The client's protocol version; the upstream speaks the same one (3.1 as 3.1.1).
    version: ProtocolVersion,
    /// Client→moat topic aliases (MQTT 5).
    aliases: AliasTable,
    /// QoS 2 packet ids moat answered itself after refusing the PUBLISH: their PUBREL must be
    /// answered by moat too and never reach the broker [MQTT-4.3.3].
    local_qos2: LazySet<u16>,
    /// SUBSCRIBEs forwarded with refused filters removed: for each original filter, the code
    /// moat chose (`Some`) or `None` where the broker's answer goes, in request order.
    pending_subacks: LazyMap<u16, Vec<Option<u8>>>,
    /// Who the client is, for every ACL decision.
    subject: Subject,
    /// Decisions remembered for this session (emptied when the policy snapshot changes).
    acl: AclCache,
    /// Open QoS 1/2 exchanges both ways and the session's limits (`state/flow.rs`).
    flows: flow::Flows,
    /// Per-client rates, subscription count and topic sizes (`limits.rs`).
    limits: SessionLimits,
    /// The shadow set's decisions for this session, allocated on its first shadow decision
    /// (`state/shadow.rs`); `None` while no shadow set is configured.
    shadow_acl: Option<Box<AclCache>>,
    /// Differences between the enforced and the shadow set not yet taken by the machine.
    shadow_notes: Vec<ShadowNote>,
}

// === impl State ===

impl State {
    /// State for a session whose CONNACK advertised `topic_alias_maximum` to the client, under
    /// the policy's default client limits (see [`State::with_limits`]).
    pub(crate) fn new(
        version: ProtocolVersion,
        topic_alias_maximum: u16,
        subject: Subject,
    ) -> Self {
        State {
            version,
            aliases: AliasTable::new(topic_alias_maximum),
            local_qos2: LazySet::default(),
            pending_subacks: LazyMap::default(),
            subject,
            acl: AclCache::default(),
            flows: flow::Flows::default(),
            limits: SessionLimits::new(ClientLimits::default()),
            shadow_acl: None,
            shadow_notes: Vec::new(),
        }
    }

    /// Sets the per-client limits of this identity.
    pub(crate) fn with_limits(mut self, limits: ClientLimits) -> Self {
        self.limits = SessionLimits::new(limits);
        self
    }

    /// The client's protocol version.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Who the client is.
    pub(crate) fn subject(&self) -> &Subject {
        &self.subject
    }

    /// A packet from the client, read at `now`, judged against `policy` (the snapshot in force
    /// now): decoded once, shown to the limits, then decided. Also returns how long the client
    /// must not be read from after it (the throttle), if at all.
    pub(crate) fn on_client(
        &mut self,
        now: Instant,
        frame: Bytes,
        policy: &Arc<Policy>,
    ) -> Result<(Step, Option<Duration>), Refusal> {
        let packet = match mqtt::decode(frame.clone(), self.version) {
            Ok(packet) => packet,
            // Not shown to the limits: the only one that goes on is an MQTT 5 SUBSCRIBE with
            // invalid filters, whose valid rest is judged through the normal path.
            Err(e) => return Ok((self.subscribe_with_invalid_filters(frame, e, policy)?, None)),
        };
        let wait = match self.limits.check(now, &packet, frame.len()) {
            Check::Pass => None,
            Check::Wait(wait) => Some(wait),
            Check::Refuse(refusal) => return Err(refusal),
        };
        Ok((self.judge_client(frame, packet, policy)?, wait))
    }

    /// What the decoded client `packet` (whose bytes are `frame`) leads to.
    fn judge_client(
        &mut self,
        frame: Bytes,
        packet: Packet,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        match packet {
            Packet::Publish(p) => self.client_publish_flow(frame, p, policy),
            Packet::Subscribe(s) => self.client_subscribe(frame, s, policy),
            Packet::PubRel(r) if self.local_qos2.remove(&r.pkid) => {
                let comp = Packet::PubComp(mqtt::PubComp::new(r.pkid));
                Ok(Step::Reply(self.encode(&comp)?))
            }
            Packet::PubRel(r) => self.client_pubrel(frame, r.pkid),
            Packet::PingReq => Ok(Step::Reply(self.encode(&Packet::PingResp)?)),
            Packet::Disconnect(d) => self.client_disconnect(frame, &d),
            Packet::Unsubscribe(_) => Ok(Step::Forward(frame)),
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {
                self.client_delivery_ack(frame, &packet)
            }
            // [MQTT-3.1.0-2] A second CONNECT is a protocol violation.
            Packet::Connect(_) => Err(Refusal::Peer(PeerFault::Protocol(
                "second CONNECT [MQTT-3.1.0-2]",
            ))),
            Packet::Auth(_) => Err(Refusal::Peer(PeerFault::Protocol(
                "AUTH without an authentication method in CONNECT [MQTT-4.12.0-1]",
            ))),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => Err(
                Refusal::Peer(PeerFault::Protocol("packet only a server may send")),
            ),
        }
    }

    /// A packet from the broker. `Step::Reply` and `Step::Refuse::reply` go back to the broker.
    pub(crate) fn on_broker_packet(
        &mut self,
        frame: Bytes,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        let packet = mqtt::decode(frame.clone(), self.version).map_err(BrokerFault::BadPacket)?;
        match packet {
            Packet::Publish(p) => self.deliver(frame, p, policy),
            Packet::SubAck(mut ack) => match self.pending_subacks.remove(&ack.pkid) {
                None => Ok(Step::Forward(frame)),
                Some(plan) => {
                    let mut from_broker = std::mem::take(&mut ack.codes).into_iter();
                    let mut merged = Vec::with_capacity(plan.len());
                    for slot in plan {
                        let code = match slot {
                            Some(code) => code,
                            None => from_broker.next().ok_or(BrokerFault::Misbehaved(
                                "SUBACK with too few return codes",
                            ))?,
                        };
                        merged.push(code);
                    }
                    ack.codes = merged;
                    Ok(Step::Forward(self.encode(&Packet::SubAck(ack))?))
                }
            },
            // moat answers the client's PINGREQs itself and pings the broker on its own
            // schedule, so every PINGRESP from the broker is moat's.
            Packet::PingResp => Ok(Step::Nothing),
            Packet::PubRel(r) => self.broker_pubrel(frame, r.pkid),
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {
                Ok(self.broker_publish_ack(frame, &packet))
            }
            Packet::UnsubAck(_) | Packet::Disconnect(_) => Ok(Step::Forward(frame)),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Auth(_) => {
                Err(BrokerFault::Misbehaved("unexpected packet from the broker").into())
            }
        }
    }

    fn client_publish(
        &mut self,
        frame: Bytes,
        mut p: mqtt::Publish,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Refusal::Peer(PeerFault::Protocol(
                "PUBLISH from a client with a Subscription Identifier [MQTT-3.3.4-6]",
            )));
        }
        let mut rewritten = false;
        if let Some(alias) = p.properties.topic_alias.take() {
            p.topic = self.aliases.resolve(&p.topic, alias).map_err(|e| match e {
                AliasError::OutOfRange => Refusal::Peer(PeerFault::TopicAlias(
                    "alias 0 or above the maximum [MQTT-3.3.2-8]",
                )),
                AliasError::Unknown => Refusal::Peer(PeerFault::Protocol(
                    "empty topic with an unknown topic alias [MQTT-3.3.2-12]",
                )),
            })?;
            rewritten = true;
        }
        // Judged on the resolved topic, never on an alias-only empty one (catalogue §A.1).
        let facts = PublishFacts {
            topic: p.topic.as_str(),
            qos: p.qos as u8,
            retain: p.retain,
            empty_payload: p.payload.is_empty(),
        };
        let decision = self.acl.publish(policy, &self.subject, &facts);
        if let Some(shadow) = policy.shadow() {
            self.shadow_publish(shadow, &facts, &decision);
        }
        if !decision.is_allowed() {
            return self.refuse_publish(&p, &decision);
        }
        if rewritten {
            Ok(Step::Forward(self.encode(&Packet::Publish(p))?))
        } else {
            Ok(Step::Forward(frame))
        }
    }

    /// Answers a refused PUBLISH the way the client's version expects: MQTT 5 gets 0x87 for
    /// QoS > 0; 3.x gets a positive acknowledgement (it cannot be told "no" [MQTT-3.3.5-2]);
    /// QoS 0 is dropped. A rule with `disconnect: true` ends the session instead.
    fn refuse_publish(
        &mut self,
        p: &mqtt::Publish,
        decision: &AclDecision,
    ) -> Result<Step, Refusal> {
        if decision.disconnect {
            return Err(Refusal::Policy(PolicyRefusal::PublishDenied {
                topic: p.topic.as_str().to_owned(),
                reason: decision.reason,
                rule: decision.rule().clone(),
            }));
        }
        let code = Denied::Publish.code(self.version);
        let reply = match (p.qos, p.pkid) {
            (QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(ack(id, code))),
            (QoS::ExactlyOnce, Some(id)) => {
                // A v5 PUBREC with a failure code ends the exchange; a v3 positive PUBREC
                // will be followed by PUBREL, which moat must answer itself.
                if code == 0 {
                    self.local_qos2.insert(id);
                }
                Some(Packet::PubRec(ack(id, code)))
            }
            _ => None,
        };
        let reply = reply.map(|r| self.encode(&r)).transpose()?;
        Ok(Step::Refuse {
            reply,
            forward: None,
            audits: vec![Audit::new(Action::Publish, p.topic.as_str(), decision)],
        })
    }

    /// Judges each filter on its own; refused ones are removed, granted ones may be capped to
    /// the rule's `max_qos`, and the client's SUBACK keeps every code in request order.
    fn client_subscribe(
        &mut self,
        frame: Bytes,
        mut s: mqtt::Subscribe,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        let refused_code = Denied::Subscribe.code(self.version);
        let mut plan = Vec::with_capacity(s.filters.len());
        let mut audits = Vec::new();
        let mut kept = Vec::with_capacity(s.filters.len());
        let mut changed = false;
        for (filter, mut opts) in std::mem::take(&mut s.filters) {
            let decision = self.acl.subscribe(policy, &self.subject, filter.as_str());
            if let Some(shadow) = policy.shadow() {
                self.shadow_subscribe(shadow, filter.as_str(), &decision);
            }
            if decision.is_allowed() && !self.broker_serves(filter.as_str()) {
                // Allowed, but the broker would end the session over it: refused here alone.
                plan.push(Some(Denied::Unservable.code(self.version)));
                audits.push(filters::unservable_audit(filter.as_str()));
            } else if decision.is_allowed() {
                if (opts.qos as u8) > decision.max_qos {
                    // MQTT §3.9.3: a server may grant a lower QoS than requested.
                    opts.qos = QoS::from_u8(decision.max_qos).unwrap_or(QoS::AtMostOnce);
                    changed = true;
                }
                plan.push(None);
                kept.push((filter, opts));
            } else {
                plan.push(Some(refused_code));
                audits.push(Audit::new(Action::Subscribe, filter.as_str(), &decision));
            }
        }
        if audits.is_empty() {
            if !changed {
                return Ok(Step::Forward(frame));
            }
            s.filters = kept;
            return Ok(Step::Forward(self.encode(&Packet::Subscribe(s))?));
        }
        if kept.is_empty() {
            // Every filter refused: answered here, the broker never sees it.
            let codes = plan
                .into_iter()
                .map(|c| c.unwrap_or(refused_code))
                .collect();
            let ack = Packet::SubAck(mqtt::SubAck {
                pkid: s.pkid,
                properties: Default::default(),
                codes,
            });
            return Ok(Step::Refuse {
                reply: Some(self.encode(&ack)?),
                forward: None,
                audits,
            });
        }
        // Partly refused: the broker gets the rest; its SUBACK is merged with moat's codes.
        self.pending_subacks.insert(s.pkid, plan);
        s.filters = kept;
        Ok(Step::Refuse {
            reply: None,
            forward: Some(self.encode(&Packet::Subscribe(s))?),
            audits,
        })
    }

    /// A PUBLISH from the broker: delivered if this client may `receive` its topic now; else
    /// dropped, and acknowledged to the broker by moat so its QoS 1/2 state does not leak
    /// (rumqttd stops delivering at its inflight limit).
    fn deliver(
        &mut self,
        frame: Bytes,
        p: mqtt::Publish,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        if p.properties.topic_alias.is_some() {
            return Err(
                BrokerFault::Misbehaved("broker used a topic alias moat never allowed").into(),
            );
        }
        let decision = self.acl.receive(policy, &self.subject, p.topic.as_str());
        if let Some(shadow) = policy.shadow() {
            self.shadow_receive(shadow, p.topic.as_str(), &decision);
        }
        if decision.is_allowed() {
            // Packet-id bookkeeping and the client's Maximum Packet Size (`state/flow.rs`).
            return self.broker_publish(frame, &p);
        }
        // Acknowledged to the broker by moat, in the broker's order (`state/deliveries.rs`).
        let reply = match self.track_delivery(&p, true)? {
            deliveries::Delivered::Dropped(acks) => acks,
            deliveries::Delivered::Forward => None,
        };
        Ok(Step::Refuse {
            reply,
            forward: None,
            audits: vec![Audit::new(Action::Receive, p.topic.as_str(), &decision)],
        })
    }

    fn encode(&self, packet: &Packet) -> Result<Bytes, Refusal> {
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .map_err(InternalFault::Encode)?;
        Ok(out.freeze())
    }
}

/// An acknowledgement moat writes itself.
fn ack(pkid: u16, reason: u8) -> mqtt::Ack {
    mqtt::Ack {
        reason,
        ..mqtt::Ack::new(pkid)
    }
}
