//! MQTT 3.1 (`MQIsdp`, level 3) through moat: rumqttd cannot speak it, so moat translates the
//! session to 3.1.1 upstream (catalogue §B.38). A real MQTT 3.1 client, paho-mqtt for Python
//! (installed by `scripts/test`), subscribes and publishes over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

mod common;

use common::Opts;

#[tokio::test]
async fn paho_mqtt31_client_publishes_and_subscribes_through_moat() {
    let h = common::start(Opts::default()).await;
    let mut watch = h.broker_watch().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/mqtt31_pubsub.py");
    let ca = h.dir.path().join("ca.crt");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .args(["localhost", &h.addr.port().to_string()])
        .arg(&ca)
        .args(["alice", "alice-pw"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(common::WAIT * 3, run)
        .await
        .expect("python script timed out")
        .expect("python3 runs (scripts/test installs paho-mqtt)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "paho MQTT 3.1 client failed: {stderr}"
    );
    // What the broker saw is the same message, published over the translated 3.1.1 session.
    let (topic, payload) = watch.next().await.expect("the broker saw the publish");
    assert_eq!(topic, "py31/hello");
    assert!(payload.starts_with(b"hello 3.1"));
}

#[tokio::test]
async fn mqtt31_connack_never_claims_a_session() {
    // A 3.1 CONNACK has no Session Present flag: clean session 0 on a stored session still
    // gets `20 02 00 00` (the broker's 3.1.1 flag is cleared).
    let h = common::start(Opts::default()).await;
    let connect = |clean: bool| {
        let mut body = Vec::new();
        common::packets::push_str(&mut body, "MQIsdp");
        body.push(3);
        body.push(if clean { 0xc2 } else { 0xc0 });
        body.extend_from_slice(&[0, 60]);
        common::packets::push_str(&mut body, "py31-persist");
        common::packets::push_str(&mut body, "alice");
        common::packets::push_str(&mut body, "alice-pw");
        common::packets::frame(0x10, &body)
    };
    for _ in 0..2 {
        let mut s = h.tls(None).await;
        let (got, _) = common::exchange(&mut s, &[connect(false), vec![0xe0, 0x00]].concat()).await;
        assert_eq!(&got[..4], [0x20, 0x02, 0x00, 0x00]);
    }
}
