//! Identity hardening end to end: client ids namespaced by identity at the broker, so no
//! identity reaches another's session, even after a moat restart (issue 13; mosquitto and the
//! embedded broker), client ids bound to identities by policy (catalogue §A.21), the
//! certificate identity over the CONNECT user name (§A.22), empty client ids (§B.37), and
//! password files written by the real `mosquitto_passwd` tool (installed by `scripts/test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

mod common;

use common::packets::{frame, push_str};
use common::{Harness, Opts};
use moat::mqtt::{self, Packet, ProtocolVersion};
use tokio::io::AsyncWriteExt;

/// A CONNECT: `v`, client id, clean session/start, optional v5 properties, credentials.
fn connect(
    v: ProtocolVersion,
    id: &str,
    clean: bool,
    props: &[u8],
    creds: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, "MQTT");
    body.push(v.level());
    let mut flags = if clean { 0x02 } else { 0x00 };
    if creds.is_some() {
        flags |= 0xc0;
    }
    body.push(flags);
    body.extend_from_slice(&[0, 60]);
    if v.is_v5() {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    push_str(&mut body, id);
    if let Some((u, p)) = creds {
        push_str(&mut body, u);
        push_str(&mut body, p);
    }
    frame(0x10, &body)
}

/// Sends a CONNECT and returns the decoded CONNACK with the open connection.
async fn connack(
    h: &Harness,
    cert: Option<&moat::certs::Pem>,
    v: ProtocolVersion,
    bytes: &[u8],
) -> (mqtt::ConnAck, common::Tls) {
    let mut s = h.tls(cert).await;
    s.write_all(bytes).await.unwrap();
    let head = common::read_exact(&mut s, 2).await;
    let body = common::read_exact(&mut s, usize::from(head[1])).await;
    let packet = mqtt::decode([head, body].concat().into(), v).unwrap();
    let Packet::ConnAck(ack) = packet else {
        panic!("expected CONNACK, got {packet:?}")
    };
    (ack, s)
}

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const ALICE: Option<(&str, &str)> = Some(("alice", "alice-pw"));
const BOB: Option<(&str, &str)> = Some(("bob", "bob-pw"));

/// Reads one whole packet (within [`common::WAIT`]) and decodes it.
async fn next_packet(s: &mut common::Tls, v: ProtocolVersion) -> Packet {
    let mut frame = common::read_exact(s, 1).await;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = common::read_exact(s, 1).await[0];
        frame.push(byte);
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    frame.extend(common::read_exact(s, len).await);
    mqtt::decode(frame.into(), v).unwrap()
}

/// A 3.1.1 SUBSCRIBE of one filter.
fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    push_str(&mut body, filter);
    body.push(qos);
    frame(0x82, &body)
}

/// A 3.1.1 QoS 1 PUBLISH.
fn publish_qos1(pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    body.extend_from_slice(&pkid.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x32, &body)
}

/// Sends `packet` and reads until the acknowledgement of `pkid` (SUBACK or PUBACK).
async fn acked(s: &mut common::Tls, packet: &[u8], pkid: u16) -> Packet {
    s.write_all(packet).await.unwrap();
    match next_packet(s, V4).await {
        ack @ Packet::SubAck(mqtt::SubAck { pkid: p, .. }) if p == pkid => ack,
        ack @ Packet::PubAck(mqtt::PubAck { pkid: p, .. }) if p == pkid => ack,
        other => panic!("expected the ack of {pkid}, got {other:?}"),
    }
}

/// Sends DISCONNECT and waits for moat to close (it lets the broker close first).
async fn leave(mut s: common::Tls) {
    s.write_all(&[0xe0, 0x00]).await.unwrap();
    let (_, closed) = common::read_until_close(&mut s, common::WAIT).await;
    assert!(closed);
}

/// alice leaves a session the broker keeps (clean session 0) on client id `id`, subscribed
/// at QoS 1 to `inbox/{id}`, and bob publishes two messages there while she is away (a
/// PUBACK says the broker has queued them).
async fn alice_leaves_a_kept_session_with_two_queued(h: &Harness, id: &str) {
    let (ack, mut alice) = connack(h, None, V4, &connect(V4, id, false, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    let inbox = format!("inbox/{id}");
    let Packet::SubAck(suback) = acked(&mut alice, &subscribe(1, &inbox, 1), 1).await else {
        unreachable!()
    };
    assert_eq!(suback.codes, [1]);
    leave(alice).await;
    let (ack, mut sender) = connack(h, None, V4, &connect(V4, "sender", true, &[], BOB)).await;
    assert_eq!(ack.code, 0);
    for (pkid, payload) in [(1, b"m1"), (2, b"m2")] {
        acked(&mut sender, &publish_qos1(pkid, &inbox, payload), pkid).await;
    }
    leave(sender).await;
}

/// bob connects with alice's client id and clean session 0: he gets a new session of his own
/// (Session Present 0) and none of her messages. What the broker had queued for the session
/// comes right after CONNACK, so it would arrive before a marker bob sends himself.
async fn bob_gets_nothing_of_alices(h: &Harness, id: &str) {
    let (ack, mut bob) = connack(h, None, V4, &connect(V4, id, false, &[], BOB)).await;
    assert_eq!(
        ack.code, 0,
        "bob may use any client id for a session of his own"
    );
    assert!(!ack.session_present, "bob was handed alice's kept session");
    let marker = format!("marker/{id}");
    acked(&mut bob, &subscribe(1, &marker, 1), 1).await;
    bob.write_all(&publish_qos1(2, &marker, b"marker"))
        .await
        .unwrap();
    loop {
        match next_packet(&mut bob, V4).await {
            Packet::Publish(p) if p.topic.as_str() == marker => break,
            Packet::Publish(p) => panic!("bob got alice's message on {:?}", p.topic.as_str()),
            _ => {}
        }
    }
    leave(bob).await;
}

/// alice gets her session back (Session Present 1) with both queued messages, in order.
async fn alice_gets_her_session_back(h: &Harness, id: &str) {
    let (ack, mut alice) = connack(h, None, V4, &connect(V4, id, false, &[], ALICE)).await;
    assert_eq!(
        (ack.code, ack.session_present),
        (0, true),
        "alice's own session"
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        match next_packet(&mut alice, V4).await {
            Packet::Publish(p) => {
                assert_eq!(p.topic.as_str(), format!("inbox/{id}"));
                let pkid = p.pkid.unwrap().to_be_bytes();
                alice
                    .write_all(&[0x40, 0x02, pkid[0], pkid[1]])
                    .await
                    .unwrap();
                got.push(p.payload.to_vec());
            }
            other => panic!("expected alice's queued messages, got {other:?}"),
        }
    }
    assert_eq!(got, [b"m1".to_vec(), b"m2".to_vec()]);
    leave(alice).await;
}

#[tokio::test]
async fn a_restart_hands_no_kept_session_to_another_identity_on_mosquitto() {
    // Issue 13, seen 4: after a moat restart, bob connected to an external broker with
    // alice's client id and clean session 0, and got her session and its queued messages.
    let broker = common::mosquitto::Mosquitto::start();
    let h = common::start(Opts {
        broker: broker.upstream_yaml(),
        ..Opts::default()
    })
    .await;
    alice_leaves_a_kept_session_with_two_queued(&h, "dev-7").await;
    // Nothing moat kept in memory survives; a second moat instance on the same broker is
    // the same case.
    let h = h.restart().await;
    bob_gets_nothing_of_alices(&h, "dev-7").await;
    alice_gets_her_session_back(&h, "dev-7").await;
    // The broker sees each identity's id apart, readably.
    let mut seen = Vec::new();
    common::wait_for_line(&broker.log, &mut seen, &["as alice:dev-7 "]);
    common::wait_for_line(&broker.log, &mut seen, &["as bob:dev-7 "]);
}

#[tokio::test]
async fn another_identity_with_the_same_client_id_gets_a_session_of_its_own() {
    let h = common::start(Opts::default()).await;
    alice_leaves_a_kept_session_with_two_queued(&h, "dev-17").await;
    bob_gets_nothing_of_alices(&h, "dev-17").await;
    alice_gets_her_session_back(&h, "dev-17").await;
}

#[tokio::test]
async fn identities_with_escaped_characters_connect_to_both_brokers() {
    // `$` in a client id makes rumqttd drop the CONNECT unanswered, and `:` `%` are the
    // namespace's own: the broker id escapes them, and both brokers serve the session.
    const ODD: &str = "x:y$z%";
    let policy = format!(
        "anonymous: false\nusers:\n  - {{ name: \"{ODD}\", password: \"{}\" }}\n\
         acl:\n  - allow: all\n    topics: [\"#\"]\n    users: [\"{ODD}\"]\n",
        common::hash("odd-pw")
    );
    let mosquitto = common::mosquitto::Mosquitto::start();
    for broker in [
        common::EMBEDDED_BROKER.to_string(),
        mosquitto.upstream_yaml(),
    ] {
        let h = common::start(Opts {
            policy: policy.clone(),
            broker,
            ..Opts::default()
        })
        .await;
        let creds = Some((ODD, "odd-pw"));
        let (ack, mut s) = connack(&h, None, V4, &connect(V4, "a:b%24", false, &[], creds)).await;
        assert_eq!(ack.code, 0);
        acked(&mut s, &subscribe(1, "odd/in", 1), 1).await;
        s.write_all(&publish_qos1(2, "odd/in", b"hi"))
            .await
            .unwrap();
        // Its own message back (the PUBACK may come first).
        loop {
            if let Packet::Publish(p) = next_packet(&mut s, V4).await {
                assert_eq!(p.payload.as_ref(), b"hi");
                break;
            }
        }
        leave(s).await;
    }
    let mut seen = Vec::new();
    common::wait_for_line(&mosquitto.log, &mut seen, &["as x%3Ay%24z%25:a:b%24 "]);
}

#[tokio::test]
async fn the_same_client_id_under_another_identity_does_not_take_over() {
    let h = common::start(Opts::default()).await;
    let (ack, mut alice) = connack(&h, None, V5, &connect(V5, "dev-9", true, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    let (ack, _bob) = connack(&h, None, V5, &connect(V5, "dev-9", true, &[], BOB)).await;
    assert_eq!(ack.code, 0, "bob's dev-9 is not alice's");
    // alice's connection is untouched: it still answers.
    alice.write_all(&[0xc0, 0x00]).await.unwrap();
    assert_eq!(common::read_exact(&mut alice, 2).await, [0xd0, 0x00]);
}

#[tokio::test]
async fn a_session_taken_over_by_the_same_identity_hears_0x8e() {
    let h = common::start(Opts::default()).await;
    let (ack, mut old) = connack(&h, None, V5, &connect(V5, "dev-21", true, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    // [MQTT-3.1.4-3] The same client id again: the new connection wins, the old one is told
    // why (DISCONNECT 0x8E Session taken over), not "unspecified error".
    let (ack, _new) = connack(&h, None, V5, &connect(V5, "dev-21", true, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    let (bytes, closed) = common::read_until_close(&mut old, common::WAIT).await;
    assert!(closed);
    assert_eq!(bytes, [0xe0, 0x02, 0x8e, 0x00], "DISCONNECT 0x8E");
}

fn binding_policy(rule: &str) -> String {
    format!("{}client_id: {rule}\n", common::default_policy())
}

#[tokio::test]
async fn the_policy_binds_client_ids_to_identities() {
    let h = common::start(Opts {
        policy: binding_policy("{ must_start_with: \"{identity}-\" }"),
        ..Opts::default()
    })
    .await;
    let (ack, _) = connack(&h, None, V4, &connect(V4, "alice-1", true, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    let before = h.upstream_connects();
    for (v, id, want) in [
        (V4, "bob-1", 0x02),
        (V4, "alice", 0x02),
        (V5, "bob-1", 0x85),
        (V5, "al-1", 0x85),
    ] {
        let (ack, _) = connack(&h, None, v, &connect(v, id, true, &[], ALICE)).await;
        assert_eq!(ack.code, want, "alice as {id}");
    }
    assert_eq!(h.upstream_connects(), before);
    // An empty id gets a moat-assigned one, which the rule does not apply to.
    let (ack, _) = connack(&h, None, V5, &connect(V5, "", true, &[], ALICE)).await;
    assert_eq!(ack.code, 0);
    assert!(ack.properties.assigned_client_identifier.is_some());
}

#[tokio::test]
async fn the_certificate_identity_overrides_the_connect_user_name() {
    // Client ids must equal the identity: a certificate for alice with CONNECT user name bob
    // (and bob's password) is alice, so "alice" is accepted and "bob" refused.
    let h = common::start(Opts {
        policy: binding_policy("{ must_equal: \"{identity}\" }"),
        ..Opts::default()
    })
    .await;
    let cert = h.pki.client("alice");
    let (ack, _) = connack(&h, Some(&cert), V4, &connect(V4, "alice", true, &[], BOB)).await;
    assert_eq!(ack.code, 0, "identity is the certificate's CN");
    let (ack, _) = connack(&h, Some(&cert), V4, &connect(V4, "bob", true, &[], BOB)).await;
    assert_eq!(ack.code, 0x02, "the user name did not become the identity");
    let (ack, _) = connack(&h, Some(&cert), V5, &connect(V5, "bob", true, &[], BOB)).await;
    assert_eq!(ack.code, 0x85);
    // Without a certificate, bob's credentials make bob.
    let (ack, _) = connack(&h, None, V4, &connect(V4, "bob", true, &[], BOB)).await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn empty_client_ids_follow_the_spec() {
    let h = common::start(Opts::default()).await;
    // 5.0: moat assigns an id and says which in CONNACK [MQTT-3.2.2-16]; two clients get two.
    let (a, _sa) = connack(&h, None, V5, &connect(V5, "", true, &[], ALICE)).await;
    let (b, _sb) = connack(&h, None, V5, &connect(V5, "", false, &[], BOB)).await;
    assert_eq!((a.code, b.code), (0, 0));
    let ida = a.properties.assigned_client_identifier.unwrap();
    let idb = b.properties.assigned_client_identifier.unwrap();
    assert!(ida.as_str().starts_with("moat-"), "{ida:?}");
    assert_ne!(ida, idb);
    // A client that sent an id is not told one.
    let (c, _sc) = connack(&h, None, V5, &connect(V5, "named", true, &[], ALICE)).await;
    assert_eq!(c.properties.assigned_client_identifier, None);
    // 3.1.1: an empty id needs Clean Session 1 [MQTT-3.1.3-7]; otherwise 0x02 and close
    // [MQTT-3.1.3-8].
    let (ok, _s) = connack(&h, None, V4, &connect(V4, "", true, &[], ALICE)).await;
    assert_eq!(ok.code, 0);
    let (refused, mut s) = connack(&h, None, V4, &connect(V4, "", false, &[], ALICE)).await;
    assert_eq!(refused.code, 0x02);
    let (_, closed) = common::read_until_close(&mut s, common::WAIT).await;
    assert!(closed, "a refused CONNECT must close the connection");
}

/// Runs the real mosquitto_passwd.
fn mosquitto_passwd(args: &[&str]) {
    let out = std::process::Command::new("mosquitto_passwd")
        .args(args)
        .output()
        .expect("mosquitto_passwd runs (scripts/test installs the mosquitto package)");
    assert!(
        out.status.success(),
        "mosquitto_passwd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_mosquitto_passwd_file_authenticates_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    // The tool's default ($7$, PBKDF2-SHA512), and the old SHA-512 ($6$) it still writes with
    // `-H sha512` (Debian's 2.0.11 supports both; it has no argon2id).
    mosquitto_passwd(&["-c", "-b", path, "carol", "carol-pw"]);
    mosquitto_passwd(&["-H", "sha512-pbkdf2", "-b", path, "dave", "dåve-pw"]);
    mosquitto_passwd(&["-H", "sha512", "-b", path, "erin", "erin-pw"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("carol:$7$") && text.contains("dave:$7$"),
        "{text}"
    );
    assert!(text.contains("erin:$6$"), "{text}");

    // An absolute path here (relative paths resolve against the policy file's folder).
    let policy = format!(
        "anonymous: false\npassword_file: \"{path}\"\nacl:\n  - allow: all\n    topics: [\"passwd/#\"]\n"
    );
    let h = common::start(Opts {
        policy,
        ..Opts::default()
    })
    .await;
    let mut watch = h.broker_watch().await;
    for (user, pw) in [
        ("carol", "carol-pw"),
        ("dave", "dåve-pw"),
        ("erin", "erin-pw"),
    ] {
        let (ack, _) = connack(
            &h,
            None,
            V4,
            &connect(V4, user, true, &[], Some((user, pw))),
        )
        .await;
        assert_eq!(ack.code, 0, "{user}");
        let (ack, _) = connack(
            &h,
            None,
            V4,
            &connect(V4, user, true, &[], Some((user, "nope"))),
        )
        .await;
        assert_eq!(ack.code, 0x04, "{user} with a wrong password");
        let (ack, _) = connack(
            &h,
            None,
            V5,
            &connect(V5, user, true, &[], Some((user, "nope"))),
        )
        .await;
        assert_eq!(ack.code, 0x86, "{user} with a wrong password (v5)");
    }
    // A user from the file publishes through moat.
    let mut s = h.tls(None).await;
    let mut bytes = connect(V4, "carol", true, &[], Some(("carol", "carol-pw")));
    bytes.extend(common::packets::publish_qos0("passwd/ok", b"hi"));
    s.write_all(&bytes).await.unwrap();
    assert_eq!(
        watch.next().await.unwrap(),
        ("passwd/ok".into(), b"hi".to_vec())
    );
    // The $6$ user works, and `moat check` / the log say it should be re-hashed.
    let cfg = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    let loaded = moat::ops::load::load_policy(&cfg).unwrap();
    assert_eq!(loaded.warnings().len(), 1, "{:?}", loaded.warnings());
    assert!(loaded.warnings()[0].contains("'erin' has a $6$"));
}
