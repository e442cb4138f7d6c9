//! Hot reload: file changes (watched folder, debounced) and SIGHUP swap the policy in
//! atomically for live sessions; a broken file is refused with its place and the old policy
//! stays in force. The same for the TLS material: a new CRL ends the live sessions it revokes,
//! a new server certificate is served to the next handshake, a broken file keeps what runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::packets::{frame, push_str};
use common::{packets, Opts, WAIT};
use moat::ops::reload::{self, PolicyWatcher, TlsWatcher};
use tokio::io::AsyncWriteExt;

fn policy(topics: &str) -> String {
    format!(
        "users:\n  - {{ name: alice, password: \"{}\" }}\nacl:\n  - allow: publish\n    topics: [{topics}]\n    users: [alice]\n",
        common::hash("alice-pw")
    )
}

fn publish_qos1(topic: &str, pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    body.extend_from_slice(&pkid.to_be_bytes());
    body.push(0);
    body.extend_from_slice(b"x");
    frame(0x32, &body)
}

#[tokio::test]
async fn a_changed_file_reloads_live_sessions_and_a_broken_one_is_refused() {
    let h = common::start(Opts {
        policy: policy("\"a/#\""),
        ..Opts::default()
    })
    .await;
    let config = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    let mut watcher = PolicyWatcher::start(&config).unwrap();
    let file = h.dir.path().join("policies/test.yaml");

    let mut s = h.tls(None).await;
    s.write_all(&packets::connect_v5(
        "live",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await
    .unwrap();
    let head = common::read_exact(&mut s, 2).await;
    common::read_exact(&mut s, usize::from(head[1])).await;
    let publish = |pkid: u16| publish_qos1("a/x", pkid);
    s.write_all(&publish(1)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 4).await, [0x40, 2, 0, 1]);

    // Revoke a/#: the next publish on the same session is refused.
    std::fs::write(&file, policy("\"b/#\"")).unwrap();
    tokio::time::timeout(WAIT, watcher.changed())
        .await
        .expect("no change event")
        .unwrap();
    reload::reload(h.running.policy(), &config, "test").unwrap();
    s.write_all(&publish(2)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 5).await, [0x40, 3, 0, 2, 0x87]);

    // A broken file (it would re-allow a/#) is refused with its place; the old policy stays.
    std::fs::write(
        &file,
        policy("\"a/#\"").replace("users: [alice]", "users: [alice"),
    )
    .unwrap();
    tokio::time::timeout(WAIT, watcher.changed())
        .await
        .expect("no change event")
        .unwrap();
    let err = reload::reload(h.running.policy(), &config, "test").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}:", file.display())), "{text}");
    assert!(
        text.split(':').nth(1).unwrap().parse::<u32>().is_ok(),
        "{text}"
    );
    s.write_all(&publish(3)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 5).await, [0x40, 3, 0, 3, 0x87]);
}

#[test]
fn moat_run_reloads_on_sighup_and_on_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file =
        common::run_dir_with_policy(d, "acl.yaml", "acl:\n  - allow: publish\n    topics: [a]\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let signal = |name: &str| common::signal(&child, name);
    signal("-HUP");
    common::wait_for_line(&lines, &mut seen, &["policy reloaded", "SIGHUP"]);
    // A file change alone reloads (debounced); a broken file is refused with line and column.
    std::fs::write(&file, "acl:\n  - allow: publsh\n    topics: [a]\n").unwrap();
    let line = common::wait_for_line(&lines, &mut seen, &["policy reload refused", "file change"]);
    assert!(line.contains("acl.yaml:2:"), "{line}");
    std::fs::write(&file, "acl:\n  - allow: publish\n    topics: [a, b]\n").unwrap();
    common::wait_for_line(
        &lines,
        &mut seen,
        &["policy reloaded", "file change", "rules=1"],
    );
    signal("-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A session of the client certificate `cert`, past a successful CONNACK (MQTT 5 or 3.1.1).
async fn cert_session(
    h: &common::Harness,
    cert: &moat::certs::Pem,
    id: &str,
    v5: bool,
) -> common::Tls {
    let mut s = h.tls(Some(cert)).await;
    let connect = if v5 {
        packets::connect_v5(id, None, None)
    } else {
        packets::connect_v4(id, None, None)
    };
    let body = common::connack(&mut s, &connect).await.expect("no CONNACK");
    assert_eq!(body[1], 0, "{id}: CONNACK {body:02x?}");
    s
}

/// Whether a handshake with `cert` is refused.
async fn handshake_refused(h: &common::Harness, cert: &moat::certs::Pem) -> bool {
    refused_at(h.addr, h.client_config(Some(cert))).await
}

/// Whether a TLS client with `config` is refused at `addr` (in TLS 1.3 the refusal may only
/// show on the first read after the client's side of the handshake finished).
async fn refused_at(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    match common::tls_connect(addr, config).await {
        Err(_) => true,
        Ok(mut s) => {
            let (got, closed) =
                common::exchange(&mut s, &packets::connect_v4("x", None, None)).await;
            got.is_empty() && closed
        }
    }
}

#[tokio::test]
async fn a_new_crl_on_disk_ends_the_live_sessions_it_revokes_and_refuses_their_handshakes() {
    let h = common::start(Opts {
        client_certs: "required",
        revoked: vec!["carol"],
        ..Opts::default()
    })
    .await;
    let config = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    let mut watcher = TlsWatcher::start(&config).unwrap();
    let (dave, erin) = (h.pki.client("dave"), h.pki.client("erin"));
    let mut dave_v5 = cert_session(&h, &dave, "dave-5", true).await;
    let mut dave_v4 = cert_session(&h, &dave, "dave-4", false).await;
    let mut erin_v5 = cert_session(&h, &erin, "erin-5", true).await;

    // The CA publishes a CRL that also revokes dave, replacing the file.
    let carol = &h.revoked[0];
    h.pki
        .write_crl(&h.dir.path().join("revoked.crl"), &[carol, &dave], false);
    tokio::time::timeout(WAIT, watcher.changed())
        .await
        .expect("no change event")
        .unwrap();
    let summary = reload::reload_tls(h.running.tls(), "file change").unwrap();
    assert_eq!((summary.revoked, summary.revocations_changed), (2, true));

    // MQTT 5: DISCONNECT 0x87 (not authorized), then close; MQTT 3.1.1: close.
    let (got, closed) = common::read_until_close(&mut dave_v5, WAIT).await;
    assert_eq!((got, closed), (vec![0xe0, 0x02, 0x87, 0x00], true));
    let (got, closed) = common::read_until_close(&mut dave_v4, WAIT).await;
    assert_eq!((got, closed), (vec![], true));
    // Another certificate's session is untouched.
    erin_v5.write_all(&[0xc0, 0x00]).await.unwrap();
    assert_eq!(common::read_exact(&mut erin_v5, 2).await, [0xd0, 0x00]);
    // dave's next handshake is refused, erin's is not.
    assert!(handshake_refused(&h, &dave).await, "dave got in again");
    cert_session(&h, &erin, "erin-again", false).await;

    // A reload that changes nothing revokes nothing more.
    let summary = reload::reload_tls(h.running.tls(), "test").unwrap();
    assert!(!summary.revocations_changed);
    erin_v5.write_all(&[0xc0, 0x00]).await.unwrap();
    assert_eq!(common::read_exact(&mut erin_v5, 2).await, [0xd0, 0x00]);
}

#[tokio::test]
async fn a_server_certificate_swap_is_served_to_the_next_handshake_and_broken_files_keep_it() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let h = common::start(Opts {
        listeners: "  - { name: quic, kind: quic, bind: \"127.0.0.1:0\" }\n".into(),
        ..Opts::default()
    })
    .await;
    let endpoint = common::quic::endpoint();
    // Read once: the test empties the CA file later.
    let quic_client = common::quic::client_config(&h);
    let served = || async {
        let tls = h.tls(None).await;
        let over_tls = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let conn = common::quic::connect(&endpoint, h.addr_of("quic"), quic_client.clone())
            .await
            .unwrap();
        let chain = conn
            .peer_identity()
            .unwrap()
            .downcast::<Vec<CertificateDer<'static>>>()
            .unwrap();
        conn.close(0u32.into(), b"");
        (over_tls, chain[0].to_vec())
    };
    let leaf = |pem: &moat::certs::Pem| {
        CertificateDer::from_pem_slice(pem.cert.as_bytes())
            .unwrap()
            .to_vec()
    };
    let before = served().await;
    assert_eq!(before.0, before.1);
    let mut live = h.tls(None).await;
    let body = common::connack(
        &mut live,
        &packets::connect_v4("live", Some("alice"), Some("alice-pw")),
    )
    .await
    .unwrap();
    assert_eq!(body, [0, 0]);

    let new = moat::certs::generate_server(
        &h.pki.ca,
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        30,
    )
    .unwrap();
    let (cert_file, key_file) = (
        h.dir.path().join("server.crt"),
        h.dir.path().join("server.key"),
    );
    common::write_atomically(&key_file, new.key.as_bytes());
    common::write_atomically(&cert_file, new.cert.as_bytes());
    reload::reload_tls(h.running.tls(), "test").unwrap();
    assert_eq!(served().await, (leaf(&new), leaf(&new)));
    // The session that was up keeps going on its keys.
    live.write_all(&[0xc0, 0x00]).await.unwrap();
    assert_eq!(common::read_exact(&mut live, 2).await, [0xd0, 0x00]);

    // A broken key, then a key of another certificate: refused naming the file; the running
    // certificate is still served.
    let other = h.pki.client("other");
    for (key, reason) in [
        ("not a key".as_bytes(), "server.key: no private key in file"),
        (other.key.as_bytes(), "does not belong to the certificate"),
    ] {
        common::write_atomically(&key_file, key);
        let err = reload::reload_tls(h.running.tls(), "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.key") && err.contains(reason), "{err}");
        assert_eq!(served().await, (leaf(&new), leaf(&new)));
    }
    // An empty client CA file is refused too.
    common::write_atomically(&key_file, new.key.as_bytes());
    common::write_atomically(&h.ca_file(), b"");
    let err = reload::reload_tls(h.running.tls(), "test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt: no certificate in file"), "{err}");
    assert_eq!(served().await, (leaf(&new), leaf(&new)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_run_reloads_tls_on_sighup_and_file_change_and_audits_what_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = common::Pki::new(d);
    let (carol, dave, erin) = (pki.client("carol"), pki.client("dave"), pki.client("erin"));
    // Kubernetes-style: the configured CRL is a link into another folder, so replacing the
    // file it points to is seen by SIGHUP only, and replacing the link by the file watcher.
    std::fs::create_dir(d.join("store")).unwrap();
    std::fs::create_dir(d.join("live")).unwrap();
    pki.write_crl(&d.join("store/clients.crl"), &[&carol], false);
    std::os::unix::fs::symlink("../store/clients.crl", d.join("live/clients.crl")).unwrap();
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), "anonymous: false\n").unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), common::LOOPBACK_NETWORK).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n\
         \x20 client_certs: required\n  crls: [live/clients.crl]\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: false\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let listening = common::wait_for_line(&lines, &mut seen, &["listening", "mqtts"]);
    let addr: std::net::SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap()
        .parse()
        .unwrap();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let config = |cert| common::client_config(&pki.ca.cert, Some(cert));
    let session = |cert| async move {
        let mut s = common::tls_connect(addr, config(cert)).await.unwrap();
        let body = common::connack(&mut s, &packets::connect_v5("c", None, None))
            .await
            .unwrap();
        assert_eq!(body[1], 0, "CONNACK {body:02x?}");
        s
    };
    let mut dave_live = session(&dave).await;

    // SIGHUP: the CRL now also revokes dave; his live session is told and audited.
    pki.write_crl(&d.join("store/clients.crl"), &[&carol, &dave], false);
    let signal = |name: &str| common::signal(&child, name);
    signal("-HUP");
    common::wait_for_line(&lines, &mut seen, &["TLS material reloaded", "SIGHUP"]);
    let (got, closed) = common::read_until_close(&mut dave_live, WAIT).await;
    assert_eq!((got, closed), (vec![0xe0, 0x02, 0x87, 0x00], true));
    // Logged by the session, so it may come before or after the reload's own line.
    let kicked = [
        "moat::audit",
        "action=\"session\"",
        "revoked by live/clients.crl",
    ];
    if !seen.iter().any(|l| kicked.iter().all(|n| l.contains(n))) {
        common::wait_for_line(&lines, &mut seen, &kicked);
    }
    // His next handshake, and one from a CA moat does not trust, are refused and audited.
    assert!(refused_at(addr, config(&dave)).await);
    common::wait_for_line(
        &lines,
        &mut seen,
        &["moat::audit", "client certificate revoked", "tls.crls"],
    );
    let stranger_ca = moat::certs::generate_ca("stranger CA", 5).unwrap();
    let stranger = moat::certs::generate_client(&stranger_ca, "erin", 5).unwrap();
    assert!(refused_at(addr, config(&stranger)).await);
    common::wait_for_line(
        &lines,
        &mut seen,
        &["moat::audit", "client certificate from an unknown CA"],
    );

    // A file change: the link is replaced by a CRL that also revokes erin.
    drop(session(&erin).await);
    pki.write_crl(&d.join("live/clients.crl"), &[&carol, &dave, &erin], false);
    common::wait_for_line(&lines, &mut seen, &["TLS material reloaded", "file change"]);
    assert!(refused_at(addr, config(&erin)).await);
    // A broken replacement is refused naming the file; what runs stays (erin still refused).
    common::write_atomically(&d.join("live/clients.crl"), b"not a CRL");
    let line = common::wait_for_line(&lines, &mut seen, &["TLS reload refused", "file change"]);
    assert!(
        line.contains("live/clients.crl: neither PEM nor a DER CRL"),
        "{line}"
    );
    assert!(refused_at(addr, config(&erin)).await);

    signal("-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
