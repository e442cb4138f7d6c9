//! Fuzz target: the session after CONNACK, both ways, as the driver runs it.
//!
//! The input (through `arbitrary`) is a session set-up (protocol version, one of a few
//! policies, who the client is, the CONNECT's terms) and a sequence of operations: a packet from
//! the client, a packet from the broker (typed, encoded with moat's codec so most get past the
//! decoder), raw frames from either side, and the clock moving on. Each is fed through
//! `moat::fuzzing::Session` — the session machine (`session/machine/`: per-client limits,
//! then the packet's judgement), fed exactly as `session/driver.rs` feeds it — until the
//! session ends.
//!
//! Beyond "never panics", every byte moat writes is checked against a model of what each side
//! has opened, built from the packets alone (not from moat's tables), with the rules of the
//! module docs (`machine/state.rs`, `machine/state/flow.rs`) and docs/ARCHITECTURE.md:
//! - everything written to either side is whole packets that decode in the session's version
//!   (one per write, except acknowledgements released together, which share one);
//! - only clients' packets go to the broker, never a server-only one; no topic alias and no
//!   empty topic reaches it (aliases are moat's);
//! - every PUBLISH that reaches the broker is one the policy lets this client publish (topic,
//!   QoS, retain), every SUBSCRIBE filter one it may subscribe to at no more than the rule's
//!   `max_qos`, and every delivery to the client one it may receive;
//! - no acknowledgement reaches the broker for a delivery the broker never opened or that is
//!   in another stage (rumqttd drops the connection on an "unsolicited ack"), and no PUBREL for
//!   a client exchange the broker has not acknowledged with PUBREC (unless it resumed a session);
//! - new client PUBLISHes in flight toward the broker never exceed the Receive Maximum, and a
//!   packet id open with one QoS is never forwarded with another;
//! - a QoS 2 exchange moat answered itself (refused PUBLISH) never reaches the broker, by
//!   resend or by PUBREL, until moat has completed it [MQTT-4.3.3-10];
//! - deliveries larger than the client's Maximum Packet Size are never forwarded
//!   [MQTT-3.1.2-25];
//! - a SUBACK to the client for a SUBSCRIBE moat partly refused keeps a failure code for every
//!   refused or invalid filter, in request order.
//!
//! With `MOAT_FUZZ_BROKER_ORDER=1` it also checks that the broker sees acknowledgements in its
//! own delivery order (PUBACK and PUBREC in the order of its PUBLISHes, PUBCOMP in the order of
//! moat's PUBRECs), which rumqttd requires (it closes the connection on an "out of order ack";
//! issue 13, Deliver item 4). Off by default until moat keeps that order.
//!
//! Where the broker breaks the protocol itself (reuses an open packet id, sends a PUBREL for
//! nothing), that packet id is no longer checked: moat only has to survive it.
#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

use moat::fuzzing::{Effects, Session, Setup};
use moat::mqtt::{self, Packet, ProtocolVersion, QoS};
use moat::policy::{Policy, PolicySource, PublishFacts, Subject};

/// The reader's size limit in the fuzzer (frames above it never reach the state).
const MAX_PACKET_SIZE: usize = 64 * 1024;

/// Policies the sessions run under: everything open; a mix of deny, `max_qos`, receive-only,
/// substitution and `disconnect: true` rules; tight per-client limits; nothing allowed.
const POLICIES: [&str; 4] = [
    "anonymous: true\nacl:\n  - allow: all\n    topics: [\"#\"]\n",
    r##"anonymous: true
acl:
  - deny: publish
    topics: ["a/secret/#"]
  - deny: receive
    topics: ["a/hidden/#"]
  - allow: [publish, subscribe]
    topics: ["a/#"]
    max_qos: 1
    retain: false
  - allow: all
    topics: ["b/#", "{username}/#"]
  - allow: receive
    topics: ["a/#"]
  - allow: publish
    topics: ["kick/#"]
    max_qos: 0
    disconnect: true
"##,
    r##"anonymous: true
acl:
  - allow: all
    topics: ["#"]
limits:
  client:
    publish: { rate: 5/s, burst: 3, bytes: 1KiB/s, byte_burst: 2KiB, on_exceed: throttle }
    subscribe: { rate: 2/s, burst: 2, max_per_session: 3, on_exceed: disconnect }
    max_inflight: 3
    max_topic_length: 32
    max_topic_levels: 4
"##,
    "anonymous: true\n",
];

/// Topics and filters the typed packets pick from: each policy's interesting corners, plus
/// wildcards, shared subscriptions, `$` topics, an invalid filter and the empty topic.
const TOPICS: [&str; 16] = [
    "a/b",
    "a/secret/x",
    "a/hidden/x",
    "b/c",
    "alice/x",
    "kick/x",
    "$SYS/x",
    "",
    "a/#",
    "#",
    "+/b",
    "$share/g/b/c",
    "a/+/#",
    "a/#/b",
    "x/y/z/w/v",
    "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z",
];

fn policies() -> &'static [Arc<Policy>] {
    static POLICY: OnceLock<Vec<Arc<Policy>>> = OnceLock::new();
    POLICY.get_or_init(|| {
        POLICIES
            .iter()
            .map(|text| {
                let source = PolicySource {
                    path: "fuzz.yaml".into(),
                    text: (*text).to_owned(),
                };
                Arc::new(moat::policy::compile(&[source]).expect("the fuzz policies compile"))
            })
            .collect()
    })
}

/// The clock of every session starts here; operations move it forward.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[derive(Arbitrary, Debug)]
struct Input {
    version: u8,
    policy: u8,
    who: u8,
    /// Receive Maximum (MQTT 5 only): small, so it is reached.
    receive_maximum: u8,
    /// The client's Maximum Packet Size (MQTT 5 only), if any.
    client_max: Option<u8>,
    session_expiry_zero: bool,
    resumed: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Client(Pkt),
    Broker(Pkt),
    ClientRaw(Vec<u8>),
    BrokerRaw(Vec<u8>),
    /// The clock moves on this many milliseconds.
    Wait(u16),
}

/// A packet id: mostly a handful of values, so exchanges collide; sometimes 0 or the largest.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Id(u8);

impl Id {
    fn get(self) -> u16 {
        match self.0 {
            0 => 0,
            255 => u16::MAX,
            n => 1 + u16::from(n % 5),
        }
    }
}

/// A topic or filter: from the list, or anything.
#[derive(Arbitrary, Debug)]
enum Topic {
    Known(u8),
    Other(String),
}

impl Topic {
    fn get(&self) -> mqtt::MqttStr {
        match self {
            Topic::Known(i) => {
                let i = usize::from(*i) % TOPICS.len();
                mqtt::MqttStr::from(TOPICS.get(i).copied().unwrap_or(""))
            }
            Topic::Other(s) => mqtt::MqttStr::new(s).unwrap_or_else(|_| "x".into()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Pkt {
    Publish {
        topic: Topic,
        qos: u8,
        id: Id,
        dup: bool,
        retain: bool,
        alias: Option<u8>,
        payload: u16,
        subscription_id: bool,
    },
    PubAck(Id, u8),
    PubRec(Id, u8),
    PubRel(Id, u8),
    PubComp(Id, u8),
    Subscribe {
        id: Id,
        filters: Vec<(Topic, u8)>,
    },
    SubAck {
        id: Id,
        codes: Vec<u8>,
    },
    Unsubscribe {
        id: Id,
        filters: Vec<Topic>,
    },
    UnsubAck(Id, u8),
    PingReq,
    PingResp,
    Disconnect {
        reason: u8,
        session_expiry: Option<u32>,
    },
    ConnAck,
    Auth,
}

impl Pkt {
    fn packet(&self) -> Packet {
        let ack = |id: &Id, reason: &u8| mqtt::Ack {
            reason: *reason,
            ..mqtt::Ack::new(id.get())
        };
        match self {
            Pkt::Publish {
                topic,
                qos,
                id,
                dup,
                retain,
                alias,
                payload,
                subscription_id,
            } => {
                let qos = QoS::from_u8(qos % 3).unwrap_or(QoS::AtMostOnce);
                let mut properties = mqtt::PublishProperties {
                    topic_alias: alias.map(|a| u16::from(a % 70)),
                    ..Default::default()
                };
                if *subscription_id {
                    properties.subscription_identifiers.push(1);
                }
                Packet::Publish(mqtt::Publish {
                    dup: *dup && qos != QoS::AtMostOnce,
                    qos,
                    retain: *retain,
                    topic: topic.get(),
                    pkid: (qos != QoS::AtMostOnce).then(|| id.get()),
                    properties,
                    payload: Bytes::from(vec![b'x'; usize::from(payload % 600)]),
                })
            }
            Pkt::PubAck(id, r) => Packet::PubAck(ack(id, r)),
            Pkt::PubRec(id, r) => Packet::PubRec(ack(id, r)),
            Pkt::PubRel(id, r) => Packet::PubRel(ack(id, r)),
            Pkt::PubComp(id, r) => Packet::PubComp(ack(id, r)),
            Pkt::Subscribe { id, filters } => Packet::Subscribe(mqtt::Subscribe {
                pkid: id.get(),
                properties: Default::default(),
                filters: filters
                    .iter()
                    .take(8)
                    .map(|(t, q)| {
                        let qos = QoS::from_u8(q % 3).unwrap_or(QoS::AtMostOnce);
                        (t.get(), mqtt::SubscribeOptions::qos(qos))
                    })
                    .collect(),
            }),
            Pkt::SubAck { id, codes } => Packet::SubAck(mqtt::SubAck {
                pkid: id.get(),
                properties: Default::default(),
                codes: codes.iter().take(8).copied().collect(),
            }),
            Pkt::Unsubscribe { id, filters } => Packet::Unsubscribe(mqtt::Unsubscribe {
                pkid: id.get(),
                user_properties: Vec::new(),
                filters: filters.iter().take(8).map(Topic::get).collect(),
            }),
            Pkt::UnsubAck(id, code) => Packet::UnsubAck(mqtt::UnsubAck {
                pkid: id.get(),
                properties: Default::default(),
                codes: vec![*code],
            }),
            Pkt::PingReq => Packet::PingReq,
            Pkt::PingResp => Packet::PingResp,
            Pkt::Disconnect {
                reason,
                session_expiry,
            } => Packet::Disconnect(mqtt::Disconnect {
                reason: *reason,
                properties: mqtt::DisconnectProperties {
                    session_expiry: *session_expiry,
                    ..Default::default()
                },
            }),
            Pkt::ConnAck => Packet::ConnAck(Default::default()),
            Pkt::Auth => Packet::Auth(Default::default()),
        }
    }
}

/// The next packet an open exchange waits for, as the side that opened it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ack,
    Rec,
    Rel,
    Comp,
}

/// What each side has opened, from the packets alone.
struct Model {
    version: ProtocolVersion,
    policy: Arc<Policy>,
    subject: Subject,
    setup: Setup,
    /// Deliveries the broker opened, by its packet id.
    inbound: HashMap<u16, Stage>,
    /// Packet ids on which the broker broke the protocol: no longer checked.
    broken: HashSet<u16>,
    /// The client's exchanges the broker has seen, by the client's packet id.
    outbound: HashMap<u16, Stage>,
    /// QoS 2 exchanges moat answered itself (positive PUBREC, no PUBCOMP yet).
    local: HashSet<u16>,
    /// SUBSCRIBEs moat partly refused: per filter, whether it must get a failure code.
    subs: HashMap<u16, Vec<bool>>,
    /// Whether acknowledgements must keep the broker's order (`MOAT_FUZZ_BROKER_ORDER`).
    ordered: bool,
    /// Deliveries awaiting PUBACK or PUBREC, in the order the broker sent them.
    unacked: VecDeque<u16>,
    /// Deliveries awaiting PUBCOMP, in the order moat sent their PUBREC.
    uncompleted: VecDeque<u16>,
}

/// Whether `MOAT_FUZZ_BROKER_ORDER` is set (read once).
fn broker_order() -> bool {
    static ORDERED: OnceLock<bool> = OnceLock::new();
    *ORDERED.get_or_init(|| std::env::var_os("MOAT_FUZZ_BROKER_ORDER").is_some_and(|v| v == "1"))
}

fuzz_target!(|input: Input| {
    let version = match input.version % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let all = policies();
    let policy = all
        .get(usize::from(input.policy) % all.len())
        .cloned()
        .expect("a policy");
    let addr = [127, 0, 0, 1].into();
    let subject = match input.who % 3 {
        0 => Subject::describe(Some("alice"), Some("c1"), None, None, addr),
        1 => Subject::describe(None, Some("dev-1"), Some("dev"), None, addr),
        _ => Subject::describe(None, Some("anon-1"), None, None, addr),
    };
    let v5 = version == ProtocolVersion::V5;
    let setup = Setup {
        receive_maximum: v5.then(|| 1 + u16::from(input.receive_maximum % 8)),
        client_max_packet_size: input
            .client_max
            .filter(|_| v5)
            .map(|m| 8 + 4 * usize::from(m)),
        session_expiry_zero: v5 && input.session_expiry_zero,
        resumed: input.resumed,
    };
    let mut session = Session::new(version, subject.clone(), Arc::clone(&policy), setup);
    let mut model = Model::new(version, policy, subject, setup);
    let mut now = epoch();
    for op in input.ops.iter().take(256) {
        let (from_client, frame) = match op {
            Op::Wait(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                continue;
            }
            Op::Client(p) | Op::Broker(p) => {
                let Ok(frame) = p.packet().to_bytes(version) else {
                    continue;
                };
                (matches!(op, Op::Client(_)), frame)
            }
            Op::ClientRaw(raw) | Op::BrokerRaw(raw) => {
                // Cut one frame as the reader would; a partial or refused one never reaches
                // the state (the reader's own fuzzing is the `decode` target's).
                let Ok(Some(header)) = mqtt::check(raw, MAX_PACKET_SIZE) else {
                    continue;
                };
                let Some(frame) = raw.get(..header.frame_len()) else {
                    continue;
                };
                (
                    matches!(op, Op::ClientRaw(_)),
                    Bytes::copy_from_slice(frame),
                )
            }
        };
        let effects = if from_client {
            model.client_sent(&frame);
            let fx = session.client(now, frame);
            if let Some(wait) = fx.throttled {
                now = now.checked_add(wait).unwrap_or(now);
            }
            fx
        } else {
            model.broker_sent(&frame);
            session.broker(frame)
        };
        model.check(&effects, from_client);
        if effects.end.is_some() {
            break;
        }
    }
});

// === impl Model ===

impl Model {
    fn new(version: ProtocolVersion, policy: Arc<Policy>, subject: Subject, setup: Setup) -> Self {
        Model {
            version,
            policy,
            subject,
            setup,
            inbound: HashMap::new(),
            broken: HashSet::new(),
            outbound: HashMap::new(),
            local: HashSet::new(),
            subs: HashMap::new(),
            ordered: broker_order(),
            unacked: VecDeque::new(),
            uncompleted: VecDeque::new(),
        }
    }

    /// A frame the client sent: only SUBSCRIBEs need remembering (what moat must refuse).
    fn client_sent(&mut self, frame: &Bytes) {
        let Ok(Some(request)) = mqtt::decode_subscribe_request(frame.clone(), self.version) else {
            return;
        };
        let mut refused = Vec::with_capacity(request.entries.len());
        for entry in &request.entries {
            refused.push(match entry {
                Ok((filter, _)) => !self
                    .policy
                    .authorize_subscribe(&self.subject, filter.as_str())
                    .is_allowed(),
                Err(_) => true,
            });
        }
        if refused.contains(&true) {
            self.subs.insert(request.pkid, refused);
        } else {
            self.subs.remove(&request.pkid);
        }
    }

    /// A frame the broker sent: the deliveries it opens, and its answers to the client's.
    fn broker_sent(&mut self, frame: &Bytes) {
        let Ok(packet) = mqtt::decode(frame.clone(), self.version) else {
            return;
        };
        match packet {
            Packet::Publish(p) => {
                let Some(id) = p.pkid else { return };
                let first = match p.qos {
                    QoS::ExactlyOnce => Stage::Rec,
                    _ => Stage::Ack,
                };
                // A second PUBLISH on an open id (in one connection) is the broker's fault.
                if self.inbound.insert(id, first).is_some() {
                    self.broken.insert(id);
                }
                self.unacked.push_back(id);
            }
            Packet::PubRel(r) => match self.inbound.get(&r.pkid) {
                Some(Stage::Rel) => {
                    self.inbound.insert(r.pkid, Stage::Comp);
                }
                Some(Stage::Comp) => {}
                _ => {
                    self.broken.insert(r.pkid);
                }
            },
            Packet::PubAck(a) => self.broker_acked(a.pkid, Stage::Ack, None),
            Packet::PubRec(a) if a.reason < 0x80 => {
                self.broker_acked(a.pkid, Stage::Rec, Some(Stage::Rel))
            }
            Packet::PubRec(a) => self.broker_acked(a.pkid, Stage::Rec, None),
            Packet::PubComp(a) => self.broker_acked(a.pkid, Stage::Comp, None),
            _ => {}
        }
    }

    /// The broker's acknowledgement of a client PUBLISH moves the exchange on only from the
    /// stage it answers.
    fn broker_acked(&mut self, id: u16, answers: Stage, next: Option<Stage>) {
        if self.outbound.get(&id) != Some(&answers) {
            return;
        }
        match next {
            Some(n) => self.outbound.insert(id, n),
            None => self.outbound.remove(&id),
        };
    }

    /// What moat wrote for one packet (`from_client`: the packet was the client's).
    fn check(&mut self, fx: &Effects, from_client: bool) {
        for write in &fx.to_broker {
            for frame in whole_packets(write, "broker") {
                let packet = mqtt::decode(frame.clone(), self.version).unwrap_or_else(|e| {
                    panic!("moat wrote the broker a packet it cannot read: {e}: {frame:02x?}")
                });
                self.to_broker(&packet);
            }
        }
        for write in &fx.to_client {
            for frame in whole_packets(write, "client") {
                let packet = mqtt::decode(frame.clone(), self.version).unwrap_or_else(|e| {
                    panic!("moat wrote the client a packet it cannot read: {e}: {frame:02x?}")
                });
                self.to_client(&packet, frame.len(), from_client);
            }
        }
    }

    fn to_broker(&mut self, packet: &Packet) {
        match packet {
            Packet::Publish(p) => self.publish_to_broker(p),
            Packet::Subscribe(s) => {
                for (filter, opts) in &s.filters {
                    let d = self
                        .policy
                        .authorize_subscribe(&self.subject, filter.as_str());
                    assert!(
                        d.is_allowed(),
                        "SUBSCRIBE {filter:?} reached the broker: {d:?}"
                    );
                    assert!(
                        (opts.qos as u8) <= d.max_qos,
                        "SUBSCRIBE {filter:?} at QoS {:?} above max_qos {}",
                        opts.qos,
                        d.max_qos
                    );
                }
            }
            Packet::PubAck(a) => self.ack_to_broker(a.pkid, Stage::Ack, None, "PUBACK"),
            Packet::PubRec(a) if a.reason < 0x80 => {
                self.ack_to_broker(a.pkid, Stage::Rec, Some(Stage::Rel), "PUBREC")
            }
            Packet::PubRec(a) => self.ack_to_broker(a.pkid, Stage::Rec, None, "PUBREC"),
            Packet::PubComp(a) => self.ack_to_broker(a.pkid, Stage::Comp, None, "PUBCOMP"),
            Packet::PubRel(r) => {
                let id = r.pkid;
                assert!(
                    !self.local.contains(&id),
                    "PUBREL {id} of an exchange moat holds reached the broker"
                );
                match self.outbound.get(&id) {
                    Some(Stage::Rel) => {
                        self.outbound.insert(id, Stage::Comp);
                    }
                    Some(Stage::Comp) => {}
                    None if self.setup.resumed => {}
                    other => panic!("PUBREL {id} reached the broker in stage {other:?}"),
                }
            }
            Packet::Unsubscribe(_) | Packet::Disconnect(_) => {}
            other => panic!("a packet only a server sends reached the broker: {other:?}"),
        }
    }

    fn publish_to_broker(&mut self, p: &mqtt::Publish) {
        assert!(
            p.properties.topic_alias.is_none() && !p.topic.is_empty(),
            "a topic alias reached the broker: {p:?}"
        );
        let facts = PublishFacts {
            topic: p.topic.as_str(),
            qos: p.qos as u8,
            retain: p.retain,
            empty_payload: p.payload.is_empty(),
        };
        let d = self.policy.authorize_publish(&self.subject, &facts);
        assert!(
            d.is_allowed(),
            "PUBLISH {:?} reached the broker: {d:?}",
            p.topic
        );
        let Some(id) = p.pkid else { return };
        assert!(
            !self.local.contains(&id),
            "PUBLISH {id} of a QoS 2 exchange moat holds reached the broker [MQTT-4.3.3-10]"
        );
        let first = match p.qos {
            QoS::ExactlyOnce => Stage::Rec,
            _ => Stage::Ack,
        };
        match (self.outbound.get(&id), p.qos) {
            (None, _) => {
                if let Some(max) = self.setup.receive_maximum {
                    assert!(
                        self.outbound.len() < usize::from(max),
                        "PUBLISH {id} beyond the Receive Maximum {max} reached the broker"
                    );
                }
                self.outbound.insert(id, first);
            }
            (Some(Stage::Ack), QoS::AtLeastOnce) => {}
            (Some(Stage::Rec | Stage::Rel), QoS::ExactlyOnce) => {}
            (Some(stage), qos) => {
                panic!("PUBLISH {id} at {qos:?} reached the broker while in stage {stage:?}")
            }
        }
    }

    /// An acknowledgement to the broker must answer the stage the broker's delivery is in (and,
    /// when checked, come in the broker's order).
    fn ack_to_broker(&mut self, id: u16, answers: Stage, next: Option<Stage>, what: &str) {
        let queue = match answers {
            Stage::Comp => &mut self.uncompleted,
            _ => &mut self.unacked,
        };
        let head = queue.pop_front();
        if self.broken.contains(&id) {
            return;
        }
        if self.ordered && self.broken.is_empty() {
            assert_eq!(
                head,
                Some(id),
                "{what} {id} reached the broker out of its order"
            );
        }
        if next == Some(Stage::Rel) {
            self.uncompleted.push_back(id);
        }
        let stage = self.inbound.get(&id).copied();
        assert_eq!(
            stage,
            Some(answers),
            "{what} {id} reached the broker for a delivery in stage {stage:?}"
        );
        match next {
            Some(n) => self.inbound.insert(id, n),
            None => self.inbound.remove(&id),
        };
    }

    fn to_client(&mut self, packet: &Packet, len: usize, from_client: bool) {
        match packet {
            Packet::Publish(p) => {
                let d = self
                    .policy
                    .authorize_receive(&self.subject, p.topic.as_str());
                assert!(
                    d.is_allowed(),
                    "a delivery on {:?} reached the client: {d:?}",
                    p.topic
                );
                if let Some(max) = self.setup.client_max_packet_size {
                    assert!(
                        len <= max,
                        "a {len}-byte delivery reached a client whose maximum is {max} [MQTT-3.1.2-25]"
                    );
                }
            }
            Packet::SubAck(ack) => {
                let Some(refused) = self.subs.remove(&ack.pkid) else {
                    return;
                };
                assert_eq!(
                    ack.codes.len(),
                    refused.len(),
                    "SUBACK {} has a code per filter",
                    ack.pkid
                );
                for (code, refused) in ack.codes.iter().zip(&refused) {
                    assert!(
                        !refused || *code >= 0x80,
                        "SUBACK {} grants a refused filter: {:?}",
                        ack.pkid,
                        ack.codes
                    );
                }
            }
            // moat's own answers to the client's QoS 2 PUBLISHes and PUBRELs.
            Packet::PubRec(r) if from_client && r.reason < 0x80 => {
                self.local.insert(r.pkid);
            }
            Packet::PubComp(c) if from_client => {
                self.local.remove(&c.pkid);
            }
            _ => {}
        }
    }
}

/// The packets of one write: acknowledgements released together (held behind an earlier one
/// for the broker's order) share a write. It must hold whole packets and nothing else.
fn whole_packets(write: &Bytes, to: &str) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < write.len() {
        let header = match mqtt::check(&write[at..], usize::MAX) {
            Ok(Some(h)) => h,
            other => panic!(
                "moat wrote the {to} bytes that are not whole packets ({other:?}): {write:02x?}"
            ),
        };
        let end = at + header.frame_len();
        assert!(
            end <= write.len(),
            "moat wrote the {to} a cut packet: {write:02x?}"
        );
        frames.push(write.slice(at..end));
        at = end;
    }
    assert!(!frames.is_empty(), "moat wrote the {to} an empty write");
    frames
}
