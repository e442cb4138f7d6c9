//! Session limits with decoded packets and a fake `now`, no sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::mqtt::test_util::frame;
use crate::mqtt::{self, ProtocolVersion};
use crate::policy::{Bucket, ClientLimits, OnExceed, Rate};

fn publish(topic: &str, qos: u8, id: u16, payload: usize) -> Bytes {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend(std::iter::repeat_n(b'x', payload));
    frame(0x30 | (qos << 1), &body)
}

fn subscribe(id: u16, filters: &[&str]) -> Bytes {
    let mut body = id.to_be_bytes().to_vec();
    for f in filters {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f.as_bytes());
        body.push(0);
    }
    frame(0x82, &body)
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

fn limits(f: impl FnOnce(&mut ClientLimits)) -> SessionLimits {
    let mut l = ClientLimits::default();
    f(&mut l);
    SessionLimits::new(l)
}

/// Shows a frame to the limits as the machine does: decoded once, with its length.
fn check(s: &mut SessionLimits, now: Instant, frame: &Bytes) -> Check {
    let packet = mqtt::decode(frame.clone(), ProtocolVersion::V3_1_1).unwrap();
    s.check(now, &packet, frame.len())
}

fn refused(c: Check) -> Exceeded {
    match c {
        Check::Refuse(Refusal::Policy(PolicyRefusal::Limit(what, _))) => what,
        other => panic!("expected a limit refusal, got {other:?}"),
    }
}

#[test]
fn throttle_holds_a_client_to_its_rate() {
    let mut s = limits(|l| l.publish = per_sec(10, 1));
    let t0 = Instant::now();
    let mut now = t0;
    let p = publish("a/b", 0, 0, 10);
    // 101 publishes as fast as possible: the driver waits what it is told before each next.
    for _ in 0..101 {
        if let Check::Wait(d) = check(&mut s, now, &p) {
            now += d;
        }
    }
    let elapsed = now - t0;
    assert!((elapsed.as_secs_f64() - 10.0).abs() < 0.01, "{elapsed:?}");
}

#[test]
fn throttle_on_bytes_lets_a_packet_above_the_burst_through() {
    let mut s = limits(|l| l.publish_bytes = per_sec(1000, 100));
    let now = Instant::now();
    let big = publish("t", 0, 0, 2000);
    assert!(matches!(check(&mut s, now, &big), Check::Wait(_)));
}

#[test]
fn disconnect_mode_refuses_above_the_rate_mqtt_0x96() {
    let mut s = limits(|l| {
        l.publish = per_sec(10, 3);
        l.publish_on_exceed = OnExceed::Disconnect;
    });
    let now = Instant::now();
    let p = publish("a", 0, 0, 1);
    for _ in 0..3 {
        assert!(matches!(check(&mut s, now, &p), Check::Pass));
    }
    assert_eq!(refused(check(&mut s, now, &p)), Exceeded::PublishRate);
    // After 100 ms one token is back.
    assert!(matches!(
        check(&mut s, now + Duration::from_millis(100), &p),
        Check::Pass
    ));
    let r = Refusal::Policy(PolicyRefusal::Limit(
        Exceeded::PublishRate,
        s.rule().clone(),
    ));
    assert_eq!(
        r.outcome(),
        crate::session::error::Outcome::Disconnect(crate::mqtt::ReasonCode::MessageRateTooHigh)
    );
}

#[test]
fn topic_length_and_levels() {
    let mut s = limits(|l| {
        l.max_topic_length = 8;
        l.max_topic_levels = 3;
    });
    let now = Instant::now();
    assert!(matches!(
        check(&mut s, now, &publish("a/b/c", 0, 0, 0)),
        Check::Pass
    ));
    assert_eq!(
        refused(check(&mut s, now, &publish("a/b/c/d", 0, 0, 0))),
        Exceeded::TopicLevels
    );
    assert_eq!(
        refused(check(&mut s, now, &publish("abcdefghi", 0, 0, 0))),
        Exceeded::TopicLength
    );
    assert_eq!(
        refused(check(&mut s, now, &subscribe(1, &["a/b/c/#"]))),
        Exceeded::TopicLevels
    );
    // An empty topic (an MQTT 5 alias) is judged after the alias is resolved, not here.
    let alias_only = Packet::Publish(mqtt::Publish {
        dup: false,
        qos: mqtt::QoS::AtMostOnce,
        retain: false,
        topic: "".into(),
        pkid: None,
        properties: Default::default(),
        payload: Bytes::new(),
    });
    assert!(matches!(s.check(now, &alias_only, 8), Check::Pass));
}

#[test]
fn subscriptions_per_session_count_distinct_filters() {
    let mut s = limits(|l| l.max_subscriptions = 2);
    let now = Instant::now();
    assert!(matches!(
        check(&mut s, now, &subscribe(1, &["a", "b"])),
        Check::Pass
    ));
    assert!(matches!(
        check(&mut s, now, &subscribe(2, &["a"])),
        Check::Pass
    ));
    // UNSUBSCRIBE b frees a place.
    let mut body = 3u16.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 1, b'b']);
    assert!(matches!(
        check(&mut s, now, &frame(0xa2, &body)),
        Check::Pass
    ));
    assert!(matches!(
        check(&mut s, now, &subscribe(4, &["c"])),
        Check::Pass
    ));
    assert_eq!(
        refused(check(&mut s, now, &subscribe(5, &["d"]))),
        Exceeded::Subscriptions
    );
}

#[test]
fn subscribe_rate() {
    let mut s = limits(|l| {
        l.subscribe = per_sec(1, 2);
        l.subscribe_on_exceed = OnExceed::Disconnect;
    });
    let now = Instant::now();
    assert!(matches!(
        check(&mut s, now, &subscribe(1, &["a"])),
        Check::Pass
    ));
    assert!(matches!(
        check(&mut s, now, &subscribe(2, &["a"])),
        Check::Pass
    ));
    assert_eq!(
        refused(check(&mut s, now, &subscribe(3, &["a"]))),
        Exceeded::SubscribeRate
    );
}
