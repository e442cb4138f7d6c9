//! Making certificates: a self-signed CA, server and client certificates signed by it, and CRLs.
//!
//! Owns every call into rcgen. Every input is checked before anything is signed: names (no
//! control characters, DNS syntax, the client-name rule), a validity that X.509 can encode, a CA
//! that is one and whose key matches it. Pure of files: PEM text in, PEM text out.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::{check_client_name, CertError, Pem};

/// How far back `not_before` (and a CRL's `thisUpdate`) is set, so peers with a slow clock accept a
/// certificate made a moment ago.
pub const CLOCK_SKEW: Duration = Duration::hours(1);
/// How long a CRL from [`generate_crl`] stays current (`nextUpdate`).
pub const CRL_VALIDITY: Duration = Duration::days(30);

/// A self-signed CA: BasicConstraints CA pathlen 0, KeyCertSign + CrlSign, valid `days` days.
pub fn generate_ca(cn: &str, days: u32) -> Result<Pem, CertError> {
    check_text(
        cn,
        "a CA common name must be non-empty without control characters",
    )?;
    let (not_before, not_after) = validity(days)?;
    let mut params = base_params(cn, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = new_key()?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A server certificate for `dns` names and `ips` (ServerAuth EKU, AKI), signed by `ca`.
/// Its CN is the first name given.
pub fn generate_server(
    ca: &Pem,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<Pem, CertError> {
    let mut sans = Vec::with_capacity(dns.len() + ips.len());
    for name in dns {
        check_dns_name(name)?;
        sans.push(SanType::DnsName(name.clone().try_into()?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let cn = dns
        .first()
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string));
    let cn = cn.ok_or(CertError::NoSubjectAltNames)?;
    let (not_before, not_after) = validity(days)?;
    let mut params = leaf_params(
        &cn,
        ExtendedKeyUsagePurpose::ServerAuth,
        not_before,
        not_after,
    )?;
    params.subject_alt_names = sans;
    sign_leaf(ca, &params)
}

/// A client certificate with CN=`cn` (ClientAuth EKU, AKI), signed by `ca`, valid `days` days.
/// `cn` must pass [`check_client_name`].
pub fn generate_client(ca: &Pem, cn: &str, days: u32) -> Result<Pem, CertError> {
    let (not_before, not_after) = validity(days)?;
    generate_client_with_validity(ca, cn, not_before, not_after)
}

/// Like [`generate_client`] with an explicit validity window, which may lie in the past or the future
/// (tests use it for expired and not-yet-valid certificates).
pub fn generate_client_with_validity(
    ca: &Pem,
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Pem, CertError> {
    check_client_name(cn)?;
    if not_after <= not_before {
        return Err(CertError::InvalidValidity(
            "not_after must be later than not_before",
        ));
    }
    let params = leaf_params(
        cn,
        ExtendedKeyUsagePurpose::ClientAuth,
        not_before,
        not_after,
    )?;
    sign_leaf(ca, &params)
}

/// A PEM CRL signed by `ca` that revokes every certificate in `revoked` (empty: a valid, empty CRL).
pub fn generate_crl(ca: &Pem, revoked: &[&Pem]) -> Result<String, CertError> {
    let ca_der = cert_der(&ca.cert, "CA certificate")?;
    let ca_cert = parse(&ca_der)?;
    let issuer = load_issuer(ca, &ca_der, &ca_cert)?;
    let now = OffsetDateTime::now_utc();
    let this_update = now - CLOCK_SKEW;
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for pem in revoked {
        let der = cert_der(&pem.cert, "revoked certificate")?;
        let cert = parse(&der)?;
        if cert.issuer().as_raw() != ca_cert.subject().as_raw() {
            return Err(CertError::NotIssuedByCa {
                serial: cert.raw_serial_as_string(),
            });
        }
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: this_update,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl_number = now.unix_timestamp().max(0).to_be_bytes();
    let params = CertificateRevocationListParams {
        this_update,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from_slice(&crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: key_id_method(&ca_cert),
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

// === helpers ===

fn validity(days: u32) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    if days == 0 {
        return Err(CertError::InvalidValidity("days must be at least 1"));
    }
    let now = OffsetDateTime::now_utc();
    let not_after = now
        .checked_add(Duration::days(i64::from(days)))
        .filter(|t| t.year() <= 9999)
        .ok_or(CertError::InvalidValidity("not_after beyond year 9999"))?;
    Ok((now - CLOCK_SKEW, not_after))
}

fn base_params(
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn leaf_params(
    cn: &str,
    eku: ExtendedKeyUsagePurpose,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CertError> {
    let mut params = base_params(cn, not_before, not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn sign_leaf(ca: &Pem, params: &CertificateParams) -> Result<Pem, CertError> {
    let ca_der = cert_der(&ca.cert, "CA certificate")?;
    let issuer = load_issuer(ca, &ca_der, &parse(&ca_der)?)?;
    let key = new_key()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The CA as an rcgen issuer, after checking it is a CA and that its key matches.
fn load_issuer(
    ca: &Pem,
    ca_der: &[u8],
    ca_cert: &X509Certificate<'_>,
) -> Result<Issuer<'static, KeyPair>, CertError> {
    if !ca_cert.is_ca() {
        return Err(CertError::NotACa);
    }
    let key = KeyPair::from_pem(&ca.key).map_err(|e| CertError::InvalidPem {
        what: "CA key",
        reason: e.to_string(),
    })?;
    if ca_cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CertError::CaKeyMismatch);
    }
    Ok(Issuer::from_ca_cert_der(&ca_der.to_vec().into(), key)?)
}

/// The CA's own SKI when it has one (so CRL AKIs match CAs made elsewhere), else rcgen's default.
pub(super) fn key_id_method(ca: &X509Certificate<'_>) -> KeyIdMethod {
    ca.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
            }
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256)
}

fn new_key() -> Result<KeyPair, CertError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

/// 16 random bytes, top bit cleared (positive) and second bit set (always 16 octets).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Random)?;
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x40;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

pub(super) fn cert_der(pem: &str, what: &'static str) -> Result<Vec<u8>, CertError> {
    let invalid = |reason: String| CertError::InvalidPem { what, reason };
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    if parsed.label != "CERTIFICATE" {
        return Err(invalid(format!(
            "expected a CERTIFICATE block, found {}",
            parsed.label
        )));
    }
    Ok(parsed.contents)
}

pub(super) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            Err(CertError::Parse("trailing data after certificate".into()))
        }
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(CertError::Parse(e.to_string())),
    }
}

fn check_text(text: &str, what: &'static str) -> Result<(), CertError> {
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(CertError::InvalidName {
            name: text.to_owned(),
            reason: what,
        });
    }
    Ok(())
}

fn check_dns_name(name: &str) -> Result<(), CertError> {
    let refuse = |reason| {
        Err(CertError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.parse::<IpAddr>().is_ok() {
        return refuse("is an IP address; pass it with --ip");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if name.len() > 253 || !rest.split('.').all(label_ok) {
        return refuse("not a DNS name (ASCII labels of letters, digits, '-', '_', not at a label's edge for '-'; optional leading '*.')");
    }
    Ok(())
}
