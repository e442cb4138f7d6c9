//! The driver on tokio's paused clock, over in-memory streams: the machine's deadlines reach
//! the wire at the virtual instant they are due (keep alive, a throttle longer than the keep
//! alive), with no real time spent and no real sockets.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::policy::{Bucket, ClientLimits, PolicySource, Rate, Subject};
use crate::session::machine::{Setup, Terms};
use crate::shutdown::DrainController;
use crate::transport::TransportKind;

/// moat's ends of the client and broker connections, and the test's ends.
struct Wires {
    client: FrameReader<ReadHalf<DuplexStream>>,
    client_wr: WriteHalf<DuplexStream>,
    broker: FrameReader<ReadHalf<DuplexStream>>,
    broker_wr: WriteHalf<DuplexStream>,
    /// The client's end.
    device: DuplexStream,
    /// The broker's end.
    upstream: DuplexStream,
}

fn wires() -> Wires {
    let (moat_client, device) = tokio::io::duplex(64 * 1024);
    let (moat_broker, upstream) = tokio::io::duplex(64 * 1024);
    let (crd, cwr) = tokio::io::split(moat_client);
    let (brd, bwr) = tokio::io::split(moat_broker);
    Wires {
        client: FrameReader::new(crd, 64 * 1024),
        client_wr: cwr,
        broker: FrameReader::new(brd, 64 * 1024),
        broker_wr: bwr,
        device,
        upstream,
    }
}

fn open_policy() -> crate::policy::Policy {
    let source = PolicySource {
        path: "p.yaml".into(),
        text: "acl:\n  - allow: all\n    topics: [\"#\"]\n".into(),
    };
    crate::policy::compile(&[source]).unwrap()
}

fn peer() -> Peer {
    Peer {
        addr: ([127, 0, 0, 1], 40000).into(),
        listener: Arc::from("mqtts"),
        kind: TransportKind::Tls,
        sni: None,
        alpn: None,
        cert_cn: None,
        cert: None,
        via: None,
    }
}

fn machine(env: &Env, keep_alive: u16, limits: ClientLimits) -> Machine {
    let setup = Setup {
        version: ProtocolVersion::V3_1_1,
        subject: Subject::describe(Some("alice"), Some("c1"), None, None, [127, 0, 0, 1].into()),
        topic_alias_maximum: 0,
        terms: Terms::default(),
        limits,
        keep_alive,
        ping_every: Some(Duration::from_secs(30)),
    };
    let now = Instant::now().into_std();
    Machine::new(now, setup, env.policy_handle().clone())
}

/// A registry entry for the session under test.
fn live(env: &Env) -> super::super::registry::Claim {
    let facts = super::super::registry::Facts {
        identity: "alice".into(),
        client_id: "c1".into(),
        addr: ([127, 0, 0, 1], 1).into(),
        listener: std::sync::Arc::from("test"),
        kind: crate::config::TransportKind::Tls,
        version: ProtocolVersion::V3_1_1,
    };
    env.claim("alice:c1".into(), facts)
}

/// Runs the driver loop until the session ends, next to `script` (the device and the broker).
async fn session<F>(
    w: &mut Wires,
    machine: &mut Machine,
    env: &Env,
    script: F,
) -> Result<(), Refusal>
where
    F: std::future::Future<Output = ()>,
{
    let drains = DrainController::new();
    let drain = drains.drain();
    let peer = peer();
    let io = Io {
        client: &mut w.client,
        client_wr: &mut w.client_wr,
        broker: &mut w.broker,
        broker_wr: &mut w.broker_wr,
    };
    // The script is bounded (in virtual time): a session that ends early fails the test
    // instead of leaving the script waiting forever.
    let script = tokio::time::timeout(Duration::from_secs(600), script);
    let claim = live(env);
    let run = run(io, machine, claim.session(), &peer, env, &drain);
    let (end, script) = tokio::join!(run, script);
    assert!(
        script.is_ok(),
        "the session ended before the script: {end:?}"
    );
    end.map(|_| ())
}

async fn read_exactly(s: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test(start_paused = true)]
async fn the_keep_alive_closes_a_silent_client_at_its_instant_mqtt_3_1_2_24() {
    let env = Env::for_tests(open_policy());
    let mut m = machine(&env, 1, ClientLimits::default());
    let mut w = wires();
    let start = Instant::now();
    let mut device = std::mem::replace(&mut w.device, tokio::io::duplex(1).0);
    let script = async {
        // A PINGREQ at 1 s moves the deadline to 2.5 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        device.write_all(&[0xc0, 0x00]).await.unwrap();
        assert_eq!(read_exactly(&mut device, 2).await, [0xd0, 0x00]);
    };
    let end = session(&mut w, &mut m, &env, script).await;
    assert!(
        matches!(end, Err(Refusal::Peer(PeerFault::KeepAlive))),
        "{end:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn a_throttle_longer_than_the_keep_alive_keeps_a_client_that_pings() {
    // Keep alive 1 s; a 40-byte PUBLISH against 10 bytes/s (burst 10) owes 3 s, and the
    // PINGREQ behind it in the same write waits unread for those 3 s. It is answered at 3 s,
    // and the session lives until 1.5 s after that.
    let env = Env::for_tests(open_policy());
    let limits = ClientLimits {
        publish_bytes: Some(Bucket {
            rate: Rate {
                amount: 10,
                per: Duration::from_secs(1),
            },
            burst: 10,
        }),
        ..ClientLimits::default()
    };
    let mut m = machine(&env, 1, limits);
    let mut w = wires();
    let start = Instant::now();
    let mut device = std::mem::replace(&mut w.device, tokio::io::duplex(1).0);
    let mut upstream = std::mem::replace(&mut w.upstream, tokio::io::duplex(1).0);
    let script = async {
        let mut publish = vec![0x30, 38, 0x00, 0x01, b't'];
        publish.extend_from_slice(&[b'x'; 35]);
        let mut both = publish.clone();
        both.extend_from_slice(&[0xc0, 0x00]);
        device.write_all(&both).await.unwrap();
        assert_eq!(read_exactly(&mut upstream, 40).await, publish);
        assert_eq!(read_exactly(&mut device, 2).await, [0xd0, 0x00]);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    };
    let end = session(&mut w, &mut m, &env, script).await;
    assert!(
        matches!(end, Err(Refusal::Peer(PeerFault::KeepAlive))),
        "{end:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(4500));
    assert_eq!(
        env.stats()
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    // The client never reads: once its socket buffer is full, moat's write cannot finish.
    let env = Env::for_tests(open_policy());
    let mut m = machine(&env, 0, ClientLimits::default());
    let (moat_client, device) = tokio::io::duplex(16);
    let (crd, cwr) = tokio::io::split(moat_client);
    let mut w = wires();
    w.client = FrameReader::new(crd, 64 * 1024);
    w.client_wr = cwr;
    let start = Instant::now();
    let mut upstream = std::mem::replace(&mut w.upstream, tokio::io::duplex(1).0);
    let script = async {
        // A delivery larger than what the client's end holds.
        let mut publish = vec![0x30, 68, 0x00, 0x01, b't'];
        publish.extend_from_slice(&[b'x'; 65]);
        upstream.write_all(&publish).await.unwrap();
    };
    let end = session(&mut w, &mut m, &env, script).await;
    drop(device);
    assert!(
        matches!(end, Err(Refusal::Peer(PeerFault::StoppedReading(_)))),
        "{end:?}"
    );
    assert_eq!(start.elapsed(), CLIENT_WRITE_TIMEOUT);
}

#[test]
fn the_session_future_stays_small() {
    // An idle session is mostly its futures: the driver loop (this) inside `session::serve`.
    // Printed for the record (`cargo test -- --nocapture`), bounded so it cannot grow unseen.
    let env = Env::for_tests(open_policy());
    let mut m = machine_blocking(&env);
    let mut w = wires();
    let peer = peer();
    let drains = DrainController::new();
    let drain = drains.drain();
    let io = Io {
        client: &mut w.client,
        client_wr: &mut w.client_wr,
        broker: &mut w.broker,
        broker_wr: &mut w.broker_wr,
    };
    let claim = live(&env);
    let fut = run(io, &mut m, claim.session(), &peer, &env, &drain);
    let size = std::mem::size_of_val(&fut);
    println!(
        "driver loop future: {size} bytes; machine: {} bytes",
        std::mem::size_of::<Machine>()
    );
    assert!(size < 2048, "{size}");
}

fn machine_blocking(env: &Env) -> Machine {
    let setup = Setup {
        version: ProtocolVersion::V3_1_1,
        subject: Subject::describe(Some("alice"), Some("c1"), None, None, [127, 0, 0, 1].into()),
        topic_alias_maximum: 0,
        terms: Terms::default(),
        limits: ClientLimits::default(),
        keep_alive: 60,
        ping_every: Some(Duration::from_secs(30)),
    };
    Machine::new(
        std::time::Instant::now(),
        setup,
        env.policy_handle().clone(),
    )
}
