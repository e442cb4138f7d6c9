//! Connections for the load generator: one MQTT byte stream per connection over the chosen
//! front door, and an MQTT CONNECT/CONNACK built with moat's codec.
//!
//! Front doors (`--transport`): TCP from a chosen loopback source with optional TLS (rustls,
//! ring, a CA file, no session resumption); WebSocket over that TCP or TLS (tokio-tungstenite,
//! client role, subprotocol `mqtt`, one binary message per write, read through moat's own
//! [`WsBytes`] adapter); or one bidirectional stream on a QUIC connection (quinn, ALPN `mqtt`,
//! moat's own [`quic_client::client_config`]), from one client endpoint per source address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use moat::mqtt::{self, Connect, Packet, ProtocolVersion};
use moat::transport::{quic_client, WsBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame the generator accepts from a server.
const MAX_FRAME: usize = 1 << 20;

/// A byte stream: plain TCP, TLS, a WebSocket or a QUIC stream.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Which kind of moat listener (or peer) the generator talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// MQTT over TLS (plain TCP without `--ca`).
    Tls,
    /// MQTT over WebSocket over TLS (plain `ws` without `--ca`).
    Wss,
    /// MQTT over one QUIC stream (needs `--ca`: QUIC is always TLS 1.3).
    Quic,
}

// === impl Transport ===

impl Transport {
    /// The name on the command line (and in the JSON line).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::Wss => "wss",
            Transport::Quic => "quic",
        }
    }
}

/// How to reach the target, as chosen on the command line.
pub(crate) struct Options<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) ca: Option<&'a Path>,
    pub(crate) sni: &'a str,
    pub(crate) ws_path: &'a str,
    pub(crate) version: ProtocolVersion,
    pub(crate) credentials: Option<(String, String)>,
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// The layers between the socket and the MQTT bytes.
    via: Via,
    /// MQTT version of every CONNECT.
    pub(crate) version: ProtocolVersion,
    /// User name and password, if the server wants them.
    pub(crate) credentials: Option<(String, String)>,
    /// Deadline for one connection set-up (transport + CONNACK).
    pub(crate) timeout: Duration,
}

/// The transport layers of a [`Target`].
#[derive(Clone)]
enum Via {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls(TlsConnector, ServerName<'static>),
    /// A WebSocket upgrade over TCP (`ws`) or TLS (`wss`, ALPN `http/1.1`) to `uri`.
    Ws {
        tls: Option<(TlsConnector, ServerName<'static>)>,
        uri: String,
    },
    /// One bidirectional stream on a QUIC connection.
    Quic(Arc<Quic>),
}

/// QUIC client state shared by every connection of a run.
struct Quic {
    /// moat's client configuration (TLS 1.3, ALPN `mqtt`, the CA file as the only root).
    config: quinn::ClientConfig,
    /// TLS server name.
    server_name: String,
    /// One client endpoint (UDP socket and its driver task) per local address, created on first
    /// use inside the runtime; many connections share one, as quinn intends. The endpoints end
    /// with the process.
    endpoints: Mutex<HashMap<IpAddr, quinn::Endpoint>>,
}

/// What a QUIC connection attempt from a denied source ran into.
pub(crate) enum Probe {
    /// The server finished the handshake: not refused.
    Answered,
    /// The server closed the attempt (CONNECTION_REFUSED or any close before the handshake).
    Refused,
    /// No answer before the deadline: the server dropped the attempt (moat's way for a denied
    /// source, nothing to amplify).
    Ignored,
}

// === impl Target ===

impl Target {
    pub(crate) fn new(o: Options<'_>) -> anyhow::Result<Target> {
        let tls = |alpn: &[&[u8]]| -> anyhow::Result<Option<(TlsConnector, ServerName<'static>)>> {
            let Some(ca) = o.ca else { return Ok(None) };
            let mut config = tls_config(ca)?;
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            let name = ServerName::try_from(o.sni.to_owned())?;
            Ok(Some((TlsConnector::from(Arc::new(config)), name)))
        };
        let via = match o.transport {
            Transport::Tls => match tls(&[])? {
                None => Via::Tcp,
                Some((connector, name)) => Via::Tls(connector, name),
            },
            Transport::Wss => {
                let tls = tls(&[b"http/1.1"])?;
                let uri = match &tls {
                    Some(_) => format!("wss://{}:{}{}", o.sni, o.addr.port(), o.ws_path),
                    None => format!("ws://{}{}", o.addr, o.ws_path),
                };
                Via::Ws { tls, uri }
            }
            Transport::Quic => {
                let ca =
                    o.ca.context("--transport quic needs --ca (QUIC is always TLS)")?;
                let config = quic_client::client_config(ca, None)?;
                Via::Quic(Arc::new(Quic {
                    config,
                    server_name: o.sni.to_owned(),
                    endpoints: Mutex::new(HashMap::new()),
                }))
            }
        };
        Ok(Target {
            addr: o.addr,
            via,
            version: o.version,
            credentials: o.credentials,
            timeout: Duration::from_secs(10),
        })
    }

    /// Whether connections are QUIC (UDP: no TCP-level refusal to count).
    pub(crate) fn is_quic(&self) -> bool {
        matches!(self.via, Via::Quic(_))
    }

    /// The transport up to the first MQTT byte: TCP (from `source` when given) plus TLS and/or
    /// the WebSocket upgrade, or a QUIC handshake plus one bidirectional stream.
    pub(crate) async fn open(&self, source: Option<IpAddr>) -> anyhow::Result<Box<dyn Io>> {
        let work = async {
            let io: Box<dyn Io> = match &self.via {
                Via::Tcp => Box::new(tcp_connect(self.addr, source).await?),
                Via::Tls(connector, name) => {
                    let tcp = tcp_connect(self.addr, source).await?;
                    Box::new(connector.connect(name.clone(), tcp).await?)
                }
                Via::Ws { tls: None, uri } => {
                    let tcp = tcp_connect(self.addr, source).await?;
                    Box::new(ws_upgrade(uri, tcp).await?)
                }
                Via::Ws {
                    tls: Some((connector, name)),
                    uri,
                } => {
                    let tcp = tcp_connect(self.addr, source).await?;
                    let tls = connector.connect(name.clone(), tcp).await?;
                    Box::new(ws_upgrade(uri, tls).await?)
                }
                Via::Quic(quic) => {
                    let conn = quic.connect(self.addr, source).await?;
                    // The streams keep the connection open; dropping both closes it.
                    let (send, recv) = conn.open_bi().await?;
                    Box::new(tokio::io::join(recv, send))
                }
            };
            anyhow::Ok(io)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("connection set-up timed out"))?
    }

    /// One QUIC connection attempt from `source`, waiting at most `wait` for an answer.
    pub(crate) async fn quic_probe(
        &self,
        source: Option<IpAddr>,
        wait: Duration,
    ) -> anyhow::Result<Probe> {
        let Via::Quic(quic) = &self.via else {
            bail!("not a QUIC target");
        };
        match tokio::time::timeout(wait, quic.connect(self.addr, source)).await {
            Err(_) => Ok(Probe::Ignored),
            Ok(Ok(conn)) => {
                conn.close(quinn::VarInt::from_u32(0), b"probe");
                Ok(Probe::Answered)
            }
            Ok(Err(e)) => match e.downcast_ref::<quinn::ConnectionError>() {
                Some(quinn::ConnectionError::TimedOut) => Ok(Probe::Ignored),
                Some(
                    quinn::ConnectionError::ConnectionClosed(_)
                    | quinn::ConnectionError::ApplicationClosed(_)
                    | quinn::ConnectionError::Reset,
                ) => Ok(Probe::Refused),
                _ => Err(e),
            },
        }
    }

    /// [`Target::open`] plus CONNECT/CONNACK; the session is ready for PUBLISH/SUBSCRIBE.
    pub(crate) async fn session(
        &self,
        source: Option<IpAddr>,
        client_id: &str,
        keep_alive: u16,
    ) -> anyhow::Result<Session> {
        let io = self.open(source).await?;
        let mut s = Session::new(io, self.version);
        let connect = Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive,
            client_id: client_id.into(),
            will: None,
            username: self.credentials.as_ref().map(|(u, _)| u.as_str().into()),
            password: self
                .credentials
                .as_ref()
                .map(|(_, p)| Bytes::copy_from_slice(p.as_bytes())),
            properties: Default::default(),
        };
        let mut out = BytesMut::new();
        connect.encode(&mut out)?;
        let work = async {
            s.io.write_all(&out).await?;
            s.io.flush().await?;
            match s.next().await? {
                Some(Packet::ConnAck(ack)) if ack.code == 0 => Ok(()),
                Some(Packet::ConnAck(ack)) => Err(ConnAckRefused(ack.code).into()),
                other => bail!("expected CONNACK, got {other:?}"),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("no CONNACK in time"))??;
        Ok(s)
    }
}

/// The server answered CONNECT with a CONNACK that refuses the session (its code): a deliberate
/// answer, counted apart from connections that broke.
#[derive(Debug)]
pub(crate) struct ConnAckRefused(pub(crate) u8);

// === impl ConnAckRefused ===

impl std::fmt::Display for ConnAckRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CONNACK code {:#04x}", self.0)
    }
}

impl std::error::Error for ConnAckRefused {}

/// The rustls client configuration of TLS and WSS targets: `ca` is the only root, every
/// handshake is a full one.
fn tls_config(ca: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake is a full one: the handshake-rate figure is about signatures and key
    // exchange, not ticket lookups.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The WebSocket client handshake to `uri`, offering the `mqtt` subprotocol.
async fn ws_upgrade<S>(uri: &str, stream: S) -> anyhow::Result<WsBytes<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = uri.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    // Each write leaves at once as one binary message, as a device's would; tungstenite's
    // default holds up to 128 KiB until a flush.
    let config = WebSocketConfig::default().write_buffer_size(0);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(WsBytes::new(ws))
}

// === impl Quic ===

impl Quic {
    /// A QUIC connection (handshake done) from `source`'s endpoint.
    async fn connect(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> anyhow::Result<quinn::Connection> {
        let endpoint = self.endpoint(addr, source)?;
        let connecting = endpoint.connect_with(self.config.clone(), addr, &self.server_name)?;
        Ok(connecting.await?)
    }

    /// The endpoint bound to `source` (or, without one, to the loopback address of a loopback
    /// target, else the unspecified address), created on first use.
    fn endpoint(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> anyhow::Result<quinn::Endpoint> {
        let local = source.unwrap_or(match addr.ip() {
            ip if ip.is_loopback() => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        let mut endpoints = self
            .endpoints
            .lock()
            .map_err(|_| anyhow!("QUIC endpoint table poisoned"))?;
        if let Some(endpoint) = endpoints.get(&local) {
            return Ok(endpoint.clone());
        }
        let bind = SocketAddr::new(local, 0);
        let endpoint = quinn::Endpoint::client(bind)
            .with_context(|| format!("binding a QUIC endpoint on {bind}"))?;
        endpoints.insert(local, endpoint.clone());
        Ok(endpoint)
    }
}

/// Connects from `source` (bind before connect) so that many connections can share one
/// destination without running out of ephemeral ports.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The `n`th loopback source address of a family (`family` picks the second octet, so two
/// modes never share addresses); 250 connections per address keep ports plentiful.
pub(crate) fn source(family: u8, n: usize) -> IpAddr {
    let host = n / 250 + 1;
    IpAddr::V4(Ipv4Addr::new(
        127,
        family,
        ((host >> 8) & 0xff) as u8,
        (host & 0xff) as u8,
    ))
}

/// An MQTT connection: a stream and the bytes read from it but not yet framed.
pub(crate) struct Session {
    pub(crate) io: Box<dyn Io>,
    buf: BytesMut,
    pub(crate) version: ProtocolVersion,
}

// === impl Session ===

impl Session {
    fn new(io: Box<dyn Io>, version: ProtocolVersion) -> Self {
        Session {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            version,
        }
    }

    /// Splits into a framed reader and the write half.
    pub(crate) fn split(self) -> (Reader, tokio::io::WriteHalf<Box<dyn Io>>) {
        let (rd, wr) = tokio::io::split(self.io);
        (
            Reader {
                io: rd,
                buf: self.buf,
                version: self.version,
            },
            wr,
        )
    }

    /// The next packet; `None` on a clean close.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(p) = take_frame(&mut self.buf, self.version)? {
                return Ok(Some(p));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// The read half of a [`Session`].
pub(crate) struct Reader {
    io: tokio::io::ReadHalf<Box<dyn Io>>,
    buf: BytesMut,
    version: ProtocolVersion,
}

// === impl Reader ===

impl Reader {
    /// Every packet already buffered; reads once when none is. Empty on a clean close.
    pub(crate) async fn batch(&mut self, into: &mut Vec<Packet>) -> anyhow::Result<bool> {
        loop {
            while let Some(p) = take_frame(&mut self.buf, self.version)? {
                into.push(p);
            }
            if !into.is_empty() {
                return Ok(true);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
    }
}

fn take_frame(buf: &mut BytesMut, version: ProtocolVersion) -> anyhow::Result<Option<Packet>> {
    let Some(h) = mqtt::check(buf, MAX_FRAME)? else {
        return Ok(None);
    };
    if buf.len() < h.frame_len() {
        return Ok(None);
    }
    let frame = buf.split_to(h.frame_len()).freeze();
    Ok(Some(mqtt::decode(frame, version)?))
}
