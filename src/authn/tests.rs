//! The pool and the service with real policies and real hashes, on real threads.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::*;
use crate::policy::{compile, AuthnOptions, AuthnStep, Credentials, PolicySource};

/// A policy with `alice`/`secret`, hashed with memory `m` KiB and `t` passes.
fn policy_with(m: u32, t: u32) -> Arc<Policy> {
    let params = Params::new(m, t, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"pool-test-salt!!").unwrap();
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"secret", &salt)
        .unwrap()
        .to_string();
    let text = format!("users:\n  - {{ name: alice, password: \"{hash}\" }}\n");
    let source = PolicySource {
        path: PathBuf::from("p.yaml"),
        text,
    };
    Arc::new(compile(&[source]).unwrap())
}

fn check(policy: &Policy, password: &str) -> PasswordCheck {
    let creds = Credentials {
        username: Some("alice"),
        password: Some(password.as_bytes()),
        cert_cn: None,
    };
    match policy.begin_authentication(&creds, &AuthnOptions::default()) {
        AuthnStep::Verify(check) => check,
        AuthnStep::Decided(d) => panic!("expected a verification, got {d:?}"),
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Waits (bounded) until `done` says so.
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_neither_fills_the_queue_nor_delays_another() {
    // One worker, 8 slots, verifications of some 10 ms each.
    let policy = policy_with(4096, 4);
    let runs = Arc::new(AtomicU64::new(0));
    let pool = Arc::new(Pool::start(1, policy.password_memory_blocks(), 8, runs.clone()).unwrap());
    let wait = Duration::from_secs(30);
    // Completed verifications, in order.
    let order = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..40 {
        let (pool, check) = (pool.clone(), check(&policy, "wrong"));
        let order = order.clone();
        flood.push(tokio::spawn(async move {
            let r = pool
                .verify(ip(2), check, Bytes::from_static(b"wrong"), wait)
                .await;
            let _ = r.is_ok().then(|| order.fetch_add(1, Ordering::SeqCst));
            r
        }));
    }
    until("the flood fills the queue", || pool.queued().1 >= 6).await;
    let legit = pool
        .verify(
            ip(3),
            check(&policy, "secret"),
            Bytes::from_static(b"secret"),
            wait,
        )
        .await;
    let legit_done = order.fetch_add(1, Ordering::SeqCst);
    assert!(legit.unwrap().is_allowed());
    let (mut verified, mut refused, mut displaced) = (0, 0, 0);
    for f in flood {
        match f.await.unwrap() {
            Ok(d) => {
                assert!(!d.is_allowed());
                verified += 1;
            }
            Err(Busy::QueueFull) => refused += 1,
            Err(Busy::Displaced) => displaced += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // The flooder could queue no more than there is room for...
    assert!(refused >= 20, "refused {refused}, verified {verified}");
    assert!(displaced <= 1);
    // ...and the newcomer was served after at most the flooder's running job and one queued
    // one (its turn comes next), not after everything the flooder queued before it.
    assert!(
        legit_done <= 3,
        "legit finished as number {legit_done} of {verified}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), verified + 1);
}

#[tokio::test]
async fn a_job_that_waits_past_its_deadline_is_refused_not_run() {
    // A slow verification (some 100 ms) occupies the only worker.
    let slow = policy_with(16 * 1024, 8);
    let runs = Arc::new(AtomicU64::new(0));
    let pool = Arc::new(Pool::start(1, slow.password_memory_blocks(), 8, runs.clone()).unwrap());
    let long = Duration::from_secs(30);
    let busy = {
        let (pool, check) = (pool.clone(), check(&slow, "secret"));
        tokio::spawn(async move {
            pool.verify(ip(2), check, Bytes::from_static(b"secret"), long)
                .await
        })
    };
    until("the worker takes the slow job", || pool.queued() == (1, 0)).await;
    let short = Duration::from_millis(5);
    let late = pool
        .verify(
            ip(3),
            check(&slow, "secret"),
            Bytes::from_static(b"secret"),
            short,
        )
        .await;
    assert_eq!(late.unwrap_err(), Busy::Waited);
    assert_eq!(pool.queued(), (2, 0), "the late job left the queue");
    assert!(busy.await.unwrap().unwrap().is_allowed());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the late job must not run");
}

#[tokio::test]
async fn successes_are_cached_and_failures_are_not() {
    let policy = policy_with(64, 1);
    let runs = Arc::new(AtomicU64::new(0));
    let settings = PasswordSettings::default();
    let passwords =
        Passwords::start(&settings, policy.password_memory_blocks(), runs.clone()).unwrap();
    let (p, service) = (&policy, &passwords);
    let login = move |pw: &'static str| {
        let password = Bytes::from_static(pw.as_bytes());
        service.check(p, ip(2), Some("alice"), password, check(p, pw))
    };
    for _ in 0..3 {
        let wrong = login("wrong").await.unwrap();
        assert!(!wrong.decision.is_allowed() && !wrong.cached);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let first = login("secret").await.unwrap();
    assert!(first.decision.is_allowed() && !first.cached);
    for _ in 0..10 {
        let again = login("secret").await.unwrap();
        assert!(again.cached);
        // The identity, groups and rule are the policy's, as for a verified login.
        assert_eq!(again.decision, first.decision);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    // A reloaded policy (a new snapshot) verifies again.
    let reloaded = policy_with(64, 1);
    let secret = Bytes::from_static(b"secret");
    let after = passwords
        .check(
            &reloaded,
            ip(2),
            Some("alice"),
            secret,
            check(&reloaded, "secret"),
        )
        .await
        .unwrap();
    assert!(after.decision.is_allowed() && !after.cached);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}
