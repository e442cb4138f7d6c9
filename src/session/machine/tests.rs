//! The machine's clocks with an explicit `now`: keep alive [MQTT-3.1.2-24], moat's PINGREQs to
//! the broker, the throttle, and a throttle longer than the keep alive. No runtime, no
//! sockets, no sleeps: a test moves `now` and asks the machine what is due.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::mqtt::{self, Packet, QoS};
use crate::policy::{Bucket, PolicySource, Rate};
use crate::session::error::{Exceeded, PolicyRefusal};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const PINGREQ_FRAME: &[u8] = &[0xc0, 0x00];
const PINGRESP_FRAME: &[u8] = &[0xd0, 0x00];
const PING_EVERY: Duration = Duration::from_secs(30);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn open_policy() -> Arc<ArcSwap<Policy>> {
    let source = PolicySource {
        path: "p.yaml".into(),
        text: "acl:\n  - allow: all\n    topics: [\"#\"]\n".into(),
    };
    Arc::new(ArcSwap::from_pointee(
        crate::policy::compile(&[source]).unwrap(),
    ))
}

fn machine(now: Instant, keep_alive: u16, limits: ClientLimits) -> Machine {
    machine_pinging(now, keep_alive, limits, Some(PING_EVERY))
}

fn machine_pinging(
    now: Instant,
    keep_alive: u16,
    limits: ClientLimits,
    ping_every: Option<Duration>,
) -> Machine {
    let setup = Setup {
        version: V3,
        subject: Subject::describe(Some("alice"), Some("c1"), None, None, [127, 0, 0, 1].into()),
        topic_alias_maximum: 0,
        terms: Terms::default(),
        limits,
        keep_alive,
        ping_every,
    };
    Machine::new(now, setup, open_policy())
}

fn per_sec(amount: u64, burst: u64) -> Option<Bucket> {
    Some(Bucket {
        rate: Rate {
            amount,
            per: Duration::from_secs(1),
        },
        burst,
    })
}

fn publish(topic: &str, payload: usize) -> Bytes {
    Packet::Publish(mqtt::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        pkid: None,
        properties: Default::default(),
        payload: Bytes::from(vec![b'x'; payload]),
    })
    .to_bytes(V3)
    .unwrap()
}

fn transmits(m: &mut Machine, to: Dest) -> Vec<Bytes> {
    std::iter::from_fn(|| m.poll_transmit(to)).collect()
}

fn keep_alive_expired(r: Result<(), Refusal>) -> bool {
    matches!(r, Err(Refusal::Peer(PeerFault::KeepAlive)))
}

#[test]
fn silence_for_one_and_a_half_keep_alives_closes_mqtt_3_1_2_24() {
    let t0 = Instant::now();
    let mut m = machine(t0, 10, ClientLimits::default());
    assert_eq!(m.poll_timeout(), Some(t0 + secs(15.0)));
    // Early or on time for something else: nothing happens.
    assert!(m.handle_timeout(t0 + secs(14.9)).is_ok());
    assert!(keep_alive_expired(m.handle_timeout(t0 + secs(15.0))));
    // KEEP ALIVE timeout is what an MQTT 5 client is told; 3.x is closed.
    let r: Refusal = PeerFault::KeepAlive.into();
    assert_eq!(
        r.outcome(),
        crate::session::error::Outcome::Disconnect(mqtt::ReasonCode::KeepAliveTimeout)
    );
}

#[test]
fn a_client_packet_moves_the_keep_alive_deadline_mqtt_3_1_2_24() {
    let t0 = Instant::now();
    let mut m = machine(t0, 1, ClientLimits::default());
    // A PINGREQ at 1 s is answered and moves the deadline to 1.5 s after it.
    m.handle_client(t0 + secs(1.0), Bytes::from_static(PINGREQ_FRAME))
        .unwrap();
    assert_eq!(transmits(&mut m, Dest::Client), [PINGRESP_FRAME]);
    assert!(transmits(&mut m, Dest::Broker).is_empty());
    // The timer armed for 1.5 s fires early and finds nothing due.
    assert!(m.handle_timeout(t0 + secs(1.5)).is_ok());
    assert_eq!(m.poll_timeout(), Some(t0 + secs(2.5)));
    assert!(m.handle_timeout(t0 + secs(2.4)).is_ok());
    assert!(keep_alive_expired(m.handle_timeout(t0 + secs(2.5))));
}

#[test]
fn keep_alive_0_means_no_idle_deadline_only_the_broker_ping() {
    let t0 = Instant::now();
    let mut m = machine(t0, 0, ClientLimits::default());
    assert_eq!(m.poll_timeout(), Some(t0 + PING_EVERY));
    assert!(m.handle_timeout(t0 + secs(3600.0)).is_ok());
}

/// Toward the in-memory broker moat sends no PINGREQ (`upstream::keep_alive`): an idle
/// session's only deadline is its client's keep alive, and none at all without one.
#[test]
fn a_session_that_pings_no_broker_wakes_only_for_its_client() {
    let t0 = Instant::now();
    let mut m = machine_pinging(t0, 60, ClientLimits::default(), None);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(90.0)));
    m.handle_client(t0 + secs(50.0), Bytes::from_static(PINGREQ_FRAME))
        .unwrap();
    assert_eq!(transmits(&mut m, Dest::Client), [PINGRESP_FRAME]);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(140.0)));
    assert!(m.handle_timeout(t0 + secs(139.0)).is_ok());
    assert!(transmits(&mut m, Dest::Broker).is_empty());
    let idle = machine_pinging(t0, 0, ClientLimits::default(), None);
    assert_eq!(idle.poll_timeout(), None);
}

#[test]
fn moat_pings_the_broker_on_its_own_schedule_and_swallows_the_pingresp() {
    let t0 = Instant::now();
    let mut m = machine(t0, 60, ClientLimits::default());
    assert_eq!(m.poll_timeout(), Some(t0 + PING_EVERY));
    m.handle_timeout(t0 + PING_EVERY).unwrap();
    assert_eq!(transmits(&mut m, Dest::Broker), [PINGREQ_FRAME]);
    // The next one is 30 s later; the client's packets do not move it.
    assert_eq!(m.poll_timeout(), Some(t0 + PING_EVERY * 2));
    m.handle_client(t0 + secs(40.0), Bytes::from_static(PINGREQ_FRAME))
        .unwrap();
    assert_eq!(m.poll_timeout(), Some(t0 + PING_EVERY * 2));
    // The broker's PINGRESP answers moat's PINGREQ: it never reaches the client.
    m.handle_broker(t0 + secs(30.1), Bytes::from_static(PINGRESP_FRAME))
        .unwrap();
    assert_eq!(transmits(&mut m, Dest::Client), [PINGRESP_FRAME]);
    assert!(m.poll_transmit(Dest::Client).is_none());
}

#[test]
fn a_throttled_client_is_not_read_until_it_is_within_its_rate() {
    let t0 = Instant::now();
    let limits = ClientLimits {
        publish: per_sec(10, 1),
        ..ClientLimits::default()
    };
    let mut m = machine(t0, 60, limits);
    m.handle_client(t0, publish("a/b", 1)).unwrap();
    assert!(m.client_readable(t0));
    // The second one passes too, and pays its debt by 100 ms without reads.
    m.handle_client(t0, publish("a/b", 1)).unwrap();
    assert_eq!(transmits(&mut m, Dest::Broker).len(), 2);
    assert!(matches!(m.poll_event(), Some(Event::Throttled)));
    assert!(!m.client_readable(t0 + secs(0.099)));
    assert!(m.client_readable(t0 + secs(0.1)));
    assert_eq!(m.poll_timeout(), Some(t0 + secs(0.1)));
    m.handle_timeout(t0 + secs(0.1)).unwrap();
    assert!(m.poll_event().is_none());
}

#[test]
fn throttle_holds_a_publisher_to_its_rate() {
    // 201 QoS 0 PUBLISHes at once against 100/s with a burst of 1, read as the driver reads:
    // only while the machine lets it. The 201st is read 2 s after the first.
    let t0 = Instant::now();
    let limits = ClientLimits {
        publish: per_sec(100, 1),
        ..ClientLimits::default()
    };
    let mut m = machine(t0, 60, limits);
    let mut now = t0;
    for _ in 0..201 {
        while !m.client_readable(now) {
            now = m.poll_timeout().unwrap();
            m.handle_timeout(now).unwrap();
        }
        m.handle_client(now, publish("rate/t", 3)).unwrap();
    }
    assert_eq!(transmits(&mut m, Dest::Broker).len(), 201);
    let took = (now - t0).as_secs_f64();
    assert!((took - 1.99).abs() < 0.001, "{took}");
}

#[test]
fn a_throttle_longer_than_the_keep_alive_is_no_keep_alive_timeout() {
    // Keep alive 1 s (closed after 1.5 s of silence); a 40-byte PUBLISH against 10 bytes/s
    // with a burst of 10 owes 3 s. The client's PINGREQ sent right after it waits unread in
    // the socket while moat pauses: that pause is moat's, not the client's silence.
    let t0 = Instant::now();
    let limits = ClientLimits {
        publish_bytes: per_sec(10, 10),
        ..ClientLimits::default()
    };
    let mut m = machine(t0, 1, limits);
    let big = publish("t", 40 - 5);
    assert_eq!(big.len(), 40);
    m.handle_client(t0, big).unwrap();
    assert!(matches!(m.poll_event(), Some(Event::Throttled)));
    assert!(!m.client_readable(t0 + secs(2.9)));
    // The next deadline is the end of the throttle, not the keep alive.
    assert_eq!(m.poll_timeout(), Some(t0 + secs(3.0)));
    // A timer still armed for 1.5 s finds nothing due.
    assert!(m.handle_timeout(t0 + secs(1.5)).is_ok());
    m.handle_timeout(t0 + secs(3.0)).unwrap();
    assert!(m.client_readable(t0 + secs(3.0)));
    // The PINGREQ is read at 3 s and answered; a silent client is closed 1.5 s after it.
    m.handle_client(t0 + secs(3.0), Bytes::from_static(PINGREQ_FRAME))
        .unwrap();
    assert_eq!(transmits(&mut m, Dest::Client), [PINGRESP_FRAME]);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(4.5)));
    assert!(keep_alive_expired(m.handle_timeout(t0 + secs(4.5))));
}

#[test]
fn a_client_silent_after_a_throttle_gets_its_full_keep_alive_from_its_end() {
    let t0 = Instant::now();
    let limits = ClientLimits {
        publish_bytes: per_sec(10, 10),
        ..ClientLimits::default()
    };
    let mut m = machine(t0, 1, limits);
    m.handle_client(t0, publish("t", 35)).unwrap();
    // Nothing more comes: the keep alive counts from the end of the pause (3 s).
    assert!(m.handle_timeout(t0 + secs(3.0)).is_ok());
    assert!(m.handle_timeout(t0 + secs(4.49)).is_ok());
    assert!(keep_alive_expired(m.handle_timeout(t0 + secs(4.5))));
}

#[test]
fn a_limit_refusal_leaves_what_passed_before_it_queued() {
    let t0 = Instant::now();
    let limits = ClientLimits {
        max_topic_levels: 2,
        ..ClientLimits::default()
    };
    let mut m = machine(t0, 60, limits);
    m.handle_client(t0, publish("a/b", 1)).unwrap();
    let refused = m.handle_client(t0, publish("a/b/c", 1));
    assert!(
        matches!(
            refused,
            Err(Refusal::Policy(PolicyRefusal::Limit(
                Exceeded::TopicLevels,
                _
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(transmits(&mut m, Dest::Broker).len(), 1);
}

#[test]
fn a_disconnect_closes_toward_the_broker() {
    let t0 = Instant::now();
    let mut m = machine(t0, 60, ClientLimits::default());
    m.handle_client(t0, Bytes::from_static(&[0xe0, 0x00]))
        .unwrap();
    assert_eq!(m.closing(), Some(Dest::Broker));
    assert_eq!(transmits(&mut m, Dest::Broker), [&[0xe0u8, 0x00][..]]);
}

/// The enforced set allows `a/#`; the shadow set denies `a/secret` first.
fn shadowed_policy() -> Arc<ArcSwap<Policy>> {
    let compile = |path: &str, text: &str| {
        crate::policy::compile(&[PolicySource {
            path: path.into(),
            text: text.into(),
        }])
        .unwrap()
    };
    let shadow = compile(
        "s.yaml",
        "acl:\n  - deny: all\n    topics: [\"a/secret\"]\n  - allow: all\n    topics: [\"a/#\"]\n",
    );
    let enforced = compile("p.yaml", "acl:\n  - allow: all\n    topics: [\"a/#\"]\n");
    Arc::new(ArcSwap::from_pointee(
        enforced.with_shadow(Some(Arc::new(shadow))),
    ))
}

#[test]
fn the_shadow_set_is_reported_never_enforced() {
    let t0 = Instant::now();
    let setup = Setup {
        version: V3,
        subject: Subject::describe(Some("alice"), Some("c1"), None, None, [127, 0, 0, 1].into()),
        topic_alias_maximum: 0,
        terms: Terms::default(),
        limits: ClientLimits::default(),
        keep_alive: 0,
        ping_every: Some(PING_EVERY),
    };
    let mut m = Machine::new(t0, setup, shadowed_policy());
    for topic in ["a/open", "a/secret", "a/secret"] {
        m.handle_client(t0, publish(topic, 1)).unwrap();
    }
    // Every publish went to the broker: the enforced set decides.
    assert_eq!(transmits(&mut m, Dest::Broker).len(), 3);
    let notes: Vec<Box<ShadowNote>> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::Shadow(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let d = &notes[0].difference;
    assert_eq!(notes[0].topic, "a/secret");
    assert_eq!(d.enforced.rule.to_string(), "p.yaml:2 allow all a/#");
    assert_eq!(d.shadow.rule.to_string(), "s.yaml:2 deny all a/secret");
    // A delivery from the broker is compared too.
    m.handle_broker(t0, publish("a/secret", 1)).unwrap();
    assert_eq!(transmits(&mut m, Dest::Client).len(), 1);
    assert!(
        matches!(m.poll_event(), Some(Event::Shadow(n)) if n.difference.action == crate::policy::shadow::ShadowAction::Receive)
    );
}

#[test]
fn the_tally_counts_messages_and_bytes_each_way() {
    let t0 = Instant::now();
    let mut m = machine(t0, 0, ClientLimits::default());
    let p = publish("a/b", 10);
    m.handle_client(t0, p.clone()).unwrap();
    m.handle_client(t0, Bytes::from_static(PINGREQ_FRAME))
        .unwrap();
    m.handle_broker(t0, p.clone()).unwrap();
    m.handle_broker(t0, Bytes::from_static(PINGRESP_FRAME))
        .unwrap();
    let len = p.len() as u64;
    assert_eq!(
        m.tally(),
        Tally {
            messages_in: 1,
            messages_out: 1,
            bytes_in: len + 2,
            bytes_out: len + 2,
        }
    );
}
