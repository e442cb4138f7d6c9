//! moat behind an L4 balancer: PROXY protocol v1/v2 from trusted balancers only, refused
//! before TLS otherwise, and the header's address judged as the client's everywhere
//! (admission, bans, caps, audit). Also a trusted `X-Forwarded-For`, admitted on its address.
//!
//! Sources are played by binding client sockets to addresses in 127.0.0.0/8: the balancer is
//! 127.0.0.2 (trusted), a direct client 127.0.0.1 (not trusted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{packets, Harness, Opts, WAIT};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The trusted balancer's address.
const BALANCER: &str = "127.0.0.2";

/// The `lb` listener: PROXY protocol v1 or v2 from 127.0.0.2 only.
const LB: &str = "  - { name: lb, kind: tls, bind: \"127.0.0.1:0\", proxy_protocol: any, trusted_proxies: [127.0.0.2] }\n";

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8883\r\n").into_bytes()
}

/// A v2 PROXY (or LOCAL, `client` None) header for an IPv4 TCP client, with one NOOP TLV.
fn v2(client: Option<&str>) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match client {
        None => h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]),
        Some(ip) => {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            h.extend_from_slice(&[0x21, 0x11, 0x00, 15]);
            h.extend_from_slice(&ip.octets());
            h.extend_from_slice(&[127, 0, 0, 1, 0xc3, 0x50, 0x22, 0xb3]);
            h.extend_from_slice(&[0x04, 0x00, 0x00]);
        }
    }
    h
}

/// Opens a connection from `src` to `addr` and writes `header` (a balancer's first bytes).
async fn from_with(src: &str, addr: SocketAddr, header: &[u8]) -> std::io::Result<TcpStream> {
    let mut tcp = common::tcp_from(src, addr).await?;
    tcp.write_all(header).await?;
    Ok(tcp)
}

/// TLS over `tcp`, as the client behind the balancer does once the header is sent.
async fn tls_over(h: &Harness, tcp: TcpStream) -> std::io::Result<common::Tls> {
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        WAIT,
        TlsConnector::from(h.client_config(None)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// CONNACK return code of alice (or of a wrong password) through the balancer for `client`.
async fn login_via(h: &Harness, header: &[u8], id: &str, password: &str) -> Option<u8> {
    let tcp = from_with(BALANCER, h.addr_of("lb"), header).await.ok()?;
    let mut s = tls_over(h, tcp).await.ok()?;
    common::connack_code(
        &mut s,
        &packets::connect_v4(id, Some("alice"), Some(password)),
    )
    .await
}

/// What comes back on a connection moat refuses before TLS: nothing, then a close or reset.
/// `Some(bytes)` once closed, `None` if it stayed open for `wait`.
async fn refused_before_tls(mut tcp: TcpStream, wait: Duration) -> Option<Vec<u8>> {
    // The start of a ClientHello, more than the 12 bytes the header framing reads first.
    let _ = tcp
        .write_all(&[
            0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, 0, 0, 0,
        ])
        .await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0u8; 256];
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn network(deny: &str, extra: &str) -> String {
    format!(
        "network:\n  allow: [\"127.0.0.0/8\"]\n  deny: {deny}\n\
         limits:\n  connections: {{ per_ip: off, global: off{extra} }}\n\
         auto_ban:\n  failed_auth: {{ count: 2, within: 1m, ban_for: 1h, ban: [source] }}\n"
    )
}

async fn lb(network: String, extra: &str) -> Harness {
    common::start(Opts {
        listeners: LB.to_string(),
        network,
        extra: extra.to_string(),
        ..Opts::default()
    })
    .await
}

#[tokio::test]
async fn v1_and_v2_headers_from_a_trusted_balancer_then_tls_and_connect() {
    let h = lb(network("[]", ""), "").await;
    assert_eq!(
        login_via(&h, &v1("127.0.0.61", 40000), "a", "alice-pw").await,
        Some(0)
    );
    assert_eq!(
        login_via(&h, &v2(Some("127.0.0.62")), "b", "alice-pw").await,
        Some(0)
    );
    // A balancer's health check (LOCAL) is its own connection: TLS completes.
    let tcp = from_with(BALANCER, h.addr_of("lb"), &v2(None))
        .await
        .unwrap();
    assert!(tls_over(&h, tcp).await.is_ok());
    let s = h.running.stats();
    assert_eq!((s.proxy_untrusted, s.proxy_header_invalid), (0, 0));
}

#[tokio::test]
async fn untrusted_peer_missing_malformed_and_slow_headers_are_refused_before_tls() {
    let h = lb(network("[]", ""), "timeouts: { tls_handshake: 1s }\n").await;
    let lb = h.addr_of("lb");
    // A header from a peer that is not a trusted balancer: reset before a byte is read.
    let tcp = from_with("127.0.0.1", lb, &v1("127.0.0.61", 40000)).await;
    if let Ok(tcp) = tcp {
        assert_eq!(
            refused_before_tls(tcp, WAIT).await,
            Some(vec![]),
            "no TLS alert"
        );
    }
    assert_eq!(h.running.stats().proxy_untrusted, 1);
    // The trusted balancer without a header (TLS straight away), with a wrong signature, with
    // a v1 line past 107 bytes: closed without a TLS alert.
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
    for header in [
        &b""[..],
        b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c",
        long.as_bytes(),
    ] {
        let tcp = from_with(BALANCER, lb, header).await.unwrap();
        assert_eq!(
            refused_before_tls(tcp, WAIT).await,
            Some(vec![]),
            "no TLS alert"
        );
    }
    assert_eq!(h.running.stats().proxy_header_invalid, 3);
    // A real TLS client without a header fails its handshake.
    let tcp = common::tcp_from(BALANCER, lb).await.unwrap();
    assert!(tls_over(&h, tcp).await.is_err());
    // Half a header, then silence: closed at the handshake deadline.
    let mut tcp = from_with(BALANCER, lb, b"PROXY TCP4 127.0").await.unwrap();
    let mut b = [0u8; 1];
    let closed = tokio::time::timeout(WAIT, tcp.read(&mut b)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert_eq!(h.running.stats().proxy_header_timeout, 1);
    // None of it counted against the balancer: a header naming a client is still served.
    assert_eq!(
        login_via(&h, &v2(Some("127.0.0.62")), "b", "alice-pw").await,
        Some(0)
    );
}

#[tokio::test]
async fn the_header_address_is_admitted_not_the_balancer() {
    // The balancer itself is denied and the cap is one connection per source: neither applies
    // to it, both apply to the clients it names.
    let h = lb(network("[127.0.0.66, 127.0.0.2]", ", max_per_ip: 1"), "").await;
    let lb = h.addr_of("lb");
    let denied = from_with(BALANCER, lb, &v2(Some("127.0.0.66")))
        .await
        .unwrap();
    assert_eq!(refused_before_tls(denied, WAIT).await, Some(vec![]));
    assert_eq!(h.running.stats().admission.refused_network, 1);
    // Two clients through the same balancer at once, each at its own cap.
    let one = from_with(BALANCER, lb, &v1("127.0.0.67", 1)).await.unwrap();
    let mut one = tls_over(&h, one).await.unwrap();
    let alice = |id| packets::connect_v4(id, Some("alice"), Some("alice-pw"));
    assert_eq!(common::connack_code(&mut one, &alice("one")).await, Some(0));
    let two = from_with(BALANCER, lb, &v1("127.0.0.68", 1)).await.unwrap();
    let mut two = tls_over(&h, two).await.unwrap();
    assert_eq!(common::connack_code(&mut two, &alice("two")).await, Some(0));
    let again = from_with(BALANCER, lb, &v1("127.0.0.67", 2)).await.unwrap();
    assert_eq!(refused_before_tls(again, WAIT).await, Some(vec![]));
    assert_eq!(h.running.stats().admission.refused_capacity, 1);
}

#[tokio::test]
async fn failed_logins_ban_the_header_address_not_the_balancer() {
    let h = lb(network("[]", ""), "").await;
    for id in ["x1", "x2"] {
        assert_ne!(
            login_via(&h, &v2(Some("127.0.0.70")), id, "wrong").await,
            Some(0)
        );
    }
    let bans = h.running.active_bans();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert!(format!("{bans:?}").contains("127.0.0.70"), "{bans:?}");
    // The banned device is refused before TLS; the balancer's other clients are served.
    let banned = from_with(BALANCER, h.addr_of("lb"), &v2(Some("127.0.0.70")))
        .await
        .unwrap();
    assert_eq!(refused_before_tls(banned, WAIT).await, Some(vec![]));
    assert_eq!(h.running.stats().admission.refused_banned, 1);
    assert_eq!(
        login_via(&h, &v2(Some("127.0.0.71")), "ok", "alice-pw").await,
        Some(0)
    );
    assert_eq!(
        login_via(&h, &v1("127.0.0.2", 5), "lb", "alice-pw").await,
        Some(0)
    );
}

#[tokio::test]
async fn x_forwarded_for_is_admitted_on_the_forwarded_address() {
    // The reverse proxy 127.0.0.2 is itself denied: only the address it forwards is judged.
    let h = common::start(Opts {
        listeners: "  - { name: wss, kind: wss, bind: \"127.0.0.1:0\", ws: { trusted_proxies: [127.0.0.2] } }\n"
            .to_string(),
        network: network("[127.0.0.80, 127.0.0.2]", ""),
        ..Opts::default()
    })
    .await;
    let addr = h.addr_of("wss");
    let tls = common::ws::wss_tls(&h.pki.ca.cert);
    let via_proxy = |xff: &'static str| {
        let tls = tls.clone();
        async move {
            let tcp = common::tcp_from(BALANCER, addr).await.unwrap();
            let headers: Vec<(&str, &str)> = match xff {
                "" => vec![],
                ip => vec![("x-forwarded-for", ip)],
            };
            common::ws::wss_over(tcp, addr, tls, "/mqtt", &["mqtt"], &headers).await
        }
    };
    assert_eq!(
        common::ws::refused_status(via_proxy("127.0.0.80").await),
        403
    );
    assert_eq!(common::ws::refused_status(via_proxy("").await), 403);
    assert_eq!(h.running.stats().admission.refused_network, 2);
    let mut ws = via_proxy("127.0.0.81").await.unwrap();
    common::ws::send(
        &mut ws,
        &packets::connect_v4("w", Some("alice"), Some("alice-pw")),
    )
    .await;
    assert_eq!(
        common::ws::read_bytes(&mut ws, 4).await,
        vec![0x20, 0x02, 0x00, 0x00]
    );
    // A client connecting directly is judged on its own address, as before.
    let direct = common::ws::wss_connect(addr, tls.clone(), "/mqtt", &["mqtt"], &[]).await;
    assert!(direct.is_ok());
}

/// The real binary: the header's address is what moat's log and audit lines name.
#[tokio::test]
async fn logs_and_audit_name_the_header_address() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = common::Pki::new(d);
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/test.yaml"), common::default_policy()).unwrap();
    std::fs::write(d.join("policies/00-network.yaml"), network("[]", "")).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        format!(
            "listeners:\n{LB}\
             tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
             broker:\n  embedded: {{ bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }}\n\
             policies: [policies/]\ndev_certs: false\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    let listening = common::wait_for_line(&lines, &mut seen, &["listening", "listener=lb"]);
    let lb: SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap()
        .parse()
        .unwrap();
    let config = common::client_config(&pki.ca.cert, None);
    let login = |header: Vec<u8>, password: &'static str| {
        let config = config.clone();
        async move {
            let tcp = from_with(BALANCER, lb, &header).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut s = TlsConnector::from(config).connect(name, tcp).await.unwrap();
            let connect = packets::connect_v4("dev", Some("alice"), Some(password));
            common::connack_code(&mut s, &connect).await
        }
    };
    assert_eq!(login(v1("127.0.0.61", 40000), "alice-pw").await, Some(0));
    let up = common::wait_for_line(&lines, &mut seen, &["session up"]);
    assert!(
        up.contains("127.0.0.61") && up.contains("via=127.0.0.2"),
        "{up}"
    );
    assert_ne!(login(v2(Some("127.0.0.62")), "wrong").await, Some(0));
    let audit = common::wait_for_line(&lines, &mut seen, &["moat::audit", "refused", "alice"]);
    assert!(audit.contains("peer=127.0.0.62:50000"), "{audit}");
    // A header from a peer that is not trusted: refused before TLS, audited with the cause.
    if let Ok(tcp) = from_with("127.0.0.1", lb, &v1("127.0.0.63", 1)).await {
        refused_before_tls(tcp, WAIT).await;
    }
    let refused = common::wait_for_line(&lines, &mut seen, &["moat::audit", "action=\"proxy\""]);
    assert!(
        refused.contains("peer=127.0.0.1:") && refused.contains("not a trusted proxy"),
        "{refused}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// HAProxy in TCP mode as the balancer (`send-proxy-v2`, connecting from 127.0.0.2), killed when
/// dropped. Its frontend socket is bound here on port 0 and handed over as its stdin
/// (`bind fd@0`): no port guessing, and connections queue until it accepts them.
struct Haproxy {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(moat: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 64\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend fe\n    bind fd@0\n    default_backend moat\n\
                 backend moat\n    server m1 {moat} send-proxy-v2 source {BALANCER}\n"
            ),
        )
        .unwrap();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let child = std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                socket,
            )))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy is installed (scripts/test installs it)");
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn behind_haproxy_a_device_denied_by_its_own_address_is_refused_and_others_served() {
    let h = lb(network("[127.0.0.66, 127.0.0.2]", ""), "").await;
    let haproxy = Haproxy::start(h.addr_of("lb"));
    let through = |src: &'static str| {
        let h = &h;
        let addr = haproxy.addr;
        async move {
            let tcp = common::tcp_from(src, addr).await.ok()?;
            let mut s = tls_over(h, tcp).await.ok()?;
            let connect = packets::connect_v4(src, Some("alice"), Some("alice-pw"));
            common::connack_code(&mut s, &connect).await
        }
    };
    assert_eq!(through("127.0.0.67").await, Some(0));
    assert_eq!(through("127.0.0.66").await, None);
    assert_eq!(through("127.0.0.68").await, Some(0));
    let s = h.running.stats();
    assert_eq!(s.admission.refused_network, 1);
    assert_eq!((s.proxy_untrusted, s.proxy_header_invalid), (0, 0));
}

#[tokio::test]
async fn an_http_proxy_behind_the_balancer_is_believed_for_x_forwarded_for() {
    // L4 balancer 127.0.0.2 (PROXY header) → HTTP proxy 127.0.0.3 (X-Forwarded-For) → device.
    let h = common::start(Opts {
        listeners: "  - { name: wss, kind: wss, bind: \"127.0.0.1:0\", proxy_protocol: v1, trusted_proxies: [127.0.0.2], ws: { trusted_proxies: [127.0.0.3] } }\n"
            .to_string(),
        network: network("[127.0.0.90, 127.0.0.3]", ""),
        ..Opts::default()
    })
    .await;
    let addr = h.addr_of("wss");
    let tls = common::ws::wss_tls(&h.pki.ca.cert);
    let device = |ip: &'static str| {
        let tls = tls.clone();
        async move {
            let tcp = from_with(BALANCER, addr, &v1("127.0.0.3", 7))
                .await
                .unwrap();
            let xff = [("x-forwarded-for", ip)];
            common::ws::wss_over(tcp, addr, tls, "/mqtt", &["mqtt"], &xff).await
        }
    };
    assert_eq!(common::ws::refused_status(device("127.0.0.90").await), 403);
    let mut ws = device("127.0.0.91").await.unwrap();
    common::ws::send(
        &mut ws,
        &packets::connect_v4("w", Some("alice"), Some("alice-pw")),
    )
    .await;
    assert_eq!(
        common::ws::read_bytes(&mut ws, 4).await,
        vec![0x20, 0x02, 0x00, 0x00]
    );
    assert_eq!(h.running.stats().admission.refused_network, 1);
}
