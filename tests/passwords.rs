//! Password verification at scale (issue 13): devices that reconnect with a password verified
//! a moment ago cost no argon2 run, and a policy reload forgets what was remembered. In-process,
//! where the verification counter can be read. The flood is `tests/password_flood.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::sync::Arc;

use common::packets;

/// Ten devices, each verified once, then 1,000 reconnects among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_of_verified_devices_cost_no_argon2_run() {
    const DEVICES: usize = 10;
    const RECONNECTS: usize = 1000;
    let mut policy = String::from("users:\n");
    for d in 0..DEVICES {
        policy += &format!(
            "  - {{ name: dev{d}, password: \"{}\" }}\n",
            common::hash(&format!("pw{d}"))
        );
    }
    policy += "acl:\n  - allow: all\n    topics: [\"#\"]\n";
    let h = common::start(common::Opts {
        policy,
        ..Default::default()
    })
    .await;
    let connect = |d: usize| {
        packets::connect_v4(
            &format!("dev{d}"),
            Some(&format!("dev{d}")),
            Some(&format!("pw{d}")),
        )
    };
    for d in 0..DEVICES {
        let mut s = h.tls(None).await;
        assert_eq!(common::connack_code(&mut s, &connect(d)).await, Some(0));
        let _ = common::exchange(&mut s, &[0xe0, 0x00]).await;
    }
    let verified = h.running.stats().password_verifications;
    assert_eq!(verified, DEVICES as u64, "each device is verified once");

    let h = Arc::new(h);
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let (h, connect) = (h.clone(), connect(d));
        devices.push(tokio::spawn(async move {
            for _ in 0..RECONNECTS / DEVICES {
                let mut s = h.tls(None).await;
                assert_eq!(common::connack_code(&mut s, &connect).await, Some(0));
                // DISCONNECT, and wait for the close: the next reconnect finds the id free.
                let (_, closed) = common::exchange(&mut s, &[0xe0, 0x00]).await;
                assert!(closed);
            }
        }));
    }
    for d in devices {
        d.await.unwrap();
    }
    let stats = h.running.stats();
    let runs = stats.password_verifications - verified;
    println!(
        "{RECONNECTS} reconnects: {runs} argon2 runs, {} cache hits",
        stats.password_cache_hits
    );
    assert!(
        runs <= 10,
        "{RECONNECTS} reconnects cost {runs} argon2 runs"
    );
    assert!(stats.password_cache_hits >= RECONNECTS as u64);
}

/// A remembered success is forgotten when the policy is reloaded: a changed password is
/// checked against the new hash at once.
#[tokio::test]
async fn a_reload_forgets_remembered_passwords() {
    let h = common::start(common::Opts::default()).await;
    let alice = packets::connect_v4("a1", Some("alice"), Some("alice-pw"));
    for _ in 0..2 {
        let mut s = h.tls(None).await;
        assert_eq!(common::connack_code(&mut s, &alice).await, Some(0));
    }
    assert_eq!(h.running.stats().password_cache_hits, 1);
    let policy =
        common::default_policy().replace(&common::hash("alice-pw"), &common::hash("new-pw"));
    std::fs::write(h.dir.path().join("policies/test.yaml"), policy).unwrap();
    let cfg = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    h.running
        .reload_policy(moat::ops::load::load_policy(&cfg).unwrap());
    let mut s = h.tls(None).await;
    assert_eq!(common::connack_code(&mut s, &alice).await, Some(0x04));
    let mut s = h.tls(None).await;
    let new = packets::connect_v4("a1", Some("alice"), Some("new-pw"));
    assert_eq!(common::connack_code(&mut s, &new).await, Some(0));
    assert_eq!(
        h.running.stats().password_cache_hits,
        1,
        "no hit after the reload"
    );
}
