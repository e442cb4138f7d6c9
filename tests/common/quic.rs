//! QUIC test clients (quinn, in-process): the production client config, or one with a chosen
//! ALPN for refusal tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::{Harness, WAIT};

/// A client endpoint on loopback.
pub fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// moat's own client configuration (what `moat tunnel` uses), trusting the test CA.
pub fn client_config(h: &Harness) -> quinn::ClientConfig {
    moat::transport::quic_client::client_config(&h.ca_file(), None).unwrap()
}

/// A client configuration offering exactly `alpn` (may be empty), with a short idle timeout
/// so a refused or ignored attempt ends quickly.
pub fn client_config_alpn(ca_pem: &str, alpn: &[&[u8]], idle: Duration) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(moat::transport::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let crypto = QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(idle.try_into().unwrap()));
    config.transport_config(Arc::new(transport));
    config
}

/// Connects with `config` (bounded by `WAIT`).
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    config: quinn::ClientConfig,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let connecting = endpoint.connect_with(config, addr, "localhost").unwrap();
    tokio::time::timeout(WAIT, connecting)
        .await
        .expect("QUIC connect neither finished nor failed")
}

/// A connected MQTT stream: connection plus its one bidirectional stream.
pub struct QuicMqtt {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl QuicMqtt {
    pub async fn open(endpoint: &quinn::Endpoint, addr: SocketAddr, h: &Harness) -> QuicMqtt {
        let conn = connect(endpoint, addr, client_config(h)).await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        QuicMqtt { conn, send, recv }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut buf))
            .await
            .expect("timed out")
            .expect("read");
        buf
    }

    /// Everything until the server finishes the stream (or `WAIT`: then `closed` is false).
    pub async fn read_until_close(&mut self) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.recv.read(&mut buf)).await {
                Err(_) => return (got, false),
                Ok(Ok(None)) | Ok(Err(_)) => return (got, true),
                Ok(Ok(Some(n))) => got.extend_from_slice(&buf[..n]),
            }
        }
    }
}
