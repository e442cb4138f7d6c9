//! The kernel filter against the gate. The program runs in a small interpreter of the classic
//! BPF subset it uses (with the kernel's checks: forward jumps inside the program, a return at
//! the end, loads past the header drop the packet); the property is that it never drops a
//! source [`Gate::admit`] admits, and with rules that fit, drops exactly the sources the gate
//! refuses by network rule or ban.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use proptest::prelude::*;

use super::program::{AND_K, JA, JEQ_K, LD_B_ABS, LD_W_ABS, RET_K, TAX, TXA};
use super::*;
use crate::policy::{compile as compile_policy, PolicySource};

const NET_OFF: u32 = 0xfff0_0000;

/// Runs `insns` on a packet whose network header is `header`; the return value (0 drops).
fn run(insns: &[Insn], header: &[u8]) -> u32 {
    assert!(!insns.is_empty() && insns.len() <= MAX_INSNS);
    assert_eq!(
        insns.last().unwrap().code,
        RET_K,
        "a program ends in a return"
    );
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let load = |k: u32, n: usize| -> Option<u32> {
        let off =
            usize::try_from(k.checked_sub(NET_OFF).expect("only network-header loads")).unwrap();
        let bytes = header.get(off..off + n)?;
        Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
    };
    loop {
        let i = insns[pc];
        let jump = |off: u32| {
            let to = pc + 1 + off as usize;
            assert!(to < insns.len(), "jump out of the program at {pc}");
            to
        };
        pc = match i.code {
            LD_W_ABS | LD_B_ABS => {
                match load(i.k, if i.code == LD_W_ABS { 4 } else { 1 }) {
                    Some(v) => a = v,
                    None => return 0,
                }
                jump(0)
            }
            AND_K => {
                a &= i.k;
                jump(0)
            }
            TAX => {
                x = a;
                jump(0)
            }
            TXA => {
                a = x;
                jump(0)
            }
            JA => jump(i.k),
            JEQ_K => jump(u32::from(if a == i.k { i.jt } else { i.jf })),
            RET_K => return i.k,
            other => panic!("opcode {other:#x} not expected"),
        };
    }
}

/// The network header of a packet from `src`.
fn header(src: IpAddr) -> Vec<u8> {
    match src {
        IpAddr::V4(v4) => {
            let mut h = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
            h.extend_from_slice(&v4.octets());
            h.extend_from_slice(&[127, 0, 0, 1]);
            h
        }
        IpAddr::V6(v6) => {
            let mut h = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
            h.extend_from_slice(&v6.octets());
            h.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            h
        }
    }
}

/// A gate on the policy `yaml`, and the policy handle it reads.
struct G {
    gate: Gate,
    policy: Arc<ArcSwap<Policy>>,
}

impl std::ops::Deref for G {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.gate
    }
}

fn gate(yaml: &str) -> G {
    let policy = compile_policy(&[PolicySource {
        path: "p.yaml".into(),
        text: yaml.to_owned(),
    }])
    .unwrap();
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    G {
        gate: Gate::new(policy.clone(), 1_000_000),
        policy,
    }
}

/// What the filter of listener `m` does with a packet from `ip`: true = accepted.
fn filter_accepts(g: &G, ip: IpAddr) -> (bool, Program) {
    let policy = g.policy.load();
    let rules = rules_for(
        &policy,
        "m",
        &Relays::new(),
        &g.source_bans(),
        SystemTime::now(),
    );
    let p = compile(&rules, MAX_INSNS).unwrap();
    (run(&p.insns, &header(ip)) != 0, p)
}

const NO_LIMITS: &str =
    "limits:\n  connections: { per_ip: off, global: off, max_per_ip: 1000000, ipv6_prefix: PREFIX }\n";

#[test]
fn empty_allow_list_drops_everyone_and_deny_wins() {
    let g = gate("anonymous: false\n");
    assert!(!filter_accepts(&g, "127.0.0.1".parse().unwrap()).0);
    let g = gate(
        "network: { allow: [\"0.0.0.0/0\", \"::/0\"], deny: [10.0.0.0/8, \"2001:db8::/32\"] }\n",
    );
    for (ip, ok) in [
        ("10.1.2.3", false),
        ("11.1.2.3", true),
        ("::ffff:10.1.2.3", false),
        ("2001:db8::1", false),
        ("2001:db9::1", true),
    ] {
        assert_eq!(filter_accepts(&g, ip.parse().unwrap()).0, ok, "{ip}");
    }
}

#[test]
fn a_non_ip_header_is_accepted() {
    let p = compile(
        &Rules {
            exempt: vec![],
            deny: vec!["0.0.0.0/0".parse().unwrap()],
            allow: Some(vec![]),
        },
        MAX_INSNS,
    )
    .unwrap();
    assert_eq!(run(&p.insns, &[0x00; 40]), u32::MAX);
    // A truncated header drops, as in the kernel.
    assert_eq!(run(&p.insns, &[0x45, 0, 0]), 0);
}

#[test]
fn bans_about_to_end_are_left_to_user_space() {
    let g = gate(&format!(
        "network: {{ allow: [\"0.0.0.0/0\", \"::/0\"] }}\n{}",
        NO_LIMITS.replace("PREFIX", "64")
    ));
    let policy = g.policy.load();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8:1:2::".parse().unwrap();
    let r = rules_for(
        &policy,
        "m",
        &Relays::new(),
        &[(ip, HORIZON / 2), (v6, HORIZON * 2)],
        SystemTime::now(),
    );
    assert_eq!(r.deny, vec!["2001:db8:1:2::/64".parse::<IpNet>().unwrap()]);
    // A key with bits past the prefix (the prefix changed on reload) matches nobody.
    assert_eq!(ban_net("2001:db8:1:2::1".parse().unwrap(), 64), None);
}

#[test]
fn thousands_of_bans_fit_or_fall_back_and_stay_a_subset() {
    let g = gate(&format!(
        "network: {{ allow: [\"127.0.0.0/8\"] }}\nauto_ban:\n  failed_auth: {{ count: 1, within: 1m, ban_for: 1h, ban: [source] }}\n{}",
        NO_LIMITS.replace("PREFIX", "64")
    ));
    for i in 0..6000u32 {
        g.auth_failed(
            IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + 3 * i + 1)),
            None,
            "",
        );
    }
    let (_, p) = filter_accepts(&g, "127.0.0.1".parse().unwrap());
    assert!(p.insns.len() <= MAX_INSNS);
    assert!(p.deny_left_out > 0 && p.deny_compiled > 3000, "{p:?}");
    for i in 0..20_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + i));
        let admitted = g.admit(SocketAddr::new(ip, 1), "m").is_ok();
        let accepted = run(&p.insns, &header(ip)) != 0;
        assert!(accepted || !admitted, "{ip} admitted but dropped");
    }
}

/// A network from a small universe, so rules and addresses collide often.
fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), 0u8..=32).prop_map(|(b, c, len)| {
            let addr = Ipv4Addr::new(10, b % 4, c % 8, c);
            IpNet::new(IpAddr::V4(addr), len).unwrap().trunc()
        }),
        (any::<u16>(), any::<u16>(), 0u8..=128).prop_map(|(w, h, len)| {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, w % 4, 0, 0, 0, 0, h % 8);
            IpNet::new(IpAddr::V6(addr), len).unwrap().trunc()
        }),
    ]
}

/// An address near the universe of [`net`], sometimes IPv4-mapped.
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(b, c)| IpAddr::V4(Ipv4Addr::new(
            10,
            b % 4,
            c % 8,
            c
        ))),
        (any::<u8>(), any::<u8>())
            .prop_map(|(b, c)| { IpAddr::V6(Ipv4Addr::new(10, b % 4, c % 8, c).to_ipv6_mapped()) }),
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(w, x, h)| {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, w % 4, x % 2, 0, 0, 0, h % 8))
        }),
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn list(nets: &[IpNet]) -> String {
    let items: Vec<String> = nets.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[{}]", items.join(", "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn the_filter_never_drops_an_admitted_source_and_drops_every_refused_one(
        allow in proptest::collection::vec(net(), 0..5),
        deny in proptest::collection::vec(net(), 0..5),
        scoped_allow in proptest::collection::vec(net(), 0..3),
        scoped_deny in proptest::collection::vec(net(), 0..3),
        static_bans in proptest::collection::vec((net(), 0u8..3), 0..3),
        auto_bans in proptest::collection::vec(addr(), 0..4),
        prefix in prop_oneof![Just(48u8), Just(64), Just(128)],
        probes in proptest::collection::vec(addr(), 24),
    ) {
        let mut yaml = format!(
            "network:\n  allow: {}\n  deny: {}\n  listeners:\n    m: {{ allow: {}, deny: {} }}\n",
            list(&allow), list(&deny), list(&scoped_allow), list(&scoped_deny),
        );
        if !static_bans.is_empty() {
            yaml.push_str("bans:\n");
            for (n, when) in &static_bans {
                let until = match when {
                    0 => String::new(),
                    1 => ", until: \"2000-01-01T00:00:00Z\"".into(),
                    _ => ", until: \"2999-01-01T00:00:00Z\"".into(),
                };
                yaml.push_str(&format!("  - {{ address: \"{n}\"{until} }}\n"));
            }
        }
        yaml.push_str("auto_ban:\n  failed_auth: { count: 1, within: 1m, ban_for: 1h, ban: [source] }\n");
        yaml.push_str(&NO_LIMITS.replace("PREFIX", &prefix.to_string()));
        let g = gate(&yaml);
        for ip in &auto_bans {
            g.auth_failed(*ip, None, "");
        }
        for ip in probes.iter().chain(&auto_bans) {
            let admitted = g.admit(SocketAddr::new(*ip, 1), "m").is_ok();
            let (accepted, p) = filter_accepts(&g, *ip);
            prop_assert!(accepted || !admitted, "{ip} admitted but dropped\n{yaml}");
            // Everything fits here, so the filter refuses exactly what the gate does.
            prop_assert_eq!(p.deny_left_out, 0);
            prop_assert_eq!(accepted, admitted, "{} {}", ip, yaml);
        }
    }
}

/// Trusted balancers and reverse proxies are let through as relays by admission, whatever the
/// rules and bans say (`Gate::admit_relay`); the filter must let them through too.
#[test]
fn relays_pass_whatever_the_rules_say() {
    let g = gate(&format!(
        "network: {{ allow: [\"192.0.2.0/24\"], deny: [10.0.0.0/8] }}\nbans:\n  - {{ address: 10.9.9.9 }}\n{}",
        NO_LIMITS.replace("PREFIX", "64")
    ));
    let policy = g.policy.load();
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let accepts = |relays: &[IpNet], ip: &str| {
        let rules = rules_for(&policy, "m", relays, &[], SystemTime::now());
        let p = compile(&rules, MAX_INSNS).unwrap();
        run(&p.insns, &header(ip.parse().unwrap())) != 0
    };
    let relays: Relays = vec![net("10.9.9.0/24"), net("2001:db8::/32")];
    assert!(accepts(&relays, "10.9.9.9"), "a denied and banned proxy");
    assert!(accepts(&relays, "::ffff:10.9.9.9"));
    assert!(accepts(&relays, "2001:db8::5"), "outside the allow list");
    assert!(!accepts(&relays, "10.1.1.1"));
    assert!(accepts(&relays, "192.0.2.1"));
}

#[test]
fn durations_are_what_the_kernel_task_expects() {
    assert!(
        CHECK + MIN_GAP < HORIZON,
        "a ban leaves the filter before it ends"
    );
}
