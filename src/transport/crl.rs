//! Certificate revocation lists: one `tls.crls` file read as PEM or DER, every CRL in it parsed,
//! and the index of revoked certificates live sessions are checked against after a reload.
//!
//! Why separate: a CRL file that yields no CRL must be an error that names the file. An empty
//! list is not "nothing revoked", it switches revocation checking off (rustls checks nothing
//! when it is given no CRL): fail open. So a file that is empty, text, a certificate, or a CRL
//! that does not parse is refused here, and `moat check`, start and reload all come through this
//! file. Parsing is x509-parser's; webpki's own stricter reading happens in `tls.rs`, where the
//! client CA is at hand. What this file must not do: decide what an expired CRL means (that is
//! `tls.crl_expired`, applied in `tls.rs`), log, or touch anything but the bytes it is given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateRevocationListDer;

use super::peer::ClientCert;

/// The CRLs of one file, with what the operator needs to see about each.
#[derive(Debug)]
pub(crate) struct CrlFile {
    /// The file, as moat.yaml named it.
    pub(crate) path: PathBuf,
    /// Each CRL as DER, for rustls.
    pub(crate) ders: Vec<CertificateRevocationListDer<'static>>,
    /// What each CRL says, in the same order.
    pub(crate) crls: Vec<CrlInfo>,
}

/// What one CRL says.
#[derive(Debug, Clone)]
pub(crate) struct CrlInfo {
    /// The issuer (the CA that signed it), as text for logs.
    pub(crate) issuer: String,
    /// How many certificates it revokes.
    pub(crate) revoked: usize,
    /// When the issuer promised the next one (unix seconds); `None` when the CRL does not say.
    pub(crate) next_update: Option<i64>,
}

// === impl CrlInfo ===

impl CrlInfo {
    /// Whether the CRL is past its nextUpdate at `now` (unix seconds).
    pub(crate) fn expired_at(&self, now: i64) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }

    /// nextUpdate as RFC 3339 text, for logs.
    pub(crate) fn next_update_text(&self) -> String {
        let at = |secs: i64| {
            let secs = u64::try_from(secs).ok()?;
            std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
        };
        match self.next_update.and_then(at) {
            Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
            None => "not given".to_owned(),
        }
    }
}

/// Reads one CRL file's bytes: PEM (one or more `X509 CRL` sections; other sections are
/// ignored) or one DER CRL. The error says what the file holds instead.
pub(crate) fn parse_file(path: &Path, bytes: &[u8]) -> Result<CrlFile, String> {
    let ders = if is_pem(bytes) {
        pem_crls(bytes)?
    } else if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty file: no CRL in it".into());
    } else {
        vec![der_crl(bytes)?]
    };
    let mut crls = Vec::with_capacity(ders.len());
    for (n, der) in ders.iter().enumerate() {
        crls.push(inspect(der).map_err(|e| match ders.len() {
            1 => e,
            _ => format!("CRL {} of {}: {e}", n + 1, ders.len()),
        })?);
    }
    Ok(CrlFile {
        path: path.to_path_buf(),
        ders: ders
            .into_iter()
            .map(CertificateRevocationListDer::from)
            .collect(),
        crls,
    })
}

/// A PEM file is one with a PEM boundary line; anything else is taken for DER.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pem_crls(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut crls = Vec::new();
    let mut other = None;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        match section.map_err(|e| format!("not valid PEM: {e}"))? {
            (SectionKind::Crl, der) => crls.push(der),
            (kind, _) => other = other.or(Some(kind)),
        }
    }
    if crls.is_empty() {
        return Err(match other {
            Some(kind) => format!("no CRL in file (it holds a PEM {})", section_name(kind)),
            None => "no CRL in file (no PEM section moat knows)".into(),
        });
    }
    Ok(crls)
}

fn section_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "certificate",
        SectionKind::Csr => "certificate request",
        SectionKind::PublicKey => "public key",
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
            "private key"
        }
        _ => "section of another kind",
    }
}

/// One DER CRL, the whole file; a DER certificate gets an error saying so.
fn der_crl(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match x509_parser::parse_x509_crl(bytes) {
        Ok(([], _)) => Ok(bytes.to_vec()),
        Ok((rest, _)) => Err(format!("{} bytes after the DER CRL", rest.len())),
        Err(e) if x509_parser::parse_x509_certificate(bytes).is_ok() => Err(format!(
            "no CRL in file (it holds a DER certificate; as a CRL: {e})"
        )),
        Err(e) => Err(format!("neither PEM nor a DER CRL: {e}")),
    }
}

fn inspect(der: &[u8]) -> Result<CrlInfo, String> {
    let (rest, crl) = x509_parser::parse_x509_crl(der).map_err(|e| format!("not a CRL: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the CRL", rest.len()));
    }
    Ok(CrlInfo {
        issuer: crl.issuer().to_string(),
        revoked: crl.iter_revoked_certificates().count(),
        next_update: crl.next_update().map(|t| t.timestamp()),
    })
}

/// Every certificate the loaded CRLs revoke, by issuer then serial: what a live session's
/// certificate is checked against when new CRLs take effect.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Issuer name (DER) → the serials its CRLs revoke.
    by_issuer: HashMap<Box<[u8]>, Serials>,
}

/// Serial (DER content octets) → the file that revokes it.
type Serials = HashMap<Box<[u8]>, Arc<str>>;

// === impl Revocations ===

impl Revocations {
    /// The index of `files`' CRLs (already checked by [`parse_file`]).
    pub(crate) fn of(files: &[CrlFile]) -> Revocations {
        let mut by_issuer: HashMap<Box<[u8]>, Serials> = HashMap::new();
        for file in files {
            let name: Arc<str> = Arc::from(file.path.display().to_string());
            for der in &file.ders {
                let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
                    continue;
                };
                let serials = by_issuer.entry(crl.issuer().as_raw().into()).or_default();
                for entry in crl.iter_revoked_certificates() {
                    serials
                        .entry(entry.raw_serial().into())
                        .or_insert_with(|| name.clone());
                }
            }
        }
        Revocations { by_issuer }
    }

    /// The CRL file that revokes `cert`, if one does.
    pub fn revoking(&self, cert: &ClientCert) -> Option<&str> {
        self.by_issuer
            .get(cert.issuer())
            .and_then(|serials| serials.get(cert.serial()))
            .map(|file| &**file)
    }

    /// Certificates revoked in total.
    pub fn len(&self) -> usize {
        self.by_issuer.values().map(HashMap::len).sum()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;
    use crate::certs;

    fn pki() -> (certs::Pem, certs::Pem, String) {
        let ca = certs::generate_ca("crl test CA", 5).unwrap();
        let carol = certs::generate_client(&ca, "carol", 5).unwrap();
        let crl = certs::generate_crl(&ca, &[&carol]).unwrap();
        (ca, carol, crl)
    }

    fn der_of(pem: &str) -> Vec<u8> {
        CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn client_cert(pem: &certs::Pem) -> ClientCert {
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
        ClientCert::of(der.as_ref()).unwrap()
    }

    #[test]
    fn pem_and_der_crls_revoke_the_same_certificate() {
        let (ca, carol, crl) = pki();
        let dave = certs::generate_client(&ca, "dave", 5).unwrap();
        for bytes in [crl.as_bytes().to_vec(), der_of(&crl)] {
            let file = parse_file(Path::new("c.crl"), &bytes).unwrap();
            assert_eq!(file.ders.len(), 1);
            assert_eq!(file.crls[0].revoked, 1);
            assert!(file.crls[0].issuer.contains("crl test CA"));
            let index = Revocations::of(&[file]);
            assert_eq!(index.revoking(&client_cert(&carol)), Some("c.crl"));
            assert_eq!(index.revoking(&client_cert(&dave)), None);
        }
    }

    #[test]
    fn files_without_a_crl_are_refused_saying_what_they_hold() {
        let (ca, carol, _) = pki();
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(carol.cert.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "empty file"),
            ("blank", b" \n\n".to_vec(), "empty file"),
            ("pem cert", ca.cert.clone().into_bytes(), "PEM certificate"),
            ("pem key", carol.key.clone().into_bytes(), "PEM private key"),
            ("der cert", cert_der, "DER certificate"),
            (
                "text",
                b"revoked: carol\n".to_vec(),
                "neither PEM nor a DER CRL",
            ),
            (
                "broken pem",
                b"-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n".to_vec(),
                "not valid PEM",
            ),
            (
                "pem of garbage",
                b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_vec(),
                "not a CRL",
            ),
        ];
        for (name, bytes, want) in cases {
            let err = parse_file(Path::new("x.crl"), &bytes).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn a_der_crl_with_trailing_bytes_is_refused() {
        let (_, _, crl) = pki();
        let mut der = der_of(&crl);
        der.extend_from_slice(b"\0\0");
        let err = parse_file(Path::new("x.crl"), &der).unwrap_err();
        assert!(err.contains("2 bytes after"), "{err}");
    }

    #[test]
    fn next_update_is_read_and_compared() {
        let (_, _, crl) = pki();
        let file = parse_file(Path::new("c.crl"), crl.as_bytes()).unwrap();
        let info = &file.crls[0];
        let next = info.next_update.unwrap();
        assert!(!info.expired_at(next - 1));
        assert!(info.expired_at(next + 1));
        assert!(info.next_update_text().contains('T'));
    }
}
