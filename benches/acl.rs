//! ACL decisions per second with 10,000 rules and 100,000 users.
//!
//! Run: `cargo bench --bench acl` (release build; prints numbers, asserts nothing). Not a test:
//! the figure depends on the machine. The policy mixes what real deployments write: two rules per
//! group (1,000 groups: a deny on commands, an allow on the group's subtree), one rule per user
//! for 8,000 users, placeholder rules that apply to everyone, and `$`-topic rules.
// A benchmark, not production code: indexes are in range by construction, and a policy that
// fails to compile should stop it loudly.
#![allow(clippy::indexing_slicing, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat::policy::{compile, AclCache, Action, PolicySource, PublishFacts, Subject};

const USERS: usize = 100_000;
const GROUPS: usize = 1_000;
const USER_RULES: usize = 7_996;

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as usize
    }
}

/// Users in files of 10,000 (one YAML document is capped at 250,000 nodes, so a real
/// deployment of this size splits its users too), then the rules in one file.
fn policy_sources() -> Vec<PolicySource> {
    let mut sources = Vec::new();
    for chunk in 0..USERS / 10_000 {
        let mut text = String::from("users:\n");
        for u in chunk * 10_000..(chunk + 1) * 10_000 {
            text.push_str(&format!(
                "  - {{ name: u{u}, groups: [g{}] }}\n",
                u % GROUPS
            ));
        }
        sources.push(PolicySource {
            path: PathBuf::from(format!("users-{chunk}.yaml")),
            text,
        });
    }
    sources.push(PolicySource {
        path: PathBuf::from("acl.yaml"),
        text: rules_text(),
    });
    sources
}

fn rules_text() -> String {
    let mut text = String::with_capacity(1 << 20);
    text.push_str("acl:\n");
    text.push_str("  - deny: all\n    topics: [\"$SYS/#\"]\n");
    text.push_str(
        "  - allow: publish\n    topics: [\"clients/{client_id}/status\"]\n    max_qos: 1\n",
    );
    for g in 0..GROUPS {
        text.push_str(&format!(
            "  - deny: publish\n    topics: [\"plant/g{g}/cmd/#\"]\n    groups: [g{g}]\n"
        ));
        text.push_str(&format!(
            "  - allow: all\n    topics: [\"plant/g{g}/#\"]\n    groups: [g{g}]\n"
        ));
    }
    for u in 0..USER_RULES {
        text.push_str(&format!(
            "  - allow: [publish, receive]\n    topics: [\"users/u{u}/inbox/#\", \"users/u{u}/outbox\"]\n    users: [u{u}]\n"
        ));
    }
    text.push_str("  - allow: all\n    topics: [\"devices/{username}/#\"]\n");
    text.push_str("  - deny: all\n    topics: [\"#\"]\n");
    text
}

fn subject(u: usize) -> Subject {
    let addr: IpAddr = [10, 0, (u >> 8) as u8, u as u8].into();
    Subject::describe(Some(&format!("u{u}")), None, None, None, addr)
}

fn topic(rng: &mut Rng, u: usize) -> String {
    let g = u % GROUPS;
    match rng.next() % 6 {
        0 => format!("plant/g{g}/line/{}/temp", rng.next() % 50),
        1 => format!("plant/g{}/line/3/temp", rng.next() % GROUPS),
        2 => format!("devices/u{u}/telemetry"),
        3 => format!("users/u{}/inbox/msg", rng.next() % USER_RULES),
        4 => format!("plant/g{g}/cmd/stop"),
        _ => format!("other/{}/x", rng.next() % 1000),
    }
}

fn report(what: &str, n: usize, took: Duration, allowed: usize) {
    let per_sec = n as f64 / took.as_secs_f64();
    println!(
        "{what:<44} {n:>9} decisions in {:>7.1} ms = {:>12.0} /s ({:.0} ns each, {allowed} allowed)",
        took.as_secs_f64() * 1e3,
        per_sec,
        took.as_nanos() as f64 / n as f64
    );
}

fn main() {
    let started = Instant::now();
    let policy = compile(&policy_sources()).expect("the benchmark policy compiles");
    println!(
        "compiled {} rules for {} users in {:.2} s",
        policy.acl_rules(),
        policy.user_count(),
        started.elapsed().as_secs_f64()
    );
    let policy = Arc::new(policy);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = 1_000_000;
    let work: Vec<(Subject, String)> = (0..10_000)
        .map(|_| {
            let u = rng.next() % USERS;
            let t = topic(&mut rng, u);
            (subject(u), t)
        })
        .collect();

    for action in [Action::Publish, Action::Receive] {
        let t0 = Instant::now();
        let mut allowed = 0;
        for i in 0..n {
            let (s, t) = &work[i % work.len()];
            let d = match action {
                Action::Publish => policy.authorize_publish(
                    s,
                    &PublishFacts {
                        topic: t,
                        qos: 0,
                        retain: false,
                        empty_payload: false,
                    },
                ),
                _ => policy.authorize_receive(s, t),
            };
            allowed += usize::from(black_box(d).is_allowed());
        }
        report(
            &format!("{action}, uncached (random user + topic)"),
            n,
            t0.elapsed(),
            allowed,
        );
    }

    let t0 = Instant::now();
    let mut allowed = 0;
    let filters = [
        "plant/g1/#",
        "plant/+/line/#",
        "devices/u1/#",
        "#",
        "users/u5/inbox/+",
    ];
    let m = n / 10;
    for i in 0..m {
        let (s, _) = &work[i % work.len()];
        let d = policy.authorize_subscribe(s, filters[i % filters.len()]);
        allowed += usize::from(black_box(d).is_allowed());
    }
    report("subscribe, uncached (5 filters)", m, t0.elapsed(), allowed);

    // One session per user (the cache lives in the session), each publishing to its few topics.
    let sessions = 1_000;
    let mut cached: Vec<(Subject, AclCache, Vec<String>)> = (0..sessions)
        .map(|_| {
            let u = rng.next() % USERS;
            let topics = (0..4).map(|_| topic(&mut rng, u)).collect();
            (subject(u), AclCache::default(), topics)
        })
        .collect();
    let t0 = Instant::now();
    let mut allowed = 0;
    for i in 0..n {
        let (s, cache, topics) = &mut cached[i % sessions];
        let t = &topics[(i / sessions) % topics.len()];
        let d = cache.publish(
            &policy,
            s,
            &PublishFacts {
                topic: t,
                qos: 0,
                retain: false,
                empty_payload: false,
            },
        );
        allowed += usize::from(black_box(d).is_allowed());
    }
    report(
        "publish, per-session cache (4 topics each)",
        n,
        t0.elapsed(),
        allowed,
    );
}
