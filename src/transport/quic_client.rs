//! The client side of MQTT over QUIC, for `moat tunnel` (and tests): TLS 1.3 with ALPN `mqtt`,
//! the server verified against a CA file, optionally a client certificate.
//!
//! Kept beside the server side so both ends agree on one set of choices (ALPN, no 0-RTT, one
//! bidirectional stream). The client never accepts streams from the server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::VarInt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::quic::QuicError;
use super::tls::{provider, TlsError, ALPN_MQTT};

/// How often the client pings an idle connection, so NAT bindings and the server's idle timeout
/// do not close it while the MQTT client is quiet.
pub const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Idle timeout the client asks for (the smaller of both ends' values applies).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a quinn client configuration: `ca_file` (PEM) is the only trust anchor, `identity` is
/// an optional client certificate chain and key (PEM files).
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<quinn::ClientConfig, QuicError> {
    let pem_err = |path: &Path, e: &dyn std::fmt::Display| {
        QuicError::Tls(TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| pem_err(ca_file, &e))? {
        let cert = cert.map_err(|e| pem_err(ca_file, &e))?;
        roots.add(cert).map_err(|e| pem_err(ca_file, &e))?;
    }
    if roots.is_empty() {
        return Err(pem_err(ca_file, &"no certificate in file"));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| QuicError::Config(e.to_string()))?
        }
    };
    tls.alpn_protocols = vec![ALPN_MQTT.to_vec()];
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(CLIENT_IDLE_TIMEOUT)
        .map_err(|e| QuicError::Config(e.to_string()))?;
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        .keep_alive_interval(Some(CLIENT_KEEP_ALIVE))
        .max_idle_timeout(Some(idle));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
