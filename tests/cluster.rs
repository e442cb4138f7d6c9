//! The scale-out test bed (issue 16 item 4), started with its own script
//! (`examples/cluster/run.sh`): HAProxy with `send-proxy-v2` in front of two real `moat`
//! binaries, in front of two aedes nodes sharing Redis. One bed, the scenarios in order, each
//! leaving the bed as the next expects it:
//! - a subscriber on one instance receives what a publisher sends through the other;
//! - a device refused by its own address (known only from the PROXY header) is refused while
//!   others behind the same balancer are served;
//! - one moat instance killed mid-stream: its clients reconnect through the balancer to the
//!   other, resume their sessions (clean session 0), and no QoS 1 message is lost;
//! - one broker node killed: the clients reconnect and carry on through moat's failover.
//!
//! scripts/test installs haproxy, redis-server and the bed's npm packages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The bed, stopped (every process it started) when dropped.
struct Bed {
    dir: tempfile::TempDir,
    ports: HashMap<String, String>,
    ca: Arc<rustls::ClientConfig>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/run.sh")
}

impl Bed {
    fn start() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script())
            .arg("start")
            .env("CLUSTER_DIR", dir.path())
            .env("MOAT_BIN", env!("CARGO_BIN_EXE_moat"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run.sh start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("ports.env")).unwrap();
        let ports: HashMap<String, String> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ca_pem = std::fs::read_to_string(&ports["CA"]).unwrap();
        Bed {
            ca: common::client_config(&ca_pem, None),
            dir,
            ports,
        }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports[name].parse().unwrap()
    }

    /// SIGKILL to one process of the bed (by the pid the script recorded), as a crash.
    fn kill(&self, name: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("{name}.pid"))).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("CLUSTER_DIR", self.dir.path())
            .output();
    }
}

/// What a client's event loop saw.
#[derive(Debug)]
enum Seen {
    /// A CONNACK, with its session-present flag.
    Connected(bool),
    SubAck,
    Message(String),
}

/// An MQTT 3.1.1 client (rumqttc) on `port`, which reconnects by itself (rumqttc resends
/// unacknowledged QoS 1 publishes on a resumed session). Its loop ends with the handle.
struct Client {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(bed: &Bed, port: u16, id: &str, user: &str, clean: bool) -> Client {
    let mut opts = MqttOptions::new(id, "localhost", port);
    opts.set_credentials(user, format!("{user}-pw"));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        bed.ca.clone(),
    )));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let (tx, seen) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => Seen::Connected(c.session_present),
                Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Seen::Message(String::from_utf8_lossy(&p.payload).into_owned())
                }
                Ok(_) => continue,
                Err(_) => {
                    // Reconnects on the next poll; bounded by the test's own deadlines.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    Client { client, seen, task }
}

/// Waits for the next event `want` accepts (others are dropped), within `wait`.
async fn expect(c: &mut Client, wait: Duration, what: &str, want: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, c.seen.recv()).await {
            Ok(Some(seen)) if want(&seen) => return seen,
            Ok(Some(_)) => continue,
            _ => panic!("no {what} within {wait:?}"),
        }
    }
}

async fn connected(c: &mut Client) -> bool {
    match expect(c, common::WAIT, "CONNACK", |s| {
        matches!(s, Seen::Connected(_))
    })
    .await
    {
        Seen::Connected(present) => present,
        _ => unreachable!(),
    }
}

async fn subscribed(c: &mut Client, filter: &str) {
    c.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    expect(c, common::WAIT, "SUBACK", |s| matches!(s, Seen::SubAck)).await;
}

/// Collects messages until every one of `want` arrived (duplicates allowed: QoS 1), or fails
/// after `wait` naming the missing ones.
async fn receive_all(c: &mut Client, want: &BTreeSet<String>, wait: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = BTreeSet::new();
    let mut resumed = 0;
    while !want.is_subset(&got) {
        match tokio::time::timeout_at(deadline, c.seen.recv()).await {
            Ok(Some(Seen::Message(m))) => {
                got.insert(m);
            }
            Ok(Some(Seen::Connected(present))) => {
                assert!(present, "a reconnect did not resume the session");
                resumed += 1;
            }
            Ok(Some(Seen::SubAck)) => {}
            _ => {
                let missing: Vec<_> = want.difference(&got).collect();
                panic!(
                    "{} of {} messages lost: {missing:?}",
                    missing.len(),
                    want.len()
                );
            }
        }
    }
    resumed
}

/// Publishes `tag-0` … `tag-(n-1)` at QoS 1, `gap` apart; calls `midway` after half of them.
async fn publish_series(
    c: &Client,
    topic: &str,
    tag: &str,
    n: usize,
    gap: Duration,
    midway: impl FnOnce(),
) -> BTreeSet<String> {
    let mut midway = Some(midway);
    let mut sent = BTreeSet::new();
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        c.client
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        sent.insert(payload);
        if i == n / 2 {
            if let Some(f) = midway.take() {
                f();
            }
        }
        tokio::time::sleep(gap).await;
    }
    sent
}

/// The session-present flags of the reconnects a client saw so far.
fn resumptions(c: &mut Client) -> Vec<bool> {
    let mut flags = Vec::new();
    while let Ok(seen) = c.seen.try_recv() {
        if let Seen::Connected(present) = seen {
            flags.push(present);
        }
    }
    flags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_moat_instances_behind_haproxy_in_front_of_an_aedes_cluster() {
    let started = Instant::now();
    let bed = Bed::start();

    // 1. Across instances: subscriber on moat-2, publisher on moat-1 (each to its own
    //    preferred broker node), straight to each instance.
    let mut sub = client(&bed, bed.port("MOAT_2"), "x-sub", "bob", true);
    assert!(!connected(&mut sub).await);
    subscribed(&mut sub, "bed/x").await;
    let mut publ = client(&bed, bed.port("MOAT_1"), "x-pub", "alice", true);
    connected(&mut publ).await;
    let sent = publish_series(&publ, "bed/x", "x", 5, Duration::ZERO, || {}).await;
    receive_all(&mut sub, &sent, common::WAIT).await;
    drop((sub, publ));

    // 2. The device's own address through the balancer: 127.0.0.66 is denied by the network
    //    policy, 127.0.0.1 is served; both reach moat from HAProxy's address.
    let lb: std::net::SocketAddr = format!("127.0.0.1:{}", bed.port("BALANCER"))
        .parse()
        .unwrap();
    let tcp = common::tcp_from("127.0.0.66", lb).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let handshake = tokio::time::timeout(
        common::WAIT,
        tokio_rustls::TlsConnector::from(bed.ca.clone()).connect(name, tcp),
    )
    .await
    .expect("refused in time");
    assert!(
        handshake.is_err(),
        "a denied device completed a TLS handshake"
    );
    let mut ok = client(&bed, bed.port("BALANCER"), "lb-ok", "alice", true);
    connected(&mut ok).await;
    drop(ok);
    let logs = bed.log("moat-1") + &bed.log("moat-2");
    assert!(
        logs.contains("peer=127.0.0.66") && logs.contains("network deny 127.0.0.66/32"),
        "no refusal of the device's own address in the logs"
    );

    // 3. moat-1 killed mid-stream. `balance first`: both clients are on moat-1; they come back
    //    through HAProxy on moat-2, resume their sessions, and every QoS 1 message arrives.
    let mut sub = client(&bed, bed.port("BALANCER"), "q-sub", "bob", false);
    connected(&mut sub).await;
    subscribed(&mut sub, "bed/q").await;
    let mut publ = client(&bed, bed.port("BALANCER"), "q-pub", "alice", false);
    connected(&mut publ).await;
    // aedes reports a session as present only when it holds a subscription; without one the
    // publisher's resumed CONNACK says "no session" and the client rightly drops its unacknowledged
    // QoS 1 publishes (the message in flight at the kill was lost that way, at the broker).
    subscribed(&mut publ, "bed/publisher/q-pub").await;
    let sent = publish_series(&publ, "bed/q", "q", 60, Duration::from_millis(10), || {
        bed.kill("moat-1")
    })
    .await;
    let resumed = receive_all(&mut sub, &sent, Duration::from_secs(15)).await;
    assert!(resumed >= 1, "the subscriber never reconnected");
    assert_eq!(resumptions(&mut publ), [true], "the publisher's reconnect");
    let moat2 = bed.log("moat-2");
    assert!(
        moat2
            .lines()
            .any(|l| l.contains("session up") && l.contains("q-sub")),
        "q-sub did not move to moat-2"
    );

    // 4. aedes-2 (moat-2's preferred node) killed: moat-2 fails over to aedes-1, the clients
    //    reconnect through HAProxy, resume, and carry on. (What the dead node had acknowledged
    //    but not yet written to Redis is the broker's to lose: only what is published after
    //    the reconnect is required.)
    publish_series(&publ, "bed/q", "r", 20, Duration::from_millis(10), || {
        bed.kill("aedes-2")
    })
    .await;
    expect(&mut sub, Duration::from_secs(15), "reconnect", |s| {
        matches!(s, Seen::Connected(true))
    })
    .await;
    let after = publish_series(&publ, "bed/q", "s", 20, Duration::ZERO, || {}).await;
    receive_all(&mut sub, &after, Duration::from_secs(15)).await;
    let moat2 = bed.log("moat-2");
    assert!(
        moat2.contains("broker address failed")
            && moat2.contains(&format!("127.0.0.1:{}", bed.port("AEDES_2"))),
        "moat-2 did not log the dead node"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
