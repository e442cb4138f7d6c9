//! Real WebSocket MQTT clients over WSS: paho-mqtt (Python, `transport="websockets"`) and
//! MQTT.js (Node). `scripts/test` installs both (pip `paho-mqtt`, `npm ci` in tests/js).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::{Harness, Opts};

/// Each client run is bounded by its own 15 s deadline; this is the outer bound.
const CLIENT_WAIT: Duration = Duration::from_secs(30);

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

async fn start() -> Harness {
    common::start(Opts {
        listeners: "  - { name: wss, kind: wss, bind: \"127.0.0.1:0\" }\n".into(),
        ..Opts::default()
    })
    .await
}

async fn run(cmd: &mut tokio::process::Command) -> Output {
    let out = tokio::time::timeout(CLIENT_WAIT, cmd.kill_on_drop(true).output())
        .await
        .expect("client hung")
        .expect("client is installed (scripts/test installs python3 paho-mqtt and node mqtt)");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn paho(h: &Harness, mode: &str, user: &str, password: &str) -> Output {
    run(tokio::process::Command::new("python3")
        .arg(tests_dir().join("py/ws_paho.py"))
        .arg(mode)
        .arg(h.addr_of("wss").port().to_string())
        .arg(h.ca_file())
        .args([user, password]))
    .await
}

async fn mqttjs(h: &Harness, mode: &str, user: &str, password: &str) -> Output {
    let js = tests_dir().join("js");
    assert!(
        js.join("node_modules/mqtt").is_dir(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
    run(tokio::process::Command::new("node")
        .current_dir(&js)
        .arg("ws_client.mjs")
        .arg(mode)
        .arg(format!("wss://localhost:{}/mqtt", h.addr_of("wss").port()))
        .arg(h.ca_file())
        .args([user, password]))
    .await
}

#[tokio::test]
async fn paho_mqtt_publishes_and_subscribes_over_wss() {
    let h = start().await;
    let out = paho(&h, "pubsub", "alice", "alice-pw").await;
    assert_eq!(stdout(&out), "received paho/echo: hello from paho");
    assert!(out.status.success());
    // A refused login is CONNACK 4 (bad user name or password), as on every transport.
    let out = paho(&h, "refused", "alice", "wrong").await;
    assert_eq!(
        stdout(&out),
        "refused 134",
        "paho maps 3.1.1 code 4 to reason 134"
    );
    assert!(out.status.success());
}

#[tokio::test]
async fn mqttjs_publishes_and_subscribes_over_wss() {
    let h = start().await;
    let out = mqttjs(&h, "pubsub", "bob", "bob-pw").await;
    assert_eq!(stdout(&out), "received mqttjs/echo: hello from MQTT.js");
    assert!(out.status.success());
    let out = mqttjs(&h, "refused", "bob", "wrong").await;
    assert_eq!(stdout(&out), "refused 4");
    assert!(out.status.success());
}
