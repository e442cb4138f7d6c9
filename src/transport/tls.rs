//! TLS termination (rustls, ring as the only crypto provider).
//!
//! Builds the `ServerConfig` from the `tls:` section (TLS 1.2 and 1.3 or 1.3 only, AEAD suites
//! only as rustls ships them, client certificates none/optional/required against `client_ca`,
//! CRLs, ALPN `mqtt`, no early data, no session resumption) and runs one handshake under a
//! deadline. A presented but invalid client certificate always fails the handshake, also in
//! `optional` mode. The stream itself is [`ServerTls`] (`tls_stream.rs`, rustls' unbuffered
//! API: no buffer held while idle); tokio-rustls is only used for clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use super::{Peer, ServerTls, TransportKind};
use crate::config::{ClientCerts, TlsSettings, TlsVersion};

/// ALPN protocol id for MQTT (also what EMQX and AWS IoT use).
pub const ALPN_MQTT: &[u8] = b"mqtt";
/// ALPN protocol id for HTTP/1.1, the only HTTP a WebSocket upgrade may use here.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// What a listener's TLS offers: the ALPN list and, for QUIC, the TLS 1.3 floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// MQTT over TLS: ALPN `mqtt` (or none).
    Mqtt,
    /// WebSocket over TLS: ALPN `http/1.1` (or none); `mqtt` and `h2` are refused.
    WebSocket,
    /// One port for both: `mqtt` → raw MQTT, `http/1.1` or none → WebSocket.
    Routed,
    /// QUIC: TLS 1.3 only, whatever `min_version` says, and ALPN `mqtt` is mandatory (RFC 9001 §8.1).
    Quic,
}

/// Why a TLS configuration could not be built or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the material (key does not match, no usable suites, …).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The client did not finish the handshake in time.
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake failed (bad certificate, protocol version, ALPN, …).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The verified client certificate does not carry exactly one usable common name.
    #[error("client certificate identity: {0}")]
    Identity(String),
}

/// The one crypto provider moat uses everywhere.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server configuration for a TLS listener.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(tls, Profile::Mqtt)
}

/// Builds the rustls server configuration for a listener of the given profile: same
/// certificates, client-certificate policy and CRLs everywhere, ALPN and versions per profile.
pub fn server_config_for(
    tls: &TlsSettings,
    profile: Profile,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match (tls.min_version, profile) {
        (_, Profile::Quic) | (TlsVersion::V1_3, _) => &[&rustls::version::TLS13],
        (TlsVersion::V1_2, _) => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&tls.client_certs, &tls.client_ca) {
        (ClientCerts::None, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let mut crls = Vec::new();
            for path in &tls.crls {
                crls.extend(read_crls(path)?);
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .with_crls(crls);
            if matches!(mode, ClientCerts::Optional) {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => {
            return Err(TlsError::Config(
                "client_certs needs client_ca: the CA that signs client certificates".into(),
            ))
        }
    };
    let chain = read_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| TlsError::Pem {
        path: tls.key.clone(),
        reason: e.to_string(),
    })?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // A client that offers ALPN must offer one of ours; one that offers none is served (most
    // devices and mosquitto do not send ALPN). Cross-protocol ALPN is refused with
    // no_application_protocol (ALPACA): `h2` anywhere, `http/1.1` on MQTT, `mqtt` on WSS.
    config.alpn_protocols = match profile {
        Profile::Mqtt | Profile::Quic => vec![ALPN_MQTT.to_vec()],
        Profile::WebSocket => vec![ALPN_HTTP11.to_vec()],
        Profile::Routed => vec![ALPN_MQTT.to_vec(), ALPN_HTTP11.to_vec()],
    };
    // No 0-RTT: replayable CONNECT + PUBLISH would be an attack, not a feature.
    config.max_early_data_size = 0;
    // No session resumption: every connection proves its certificate again, so a CRL update or
    // a removed client CA takes effect on the next connection, not when a ticket expires hours
    // later. It also saves work per handshake: rustls would otherwise send two TLS 1.3 tickets
    // (and fill a 256-entry cache that is useless with thousands of devices); see BENCHMARKS.md.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Runs the TLS handshake under a deadline and reads what the peer proved. The peer's kind is
/// [`TransportKind::Tls`]; a WebSocket front changes it after the upgrade.
pub async fn accept(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    deadline: Duration,
) -> Result<(ServerTls, Peer), TlsError> {
    // Boxed: the handshake state (a whole TLS connection in mid-handshake) lives on the heap
    // only while the handshake runs, instead of widening every connection task for its lifetime.
    let (tls, sni) = Box::pin(tokio::time::timeout(
        deadline,
        ServerTls::accept(config, stream),
    ))
    .await
    .map_err(|_| TlsError::HandshakeTimeout(deadline))?
    .map_err(TlsError::Handshake)?;
    let conn = tls.connection();
    let cert_cn = leaf_common_name(conn.peer_certificates())?;
    let peer = Peer {
        addr,
        listener,
        kind: TransportKind::Tls,
        sni,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        cert_cn,
        via: None,
    };
    Ok((tls, peer))
}

/// The CN of a verified client certificate chain's leaf, if a chain was presented.
pub(crate) fn leaf_common_name(
    chain: Option<&[CertificateDer<'_>]>,
) -> Result<Option<String>, TlsError> {
    match chain.and_then(|c| c.first()) {
        Some(leaf) => crate::certs::cert_common_name(leaf.as_ref())
            .map_err(|e| TlsError::Identity(e.to_string())),
        None => Ok(None),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate in file".into()));
    }
    Ok(certs)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))
}
