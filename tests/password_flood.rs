//! Password verification is bounded (issue 13): a wrong-password flood from several sources
//! neither grows moat's memory nor keeps a legitimate client out.
//!
//! The flood runs against `moat run` as a child process, so its resident memory is moat's
//! alone (`/proc/PID/status`), with argon2's default cost (19 MiB, 2 passes), as `moat passwd`
//! writes. It is the only test in this file, so that no other test of the suite shares the
//! CPU with it (cargo runs test files one after another). `tests/passwords.rs` holds the
//! reconnect storm and the success cache.
//!
//! `bench/password-flood.sh` runs the same flood longer against a release build, through these
//! knobs: `MOAT_FLOOD_BIN` (the moat to start), `MOAT_FLOOD_SECS` (10) and
//! `MOAT_FLOOD_PER_SOURCE` (6 connections at once per source).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{packets, Tls};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// How long the wrong-password flood lasts here (`bench/password-flood.sh` runs 30 s).
const FLOOD_SECS: u64 = 10;
/// Flooding sources (127.0.0.2 to .9), and connections each keeps going at once.
const SOURCES: u8 = 8;
const PER_SOURCE: usize = 6;
/// Most CONNECTs the flood sends per second it lasts, whatever the machine's speed.
const MAX_FLOOD_CONNECTS_PER_S: usize = 2_000;

/// A knob from the environment (see the module docs), or its default.
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

const MIB: u64 = 1024 * 1024;

/// An argon2id hash with the crate's default cost (what `moat passwd` writes).
fn real_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"flood-test-salt!").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// moat.yaml, certificates and a policy with alice (real-cost hash) in `d`. Automatic bans
/// and connection rates are off (`LOOPBACK_NETWORK`): the flood must reach the verifiers.
fn setup(d: &Path) -> common::Pki {
    let pki = common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    let policy = format!(
        "users:\n  - {{ name: alice, password: \"{}\" }}\n{}",
        real_hash("alice-pw"),
        common::BROAD_RULES
    );
    std::fs::write(d.join("policies/test.yaml"), policy).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    // The legitimate client must queue like everyone else: no success cache here.
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: false\npasswords: { cache: 0s }\n",
    )
    .unwrap();
    pki
}

async fn tls_from(
    src: &str,
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = common::tcp_from(src, addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        common::WAIT,
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// One login from `src`: the CONNACK code, and the time from CONNECT to CONNACK.
async fn login(
    src: &str,
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    connect: &[u8],
) -> Option<(u8, Duration)> {
    let mut s = tls_from(src, addr, config).await.ok()?;
    let sent = Instant::now();
    let code = common::connack_code(&mut s, connect).await?;
    Some((code, sent.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_costs_no_memory_and_keeps_no_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let pki = setup(dir.path());
    let flood_for = Duration::from_secs(knob("MOAT_FLOOD_SECS", FLOOD_SECS));
    let per_source = knob("MOAT_FLOOD_PER_SOURCE", PER_SOURCE);
    let max_connects = MAX_FLOOD_CONNECTS_PER_S * flood_for.as_secs() as usize;
    let bin = knob("MOAT_FLOOD_BIN", env!("CARGO_BIN_EXE_moat").to_string());
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(dir.path()).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let pid = child.id();
    let mut seen = Vec::new();
    let listening = common::wait_for_line(&lines, &mut seen, &["listening", "listener=mqtts"]);
    let addr: SocketAddr = listening
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let config = common::client_config(&pki.ca.cert, None);
    let legit = packets::connect_v4("legit", Some("alice"), Some("alice-pw"));
    // Idle: after start and one login, so the TLS and session paths have been used once.
    let (code, _) = login("127.0.0.10", addr, &config, &legit).await.unwrap();
    assert_eq!(code, 0);
    let idle = rss(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for s in 0..SOURCES {
        for c in 0..per_source {
            let (stop, sent, config) = (stop.clone(), sent.clone(), config.clone());
            let src = format!("127.0.0.{}", 2 + s);
            flood.push(tokio::spawn(async move {
                let mut codes = [0usize; 256];
                let wrong = packets::connect_v4(&format!("f{s}-{c}"), Some("alice"), Some("nope"));
                while !stop.load(Ordering::Relaxed)
                    && sent.fetch_add(1, Ordering::Relaxed) < max_connects
                {
                    if let Some((code, _)) = login(&src, addr, &config, &wrong).await {
                        codes[usize::from(code)] += 1;
                    }
                }
                codes
            }));
        }
    }

    // Throughout the flood: moat's memory, and a legitimate login from another address.
    let started = Instant::now();
    let (mut peak, mut slowest, mut logins) = (idle, Duration::ZERO, 0);
    while started.elapsed() < flood_for {
        peak = peak.max(rss(pid));
        let (code, took) = login("127.0.0.10", addr, &config, &legit).await.unwrap();
        assert_eq!(
            code, 0,
            "the legitimate client was refused during the flood"
        );
        slowest = slowest.max(took);
        logins += 1;
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut codes = [0usize; 256];
    for f in flood {
        for (all, one) in codes.iter_mut().zip(f.await.unwrap()) {
            *all += one;
        }
    }
    // After: memory goes back (bounded wait; glibc returns freed TLS buffers lazily).
    let settle = Instant::now();
    let mut after = rss(pid);
    while after > idle + 16 * MIB && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss(pid);
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "flood {flood_for:?} from {SOURCES} sources × {per_source}: {} refused 0x04, {} server \
         unavailable 0x03, {} other; RSS idle {} MiB, peak {} MiB, after {} MiB; {logins} \
         legitimate logins, slowest CONNECT→CONNACK {slowest:?}",
        codes[4],
        codes[3],
        codes.iter().sum::<usize>() - codes[4] - codes[3],
        idle / MIB,
        peak / MIB,
        after / MIB,
    );
    assert!(codes[4] > 0, "the flood never reached a verifier");
    assert_eq!(
        codes[5], 0,
        "a flood source was refused as banned or unauthorized"
    );
    assert!(
        peak <= idle + 64 * MIB,
        "RSS rose from {} MiB to {} MiB during the flood",
        idle / MIB,
        peak / MIB
    );
    assert!(
        after <= idle + 16 * MIB,
        "RSS stayed at {} MiB after the flood (idle {} MiB)",
        after / MIB,
        idle / MIB
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a legitimate login took {slowest:?}"
    );
}
