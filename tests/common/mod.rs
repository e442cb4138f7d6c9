//! Test support: a throwaway PKI, moat started in-process on port 0 with the real embedded
//! broker, TLS clients (raw bytes and rumqttc), and a watcher on the broker itself.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod mosquitto;
pub mod process;
pub mod quic;
pub mod raw;
pub mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moat::certs::{self, Pem};
use moat::server::{Running, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A client's TLS connection to moat.
pub type Tls = TlsStream<TcpStream>;

/// Generous upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

/// A CA with a server certificate for localhost/127.0.0.1 and helpers for client certs.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Pem,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = certs::generate_ca("moat test CA", 30).unwrap();
        let server = certs::generate_server(
            &ca,
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            30,
        )
        .unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.cert).unwrap();
        std::fs::write(dir.join("server.crt"), &server.cert).unwrap();
        std::fs::write(dir.join("server.key"), &server.key).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    pub fn client(&self, cn: &str) -> Pem {
        certs::generate_client(&self.ca, cn, 30).unwrap()
    }

    /// Writes a CRL of this CA revoking `revoked` to `path` (PEM, or DER when `der`), in one
    /// rename so a file watcher never sees half of it.
    pub fn write_crl(&self, path: &Path, revoked: &[&Pem], der: bool) {
        let pem = certs::generate_crl(&self.ca, revoked).unwrap();
        let bytes = if der {
            rustls::pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        } else {
            pem.into_bytes()
        };
        write_atomically(path, &bytes);
    }
}

/// A folder for `moat run -c moat.yaml`: `policies/NAME` holding `policy`, and a moat.yaml with
/// one TLS listener and the embedded broker on port 0 and development certificates. Returns the
/// policy file's path (tests rewrite it to reload).
pub fn run_dir_with_policy(d: &Path, name: &str, policy: &str) -> PathBuf {
    std::fs::create_dir(d.join("policies")).unwrap();
    let file = d.join("policies").join(name);
    std::fs::write(&file, policy).unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: certs/server.crt\n  key: certs/server.key\n  client_certs: none\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: true\n",
    )
    .unwrap();
    file
}

/// Writes `bytes` to `path` through a temporary file and a rename (how certificate tools and
/// Kubernetes replace files).
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An argon2id PHC string with small parameters (the tests hash many times).
pub fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"moat-test-salt-1").unwrap();
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The default test policy: alice/alice-pw and bob/bob-pw, no anonymous access; alice and bob
/// may use every topic (except `$`-topics, which `#` never matches).
pub fn default_policy() -> String {
    format!(
        "anonymous: false\nusers:\n  - {{ name: alice, password: \"{}\", groups: [sensors] }}\n  - {{ name: bob, password: \"{}\" }}\n{}",
        hash("alice-pw"),
        hash("bob-pw"),
        BROAD_RULES
    )
}

/// The ACL of [`default_policy`]: alice and bob may do anything on any topic.
pub const BROAD_RULES: &str =
    "acl:\n  - allow: all\n    topics: [\"#\"]\n    users: [alice, bob]\n";
/// The harness's network policy file: loopback may connect (an empty allow list admits nobody),
/// and the default connection rates are off, because tests open hundreds of connections from
/// one address at once, and failed logins do not ban loopback (many tests fail logins on
/// purpose). Tests of admission itself write their own.
pub const LOOPBACK_NETWORK: &str = "network:\n  allow: [\"127.0.0.0/8\", \"::1\"]\n\
limits:\n  connections: { per_ip: off, global: off }\n\
auto_ban:\n  failed_auth: { count: 0, within: 1m, ban_for: 1s }\n";

/// Knobs for one test server.
pub struct Opts {
    pub client_certs: &'static str,
    pub policy: String,
    /// A second policy file, `policies/00-network.yaml` (network:, bans:, limits:, auto_ban:);
    /// defaults to [`LOOPBACK_NETWORK`] so tests with their own `policy` still get in.
    pub network: String,
    /// Listener bind address (`"[::1]:0"` for IPv6 tests).
    pub bind: &'static str,
    /// Extra top-level YAML appended to moat.yaml (timeouts:, limits:, …).
    pub extra: String,
    /// Client certificate CNs to issue and revoke in a CRL the listener loads.
    pub revoked: Vec<&'static str>,
    /// Write that CRL DER-encoded instead of PEM.
    pub der_crl: bool,
    /// Extra lines inside the `tls:` section (each indented two spaces, ending in a newline).
    pub tls_extra: String,
    /// More listeners, as YAML list entries (`  - { name: wss, kind: wss, bind: "127.0.0.1:0" }\n`),
    /// next to the `mqtts` TLS listener every harness has.
    pub listeners: String,
    /// The `broker:` section of moat.yaml; the embedded broker on two free loopback ports
    /// unless a test points moat at a real mosquitto (`mosquitto::Mosquitto::upstream_yaml`).
    pub broker: String,
    /// moat.yaml's `limits.kernel_filter` (on in moat by default). Off here: most tests watch
    /// the user-space gate refuse (a reset, a counter); tests/kernel_filter.rs turns it on.
    pub kernel_filter: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            client_certs: "optional",
            policy: default_policy(),
            network: LOOPBACK_NETWORK.to_string(),
            bind: "127.0.0.1:0",
            extra: String::new(),
            revoked: Vec::new(),
            der_crl: false,
            tls_extra: String::new(),
            listeners: String::new(),
            broker: EMBEDDED_BROKER.to_string(),
            kernel_filter: false,
        }
    }
}

/// The embedded broker on two free loopback ports.
pub const EMBEDDED_BROKER: &str =
    "broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n";

/// moat running in-process with its embedded broker.
pub struct Harness {
    pub running: Running,
    pub addr: SocketAddr,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    /// Client certificates listed in the listener's CRL.
    pub revoked: Vec<Pem>,
    /// See [`Opts::kernel_filter`].
    pub kernel_filter: bool,
}

pub async fn start(opts: Opts) -> Harness {
    // MOAT_TEST_LOG=debug shows moat's own log lines when a test needs explaining.
    if let Ok(filter) = std::env::var("MOAT_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/test.yaml"), &opts.policy).unwrap();
    std::fs::write(dir.path().join("policies/00-network.yaml"), &opts.network).unwrap();
    let revoked: Vec<Pem> = opts.revoked.iter().map(|cn| pki.client(cn)).collect();
    let crls = if revoked.is_empty() {
        "[]"
    } else {
        let refs: Vec<&Pem> = revoked.iter().collect();
        pki.write_crl(&dir.path().join("revoked.crl"), &refs, opts.der_crl);
        "[revoked.crl]"
    };
    let yaml = format!(
        "listeners:\n  - {{ name: mqtts, kind: tls, bind: \"{}\" }}\n{}\
         tls:\n  cert: server.crt\n  key: server.key\n  client_ca: ca.crt\n  client_certs: {}\n  crls: {}\n{}\
         {}\
         policies: [policies/]\n\
         dev_certs: false\n{}",
        opts.bind,
        opts.listeners,
        opts.client_certs,
        crls,
        opts.tls_extra,
        opts.broker,
        opts.extra
    );
    std::fs::write(dir.path().join("moat.yaml"), &yaml).unwrap();
    let (running, addr) = start_from(dir.path(), opts.kernel_filter).await;
    Harness {
        running,
        addr,
        pki,
        dir,
        revoked,
        kernel_filter: opts.kernel_filter,
    }
}

/// Starts moat from `dir/moat.yaml` and its policies; returns it with its `mqtts` address.
async fn start_from(dir: &Path, kernel_filter: bool) -> (Running, SocketAddr) {
    let mut config = moat::ops::load::load_config(&dir.join("moat.yaml")).unwrap();
    config.limits.kernel_filter = kernel_filter;
    let policy = moat::ops::load::load_policy(&config).unwrap();
    let running = Server::start(config, policy).await.unwrap();
    let addr = running.local_addr("mqtts").unwrap();
    (running, addr)
}

impl Harness {
    /// Stops moat (a clean shutdown) and starts a new server from the same files: nothing moat
    /// kept in memory survives, as after a restart of the process. The listener gets a new port.
    pub async fn restart(self) -> Harness {
        let Harness {
            running,
            pki,
            dir,
            revoked,
            kernel_filter,
            ..
        } = self;
        running.shutdown().await;
        let (running, addr) = start_from(dir.path(), kernel_filter).await;
        Harness {
            running,
            addr,
            pki,
            dir,
            revoked,
            kernel_filter,
        }
    }

    /// A rustls client config trusting the test CA, optionally with a client certificate.
    pub fn client_config(&self, cert: Option<&Pem>) -> Arc<rustls::ClientConfig> {
        client_config(&self.pki.ca.cert, cert)
    }

    /// A raw TLS connection (no MQTT spoken yet).
    pub async fn tls(&self, cert: Option<&Pem>) -> TlsStream<TcpStream> {
        tls_connect(self.addr, self.client_config(cert))
            .await
            .unwrap()
    }

    /// A watcher subscribed to `#` directly on the embedded broker: what moat let through.
    pub async fn broker_watch(&self) -> BrokerWatch {
        BrokerWatch::start(&self.running).await
    }

    /// The bound address of another listener.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        self.running.local_addr(name).expect("no such listener")
    }

    /// The test CA file (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn upstream_connects(&self) -> u64 {
        self.running.stats().upstream_connects
    }
}

pub fn client_config(ca_pem: &str, cert: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(moat::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// Sends `bytes` and returns everything the server sends back until it closes the connection
/// (or `WAIT` passes: then `closed` is false).
pub async fn exchange(stream: &mut TlsStream<TcpStream>, bytes: &[u8]) -> (Vec<u8>, bool) {
    if !bytes.is_empty() {
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }
    read_until_close(stream, WAIT).await
}

pub async fn read_until_close(
    stream: &mut TlsStream<TcpStream>,
    wait: Duration,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads exactly `n` bytes or fails the test.
pub async fn read_exact<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("timed out")
        .expect("read");
    buf
}

/// The baseline packets of the red-team catalogue.
pub mod packets {
    /// v3.1.1 CONNECT, client id `c1`, given user/password, keepalive 60.
    pub fn connect_v4(client_id: &str, user: Option<&str>, pass: Option<&str>) -> Vec<u8> {
        let mut flags = 0x02u8;
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
        let mut payload = Vec::new();
        push_str(&mut payload, client_id);
        if let Some(u) = user {
            flags |= 0x80;
            push_str(&mut payload, u);
        }
        if let Some(p) = pass {
            flags |= 0x40;
            push_str(&mut payload, p);
        }
        body.extend_from_slice(&[flags, 0, 60]);
        body.extend(payload);
        frame(0x10, &body)
    }

    /// v5 CONNECT without properties.
    pub fn connect_v5(client_id: &str, user: Option<&str>, pass: Option<&str>) -> Vec<u8> {
        let mut flags = 0x02u8;
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5];
        let mut payload = Vec::new();
        push_str(&mut payload, client_id);
        if let Some(u) = user {
            flags |= 0x80;
            push_str(&mut payload, u);
        }
        if let Some(p) = pass {
            flags |= 0x40;
            push_str(&mut payload, p);
        }
        body.extend_from_slice(&[flags, 0, 60, 0]);
        body.extend(payload);
        frame(0x10, &body)
    }

    pub fn publish_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        push_str(&mut body, topic);
        body.extend_from_slice(payload);
        frame(0x30, &body)
    }

    pub fn push_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    pub fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![byte1];
        let mut len = body.len();
        loop {
            let mut b = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                b |= 0x80;
            }
            out.push(b);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }
}

/// A client connected straight to the embedded broker, subscribed to `#`.
pub struct BrokerWatch {
    pub rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    _task: tokio::task::JoinHandle<()>,
}

impl BrokerWatch {
    async fn start(running: &Running) -> BrokerWatch {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let target = running.broker();
        let mut opts = MqttOptions::new(
            "test-watch",
            target.v3.first_socket_addr().unwrap().ip().to_string(),
            target.v3.first_socket_addr().unwrap().port(),
        );
        opts.set_credentials(
            "watcher",
            target.credentials.load().password().unwrap_or(""),
        );
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client.clone();
            client.subscribe("#", QoS::AtMostOnce).await.unwrap();
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
        BrokerWatch { rx, _task: task }
    }

    /// Nothing arrived at the broker (checked after a marker message sent through moat).
    pub fn drain(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            got.push(m);
        }
        got
    }

    /// Waits for the next message seen by the broker.
    pub async fn next(&mut self) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// rumqttc (MQTT 3.1.1) through moat; returns the client and a channel of received publishes
/// once the CONNACK has arrived.
pub async fn rumqttc_v4(
    h: &Harness,
    id: &str,
    creds: Option<(&str, &str)>,
    cert: Option<&Pem>,
) -> Result<
    (
        rumqttc::AsyncClient,
        mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    ),
    String,
> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
    let mut opts = MqttOptions::new(id, "localhost", h.addr.port());
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        h.client_config(cert),
    )));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e.to_string()));
                    }
                    return;
                }
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .map_err(|_| "no CONNACK".to_string())?
        .map_err(|_| "event loop gone".to_string())??;
    Ok((client, rx))
}

/// rumqttc (MQTT 5.0) through moat.
pub async fn rumqttc_v5(
    h: &Harness,
    id: &str,
    creds: Option<(&str, &str)>,
) -> Result<
    (
        rumqttc::v5::AsyncClient,
        mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    ),
    String,
> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    use rumqttc::{TlsConfiguration, Transport};
    let mut opts = MqttOptions::new(id, "localhost", h.addr.port());
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        h.client_config(None),
    )));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).to_string();
                    let _ = tx.send((topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e.to_string()));
                    }
                    return;
                }
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .map_err(|_| "no CONNACK".to_string())?
        .map_err(|_| "event loop gone".to_string())??;
    Ok((client, rx))
}

/// Waits for the next message on a receiver of (topic, payload).
pub async fn recv(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> Option<(String, Vec<u8>)> {
    tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten()
}

/// Proves nothing reached the broker before now: publishes a marker through moat as alice and
/// returns everything the broker watcher saw before the marker.
pub async fn broker_saw_before_marker(
    h: &Harness,
    watch: &mut BrokerWatch,
) -> Vec<(String, Vec<u8>)> {
    let mut s = h.tls(None).await;
    s.write_all(&packets::connect_v4(
        "marker",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await
    .unwrap();
    assert_eq!(read_exact(&mut s, 4).await, [0x20, 0x02, 0x00, 0x00]);
    s.write_all(&packets::publish_qos0("test/marker", b"m"))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut before = Vec::new();
    loop {
        let m = watch.next().await.expect("marker never reached the broker");
        if m.0 == "test/marker" {
            return before;
        }
        before.push(m);
    }
}

/// A TCP connection to `addr` from the local address `src` (any of 127.0.0.0/8 works on
/// Linux without configuration), so tests can play several sources.
pub async fn tcp_from(src: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(src.parse().unwrap(), 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Connects from `src` and probes like [`raw_probe`]. moat refuses at admission with a reset,
/// which can arrive before the client's `connect` completes: that, too, is a refusal without a
/// byte (`Some(vec![])`).
pub async fn probe_from(src: &str, addr: SocketAddr, wait: Duration) -> Option<Vec<u8>> {
    match tcp_from(src, addr).await {
        Ok(mut tcp) => raw_probe(&mut tcp, wait).await,
        Err(e) if is_reset(&e) => Some(vec![]),
        Err(e) => panic!("connect from {src}: {e}"),
    }
}

/// A connection refused or reset by the peer.
pub fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// A TLS connection from the local address `src`.
pub async fn tls_from(h: &Harness, src: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(src, h.addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        WAIT,
        TlsConnector::from(h.client_config(None)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// Sends one byte of a would-be ClientHello and reads what comes back until the server closes:
/// `Some(bytes)` (a reset counts as a close), `None` if it stayed open for `wait`.
pub async fn raw_probe(tcp: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let _ = tcp.write_all(&[0x16]).await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a CONNECT over an open TLS stream and returns the CONNACK's return / reason code.
pub async fn connack_code(s: &mut TlsStream<TcpStream>, connect: &[u8]) -> Option<u8> {
    connack(s, connect)
        .await
        .and_then(|body| body.get(1).copied())
}

/// Sends a CONNECT and returns the CONNACK's body (flags, code, v5 properties).
pub async fn connack(s: &mut TlsStream<TcpStream>, connect: &[u8]) -> Option<Vec<u8>> {
    s.write_all(connect).await.ok()?;
    s.flush().await.ok()?;
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    assert_eq!(head[0], 0x20, "expected a CONNACK, got {head:02x?}");
    let mut body = vec![0u8; usize::from(head[1])];
    tokio::time::timeout(WAIT, s.read_exact(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

/// Starts `cmd` (`moat run`, or a shell that execs it) with info logging (unless `cmd` sets or
/// removes `RUST_LOG` itself), and hands its log lines over a channel, read by a thread the
/// test owns (it ends when the child closes stderr). stderr is a pipe, so moat writes no colour
/// codes (tests/operator_output.rs checks it).
pub fn spawn_logged(
    mut cmd: std::process::Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, lines)
}

/// Sends the signal `name` (`-HUP`, `-TERM`) to `child` with kill(1).
pub fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads log lines (within [`WAIT`]) until one contains every `needle`; the lines read on the
/// way are kept in `seen`, and shown if none comes.
pub fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    needles: &[&str],
) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {needles:?}; saw {seen:#?}"));
        seen.push(line.clone());
        if needles.iter().all(|n| line.contains(n)) {
            return line;
        }
    }
}
