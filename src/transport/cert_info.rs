//! What a verified client certificate tells moat, read in one parse of the DER that rustls or
//! quinn hands out: its subject CN (the identity when `cert_identity` is on) and the issuer and
//! serial a CRL names it by.
//!
//! Why it is separate: the handshakes (`tls.rs`, `quic.rs` through it) read these facts at run
//! time, while `certs/` makes certificates for `moat certs` and the dev bootstrap; the two share
//! x509-parser, not a purpose. It must not verify anything: rustls has checked the chain (and
//! any CRL) before this runs, and an ambiguous identity is refused here, never guessed.

use x509_parser::certificate::X509Certificate;

/// Why a verified certificate's facts could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertInfoError {
    /// The DER could not be parsed as one certificate.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The subject holds several CN attributes, so the identity is ambiguous.
    #[error("certificate subject has {count} common names; exactly one is allowed")]
    MultipleCommonNames {
        /// How many CN attributes were found.
        count: usize,
    },
    /// The CN is not a UTF-8-compatible string type.
    #[error("certificate common name is not a UTF-8 string")]
    CommonNameNotUtf8,
}

/// What a verified client certificate tells moat: its subject CN, and the issuer name (DER) and
/// serial (DER content octets) that a CRL entry names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The subject CN, if there is exactly one.
    pub common_name: Option<String>,
    /// The issuer's distinguished name, DER-encoded as in the certificate.
    pub issuer: Vec<u8>,
    /// The serial number's content octets, as a CRL lists them.
    pub serial: Vec<u8>,
}

/// Reads [`CertFacts`] from a DER certificate: `common_name` is `None` without a CN, and an
/// error when there are several (the identity would be ambiguous) or when it is not a
/// UTF-8-compatible string.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, CertInfoError> {
    let cert = parse(der)?;
    Ok(CertFacts {
        common_name: common_name(&cert)?,
        issuer: cert.issuer().as_raw().to_vec(),
        serial: cert.raw_serial().to_vec(),
    })
}

/// A DER certificate's notAfter as Unix seconds (for the expiry metrics).
pub fn not_after(der: &[u8]) -> Result<i64, CertInfoError> {
    Ok(parse(der)?.validity().not_after.timestamp())
}

fn common_name(cert: &X509Certificate<'_>) -> Result<Option<String>, CertInfoError> {
    let cns: Vec<_> = cert.subject().iter_common_name().collect();
    match cns.as_slice() {
        [] => Ok(None),
        [cn] => cn
            .as_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| CertInfoError::CommonNameNotUtf8),
        _ => Err(CertInfoError::MultipleCommonNames { count: cns.len() }),
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertInfoError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(CertInfoError::Parse(
            "trailing data after certificate".into(),
        )),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(CertInfoError::Parse(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::certs::{self, Pem};

    fn der(pem: &Pem) -> Vec<u8> {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.cert.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn common_name_issuer_and_serial_are_read() {
        let ca = certs::generate_ca("test CA", 30).unwrap();
        let server = certs::generate_server(&ca, &["localhost".to_owned()], &[], 30).unwrap();
        let client = certs::generate_client(&ca, "alice", 30).unwrap();
        let cn = |pem: &Pem| cert_facts(&der(pem)).unwrap().common_name;
        assert_eq!(cn(&client).as_deref(), Some("alice"));
        assert_eq!(cn(&server).as_deref(), Some("localhost"));
        assert_eq!(cn(&ca).as_deref(), Some("test CA"));
        let (ca_facts, client_facts) = (cert_facts(&der(&ca)), cert_facts(&der(&client)));
        let (ca_facts, client_facts) = (ca_facts.unwrap(), client_facts.unwrap());
        assert_eq!(client_facts.issuer, ca_facts.issuer, "issued by the CA");
        assert_eq!(client_facts.serial.len(), 16);
        assert_ne!(client_facts.serial, ca_facts.serial);
        assert!(cert_facts(b"not a certificate").is_err());
        let mut trailing = der(&client);
        trailing.push(0);
        assert!(matches!(
            cert_facts(&trailing),
            Err(CertInfoError::Parse(_))
        ));
    }

    #[test]
    fn two_common_names_are_refused() {
        // Make a subject with CN and O of equal length, then retype O (2.5.4.10) as CN (2.5.4.3).
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "aaaa");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "bbbb");
        let mut d = params.self_signed(&key).unwrap().der().to_vec();
        let o_oid = [0x06, 0x03, 0x55, 0x04, 0x0a];
        let hits: Vec<_> = d
            .windows(5)
            .enumerate()
            .filter(|(_, w)| *w == o_oid)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 2, "issuer and subject");
        for at in hits {
            d[at + 4] = 0x03;
        }
        assert!(matches!(
            cert_facts(&d),
            Err(CertInfoError::MultipleCommonNames { count: 2 })
        ));
    }
}
