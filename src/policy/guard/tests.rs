//! Compiling `network:`, `bans:`, `auto_ban:` and `limits:`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::policy::{compile, BanTarget, Identity, IdentitySource, OnExceed, Policy, PolicySource};

fn src(path: &str, text: &str) -> PolicySource {
    PolicySource {
        path: PathBuf::from(path),
        text: text.to_owned(),
    }
}

fn ok(text: &str) -> Policy {
    compile(&[src("p.yaml", text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match compile(&[src("p.yaml", text)]) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const FULL: &str = r#"
network:
  allow: ["127.0.0.0/8", "::1", "10.0.0.0/8"]
  deny: ["10.66.0.0/16"]
  listeners:
    internal: { allow: ["10.1.0.0/16"] }
bans:
  - { address: "192.0.2.0/24", reason: scanner }
  - { username: mallory, until: "2000-01-01T00:00:00Z" }
  - { client_id: evil }
auto_ban:
  failed_auth: { count: 5, within: 1m, ban_for: 2s, ban: [source, username, client_id] }
  flapping: { count: 0, within: 1m, ban_for: 1m }
limits:
  connections:
    per_ip: 5/s
    per_ip_burst: 10
    global: off
    max_per_ip: 50
    per_listener: { mqtts: 100 }
    ipv6_prefix: 56
    shed_at_memory: 1GiB
  client:
    publish: { rate: 100/s, burst: 200, bytes: 1MiB/s, on_exceed: disconnect }
    subscribe: { rate: 10/s, max_per_session: 20 }
    max_inflight: 16
    keepalive: { min: 5s, max: 10m }
  groups:
    sensors: { publish: { rate: 10/s }, max_inflight: 4 }
  users:
    alice: { publish: { rate: 1000/s } }
"#;

#[test]
fn a_full_guard_section_compiles() {
    let p = ok(FULL);
    assert!(p.admit_addr(ip("127.0.0.5"), "mqtts").is_allowed());
    assert!(p.admit_addr(ip("::1"), "mqtts").is_allowed());
    assert!(!p.admit_addr(ip("10.66.0.1"), "mqtts").is_allowed());
    assert!(!p.admit_addr(ip("10.2.0.1"), "internal").is_allowed());
    let d = p.admit_addr(ip("10.66.0.1"), "mqtts");
    assert_eq!(d.rule.to_string(), "p.yaml:4 network deny 10.66.0.0/16");

    let now = SystemTime::now();
    assert!(p.static_ban_ip(ip("192.0.2.9"), now).is_some());
    assert!(p.static_ban_ip(ip("::ffff:192.0.2.9"), now).is_some());
    assert!(p.static_ban_ip(ip("192.0.3.9"), now).is_none());
    // The user name ban has expired; the client id ban has no expiry.
    assert!(p.static_ban_identity(Some("mallory"), "x", now).is_none());
    let b = p.static_ban_identity(None, "evil", now).unwrap();
    assert_eq!(b.target, BanTarget::ClientId("evil".into()));

    let auto = p.auto_ban();
    let fa = auto.failed_auth.as_ref().unwrap();
    assert_eq!((fa.count, fa.ban_for), (5, Duration::from_secs(2)));
    assert!(fa.ban_source && fa.ban_username && fa.ban_client_id);
    assert!(auto.flapping.is_none());

    let c = p.connection_limits();
    assert_eq!(c.per_source.unwrap().burst, 10);
    assert!(c.global.is_none());
    assert_eq!(c.max_per_source, Some(50));
    assert_eq!(c.per_listener.get("mqtts"), Some(&100));
    assert_eq!(c.ipv6_prefix, 56);
    assert_eq!(c.shed_at_memory, Some(1 << 30));

    let who = |name: &str, groups: &[&str]| Identity {
        name: name.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        source: IdentitySource::Password,
    };
    let bob = p.client_limits(&who("bob", &[]));
    assert_eq!(bob.publish.unwrap().rate.amount, 100);
    assert_eq!(bob.publish_bytes.unwrap().burst, 1 << 20);
    assert_eq!(bob.publish_on_exceed, OnExceed::Disconnect);
    assert_eq!(bob.max_subscriptions, 20);
    assert_eq!((bob.keepalive_min, bob.keepalive_max), (5, Some(600)));
    let sensor = p.client_limits(&who("s1", &["sensors"]));
    assert_eq!(sensor.publish.unwrap().rate.amount, 10);
    assert_eq!(sensor.max_inflight, 4);
    assert_eq!(sensor.rule.label.as_ref(), "limits.groups.sensors");
    let alice = p.client_limits(&who("alice", &["sensors"]));
    assert_eq!(alice.publish.unwrap().rate.amount, 1000);
    assert_eq!(
        alice.max_inflight, 4,
        "group value kept where the user sets none"
    );
}

#[test]
fn no_network_section_admits_nobody() {
    let p = ok("anonymous: true\n");
    assert!(!p.admit_addr(ip("127.0.0.1"), "mqtts").is_allowed());
    assert!(!Policy::deny_all()
        .admit_addr(ip("127.0.0.1"), "m")
        .is_allowed());
}

#[test]
fn network_lists_add_up_across_files() {
    let p = compile(&[
        src("a.yaml", "network: { allow: [127.0.0.1] }\n"),
        src(
            "b.yaml",
            "network: { allow: [\"::1\"], deny: [127.0.0.1] }\n",
        ),
    ])
    .unwrap();
    assert!(p.admit_addr(ip("::1"), "m").is_allowed());
    assert!(!p.admit_addr(ip("127.0.0.1"), "m").is_allowed());
}

#[test]
fn limits_in_two_files_is_an_error() {
    let e = compile(&[
        src("a.yaml", "limits: { client: { max_inflight: 5 } }\n"),
        src("b.yaml", "limits: { client: { max_inflight: 6 } }\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("b.yaml:1:"), "{e}");
    assert!(e.contains("limits is also set at a.yaml:1"), "{e}");
}

#[test]
fn bad_values_name_their_place() {
    let e = err("network:\n  allow: [10.0.0.0/33]\n");
    assert!(e.starts_with("p.yaml:2:"), "{e}");
    assert!(e.contains("not an IP address or CIDR network"), "{e}");
    let e = err("limits:\n  client:\n    publish: { rate: 10/fortnight }\n");
    assert!(e.starts_with("p.yaml:3:"), "{e}");
    assert!(e.contains("AMOUNT/PERIOD"), "{e}");
    let e = err("limits:\n  client:\n    publish: { rate: 0/s }\n");
    assert!(e.contains("at least 1"), "{e}");
    let e = err("bans:\n  - { username: a, client_id: b }\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("bans:\n  - { reason: x }\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("bans:\n  - { username: a, until: tomorrow }\n");
    assert!(e.contains("RFC 3339"), "{e}");
    let e = err("limits:\n  client:\n    max_inflight: 70000\n");
    assert!(e.contains("from 1 to 65535"), "{e}");
    let e = err("limits:\n  connections: { ipv6_prefix: 8 }\n");
    assert!(e.contains("from 16 to 128"), "{e}");
    let e =
        err("auto_ban:\n  failed_auth: { count: 5, within: 1m, ban_for: 1m, ban: [everyone] }\n");
    assert!(e.contains("expected source, username or client_id"), "{e}");
    let e = err("network: { allow: [], alow: [] }\n");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn ipv4_mapped_networks_are_written_as_ipv4() {
    let p = ok("network: { allow: [\"::ffff:10.0.0.0/104\"] }\n");
    assert!(p.admit_addr(ip("10.1.2.3"), "m").is_allowed());
    assert!(p.admit_addr(ip("::ffff:10.1.2.3"), "m").is_allowed());
}

#[test]
fn defaults_without_limits() {
    let p = ok("anonymous: false\n");
    let c = p.connection_limits();
    assert!(c.per_source.is_some() && c.global.is_some());
    assert_eq!(c.ipv6_prefix, 64);
    assert!(p.auto_ban().failed_auth.is_some());
    assert!(p.auto_ban().flapping.is_none());
}
