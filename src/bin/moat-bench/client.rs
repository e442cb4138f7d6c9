//! Connections for the load generator: TCP from a chosen loopback source, optional TLS (rustls,
//! ring, a CA file, no session resumption), and an MQTT CONNECT/CONNACK built with moat's codec.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use moat::mqtt::{self, Connect, Packet, ProtocolVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Largest frame the generator accepts from a server.
const MAX_FRAME: usize = 1 << 20;

/// A byte stream: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// TLS, when the target speaks it.
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    /// MQTT version of every CONNECT.
    pub(crate) version: ProtocolVersion,
    /// User name and password, if the server wants them.
    pub(crate) credentials: Option<(String, String)>,
    /// Deadline for one connection set-up (TCP + TLS + CONNACK).
    pub(crate) timeout: Duration,
}

// === impl Target ===

impl Target {
    pub(crate) fn new(
        addr: SocketAddr,
        ca: Option<&Path>,
        sni: &str,
        version: ProtocolVersion,
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<Target> {
        let tls = match ca {
            None => None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("reading {}", ca.display()))?
                {
                    roots.add(cert?)?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                // Every handshake is a full one: the handshake-rate figure is about signatures
                // and key exchange, not ticket lookups.
                config.resumption = rustls::client::Resumption::disabled();
                let name = ServerName::try_from(sni.to_owned())?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Target {
            addr,
            tls,
            version,
            credentials,
            timeout: Duration::from_secs(10),
        })
    }

    /// TCP (from `source` when given) and, for a TLS target, a full handshake.
    pub(crate) async fn open(&self, source: Option<IpAddr>) -> anyhow::Result<Box<dyn Io>> {
        let work = async {
            let tcp = tcp_connect(self.addr, source).await?;
            let io: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            };
            anyhow::Ok(io)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("connection set-up timed out"))?
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
                Some(Packet::ConnAck(ack)) => bail!("CONNACK code {:#04x}", ack.code),
                other => bail!("expected CONNACK, got {other:?}"),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("no CONNACK in time"))??;
        Ok(s)
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
