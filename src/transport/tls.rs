//! TLS termination (rustls, ring as the only crypto provider).
//!
//! Reads the `tls:` section's files once per load into a [`Material`] (every file through one
//! bounded reader, each error naming its file; CRLs as PEM or DER through `crl.rs`), builds each
//! listener's `ServerConfig` from it (TLS 1.2 and 1.3 or 1.3 only, AEAD suites only as rustls
//! ships them, client certificates none/optional/required against `client_ca`, CRLs with
//! `tls.crl_expired`, ALPN `mqtt`, no early data, no session resumption) and runs one handshake
//! under a deadline. Loading and building are separate so that a reload builds every listener's
//! new configuration before it swaps any (`transport/material.rs`). A presented but invalid client certificate always fails the handshake, also in
//! `optional` mode. The stream itself is [`ServerTls`] (`tls_stream.rs`, rustls' unbuffered
//! API: no buffer held while idle); tokio-rustls is only used for clients (tests, and moat's
//! own connection to a broker over TLS: [`upstream_client_config`]).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use super::crl::{self, CrlFile, Revocations};
use super::{ClientCert, Peer, ServerTls, TransportKind};
use crate::config::{ClientCerts, CrlExpired, TlsSettings, TlsVersion};

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
    /// A TLS file (certificate chain, key, client CA, CRL) could not be read or is unusable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the material (no usable suites, …).
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
    Material::load(tls)?.server_config(tls, profile)
}

/// Largest TLS file read (certificate, key, CA bundle, CRL): far above a real one (a CRL of a
/// few hundred thousand entries), small enough that a wrong path fails fast.
pub const MAX_TLS_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The TLS files of the `tls:` section, read and checked together: what every listener's
/// handshakes are built from. Loaded at start, by `moat check`, and on every reload; a reload
/// swaps it in only when all of it loaded.
pub struct Material {
    /// Server chain and key, already checked to belong together.
    certified: Arc<CertifiedKey>,
    /// Trust anchors for client certificates (`client_ca`), when configured.
    roots: Option<Arc<RootCertStore>>,
    /// The CRL files, in `crls:` order.
    crl_files: Vec<CrlFile>,
    /// What an expired CRL means for handshakes.
    crl_expired: CrlExpired,
    /// notAfter (Unix seconds) of the server certificate, and the earliest of the client CA
    /// file's certificates: the expiry metrics.
    expiry: Expiry,
}

/// When the TLS material stops working: Unix seconds, `None` when unknown or not configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    /// notAfter of the server (leaf) certificate.
    pub server: Option<i64>,
    /// The earliest notAfter among the `client_ca` certificates.
    pub client_ca: Option<i64>,
}

// === impl Material ===

impl Material {
    /// Reads every file `tls` names. Each error names its file: a missing or unreadable file, a
    /// certificate file without a certificate, a key that does not belong to the certificate,
    /// a CRL file without a CRL (PEM and DER are read) or with one rustls cannot use.
    pub fn load(tls: &TlsSettings) -> Result<Material, TlsError> {
        let provider = provider();
        let chain = read_certs(&tls.cert)?;
        let mut expiry = Expiry {
            server: chain
                .first()
                .and_then(|c| super::cert_info::not_after(c).ok()),
            client_ca: None,
        };
        let key_bytes = read_file(&tls.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                pem_err(&tls.key, "no private key in file")
            }
            other => pem_err(&tls.key, other),
        })?;
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            let reason = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "the private key does not belong to the certificate in {}",
                    tls.cert.display()
                ),
                other => other.to_string(),
            };
            pem_err(&tls.key, reason)
        })?;
        let roots = match &tls.client_ca {
            None => None,
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                let certs = read_certs(ca)?;
                expiry.client_ca = certs
                    .iter()
                    .filter_map(|c| super::cert_info::not_after(c).ok())
                    .min();
                for cert in certs {
                    roots.add(cert).map_err(|e| pem_err(ca, e))?;
                }
                Some(Arc::new(roots))
            }
        };
        let mut crl_files = Vec::with_capacity(tls.crls.len());
        for path in &tls.crls {
            let file = crl::parse_file(path, &read_file(path)?).map_err(|e| pem_err(path, e))?;
            if let Some(roots) = &roots {
                // webpki reads CRLs more strictly than x509-parser (version 2 only, no delta or
                // indirect CRLs); asked per file, so its refusal names the file.
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .with_crls(file.ders.iter().cloned())
                    .build()
                    .map_err(|e| pem_err(path, e))?;
            }
            crl_files.push(file);
        }
        Ok(Material {
            certified: Arc::new(certified),
            roots,
            crl_files,
            crl_expired: tls.crl_expired,
            expiry,
        })
    }

    /// The rustls server configuration of a listener with these settings (its own
    /// `client_certs` and `min_version`) and profile.
    pub fn server_config(
        &self,
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
        let builder = match (&tls.client_certs, &self.roots) {
            (ClientCerts::None, _) => builder.with_no_client_auth(),
            (mode, Some(roots)) => {
                // Once any CRL is configured, rustls refuses a certificate whose revocation
                // status no CRL decides (an issuer without a CRL): unknown is not "good".
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                        .with_crls(self.crl_files.iter().flat_map(|f| f.ders.iter().cloned()));
                if matches!(mode, ClientCerts::Optional) {
                    verifier = verifier.allow_unauthenticated();
                }
                if self.crl_expired == CrlExpired::Refuse {
                    verifier = verifier.enforce_revocation_expiration();
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
        let mut config =
            builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(self.certified.clone())));
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
        // No session resumption: every connection proves its certificate again, so a CRL update
        // or a removed client CA takes effect on the next connection, not when a ticket expires
        // hours later. It also saves work per handshake: rustls would otherwise send two TLS 1.3
        // tickets (and fill a 256-entry cache that is useless with thousands of devices); see
        // BENCHMARKS.md.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }

    /// When the server certificate and the client CA expire.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Every certificate the CRLs revoke, indexed for live sessions.
    pub fn revocations(&self) -> Revocations {
        Revocations::of(&self.crl_files)
    }

    /// One line per CRL: file, issuer, revoked count, nextUpdate, and whether it has expired at
    /// `now` (unix seconds).
    pub fn crl_report(&self, now: i64) -> Vec<CrlLine> {
        let mut lines = Vec::new();
        for file in &self.crl_files {
            for crl in &file.crls {
                lines.push(CrlLine {
                    path: file.path.clone(),
                    issuer: crl.issuer.clone(),
                    revoked: crl.revoked,
                    next_update: crl.next_update_text(),
                    expired: crl.expired_at(now),
                });
            }
        }
        lines
    }

    /// What an expired CRL means here.
    pub fn crl_expired(&self) -> CrlExpired {
        self.crl_expired
    }
}

/// One CRL as `moat check` and the load log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlLine {
    /// The file that holds it.
    pub path: PathBuf,
    /// Its issuer, as text.
    pub issuer: String,
    /// Certificates it revokes.
    pub revoked: usize,
    /// Its nextUpdate (RFC 3339), or "not given".
    pub next_update: String,
    /// Whether it is past its nextUpdate.
    pub expired: bool,
}

/// Runs the TLS handshake under a deadline and reads what the peer proved. The peer's kind is
/// [`TransportKind::Tls`]; a WebSocket front changes it after the upgrade. `revocable`: keep the
/// client certificate's issuer and serial (listeners with CRLs), so a reload can end the session.
pub async fn accept(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    addr: SocketAddr,
    listener: Arc<str>,
    deadline: Duration,
    revocable: bool,
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
    // In TLS 1.3 the client speaks last (its Finished), and moat sends no session tickets, so
    // nothing of moat's carries the ACK of that flight: Linux delays it (the handshake left
    // the socket in interactive mode), and a client with Nagle on (MQTT.js, most device
    // stacks) holds its CONNECT until it comes, 40 ms later. Acknowledge it now.
    let _ = socket2::SockRef::from(tls.get_ref()).set_tcp_quickack(true);
    let conn = tls.connection();
    let (cert_cn, cert) = leaf_identity(conn.peer_certificates(), revocable)?;
    let peer = Peer {
        addr,
        listener,
        kind: TransportKind::Tls,
        sni,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        cert_cn,
        cert,
        via: None,
    };
    Ok((tls, peer))
}

/// The CN of a verified client certificate chain's leaf, if a chain was presented, and (when
/// `revocable`) what a CRL names it by. One parse of the leaf.
pub(crate) fn leaf_identity(
    chain: Option<&[CertificateDer<'_>]>,
    revocable: bool,
) -> Result<(Option<String>, Option<Box<ClientCert>>), TlsError> {
    let Some(leaf) = chain.and_then(|c| c.first()) else {
        return Ok((None, None));
    };
    let facts = super::cert_facts(leaf.as_ref()).map_err(|e| TlsError::Identity(e.to_string()))?;
    let cert = revocable.then(|| Box::new(ClientCert::new(&facts.issuer, &facts.serial)));
    Ok((facts.common_name, cert))
}

/// The rustls client configuration moat uses toward the broker (`broker.upstream.tls`): `ca`
/// (PEM) is the only trust anchor, `identity` an optional client certificate chain and key.
/// Read once at start; every error names its file.
pub fn upstream_client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|e| pem_err(ca, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key_bytes = read_file(key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    pem_err(key, "no private key in file")
                }
                other => pem_err(key, other),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| pem_err(key, e))?
        }
    };
    // No ALPN: a broker with an ALPN list of its own would refuse any name it does not list,
    // and a broker's MQTT port needs none.
    config.enable_early_data = false;
    Ok(Arc::new(config))
}

/// Reads a whole TLS file: a regular file (a FIFO would hang start or reload) of at most
/// [`MAX_TLS_FILE_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| pem_err(path, e))?;
    if !meta.is_file() {
        return Err(pem_err(path, "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| pem_err(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_TLS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| pem_err(path, e))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_TLS_FILE_BYTES {
        return Err(pem_err(
            path,
            format!("larger than {MAX_TLS_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

fn pem_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in file"));
    }
    Ok(certs)
}
