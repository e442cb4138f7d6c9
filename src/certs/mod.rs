//! Certificate generation: a small private PKI for moat's listeners.
//!
//! Owns every call into rcgen: CA, server and client certificates (ECDSA P-256, random serials,
//! explicit validity), CRLs, writing PEM files with safe permissions (keys 0600, created that way so
//! there is no readable window), and the dev-cert bootstrap of `moat run`. Reading a verified
//! client certificate at run time is the transport's (`transport/cert_info.rs`).
//!
//! It is separate so that `moat certs`, `moat run` and the integration tests build certificates the
//! same way. It must not verify chains or decide trust: rustls does that in `transport/tls.rs`.
//! It never overwrites a file unless asked to, and checks every output before writing any.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

/// How far back `not_before` (and a CRL's `thisUpdate`) is set, so peers with a slow clock accept a
/// certificate made a moment ago.
pub const CLOCK_SKEW: Duration = Duration::hours(1);
/// How long a CRL from [`generate_crl`] stays current (`nextUpdate`).
pub const CRL_VALIDITY: Duration = Duration::days(30);
/// Longest client name accepted (X.509 `ub-common-name`).
pub const MAX_NAME_LEN: usize = 64;
/// The name of the client certificate made by [`ensure_dev_certs`].
pub const DEV_CLIENT: &str = "dev-client";

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// `-----BEGIN CERTIFICATE-----`.
    pub cert: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8). Secret: never logged, elided from `Debug`.
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"[elided]")
            .finish()
    }
}

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM input (certificate or key) could not be parsed.
    #[error("invalid {what}: {reason}")]
    InvalidPem {
        /// Which input: "CA certificate", "CA key", ...
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A DER certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The issuing certificate is not a CA (no BasicConstraints `cA=TRUE`).
    #[error("the issuing certificate is not a CA")]
    NotACa,
    /// The CA key does not belong to the CA certificate.
    #[error("the CA key does not match the CA certificate")]
    CaKeyMismatch,
    /// A certificate given to [`generate_crl`] was not issued by that CA.
    #[error("certificate with serial {serial} was not issued by this CA")]
    NotIssuedByCa {
        /// Hex serial of the foreign certificate.
        serial: String,
    },
    /// A name (client CN, file stem, CA CN, DNS name) was refused.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// A server certificate needs at least one DNS name or IP address.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoSubjectAltNames,
    /// Validity period is empty or beyond what X.509 can encode.
    #[error("invalid validity: {0}")]
    InvalidValidity(&'static str),
    /// An output file exists and overwriting was not requested.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A dev-cert directory holds part of a set; finishing it would mean guessing.
    #[error("found {} but not {}: remove it or supply the missing file", present.display(), missing.display())]
    IncompleteSet {
        /// A file that exists.
        present: PathBuf,
        /// The file it needs.
        missing: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "create", ...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

// === generation ===

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

// === names ===

/// Refuses client names that are unsafe as a file name or as an MQTT identity: empty, longer than
/// [`MAX_NAME_LEN`], starting with `.` or `-`, or holding anything but letters, digits and `. _ - @`
/// (so no `/`, NUL, control characters, whitespace, or the MQTT wildcards `+` and `#`).
pub fn check_client_name(name: &str) -> Result<(), CertError> {
    let refuse = |reason| {
        Err(CertError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("must not be empty");
    }
    if name.chars().count() > MAX_NAME_LEN {
        return refuse("longer than 64 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return refuse("must not start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return refuse("only letters, digits and . _ - @ are allowed");
    }
    Ok(())
}

// === files ===

/// Writes `dir/stem.crt` (0644) and `dir/stem.key` (0600), creating `dir` if needed. Without
/// `force`, fails before writing anything when either file exists. Returns `[crt, key]`.
pub fn write_pem_files(
    dir: &Path,
    stem: &str,
    pem: &Pem,
    force: bool,
) -> Result<[PathBuf; 2], CertError> {
    check_client_name(stem)?;
    let (crt, key) = pem_paths(dir, stem);
    if !force {
        for path in [&crt, &key] {
            if exists(path)? {
                return Err(CertError::AlreadyExists { path: path.clone() });
            }
        }
    }
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    write_new(&key, pem.key.as_bytes(), 0o600, force)?;
    write_new(&crt, pem.cert.as_bytes(), 0o644, force)?;
    Ok([crt, key])
}

/// Reads `dir/stem.crt` and `dir/stem.key`.
pub fn read_pem_files(dir: &Path, stem: &str) -> Result<Pem, CertError> {
    let (crt, key) = pem_paths(dir, stem);
    let cert = fs::read_to_string(&crt).map_err(io_err("read", &crt))?;
    let key = fs::read_to_string(&key).map_err(io_err("read", &key))?;
    Ok(Pem { cert, key })
}

/// Dev bootstrap for `moat run`: when any of `ca.crt`, `ca.key`, `server.crt`, `server.key` is missing
/// from `dir`, creates what is missing — a CA (unless both CA files exist, then it is reused), a
/// server certificate for `localhost`, `127.0.0.1`, `::1`, and a client certificate
/// [`DEV_CLIENT`] (unless both its files exist). Returns the files written: empty when nothing was
/// missing. Never overwrites: half a pair, or a server/client certificate without its CA, is an
/// [`CertError::IncompleteSet`] error, checked before anything is written.
pub fn ensure_dev_certs(dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let ca = pair_state(dir, "ca")?;
    let server = pair_state(dir, "server")?;
    let client = pair_state(dir, DEV_CLIENT)?;
    if ca && server {
        return Ok(Vec::new());
    }
    if !ca {
        for (present, stem) in [(server, "server"), (client, DEV_CLIENT)] {
            if present {
                let (crt, _) = pem_paths(dir, stem);
                return Err(CertError::IncompleteSet {
                    present: crt,
                    missing: dir.join("ca.key"),
                });
            }
        }
    }
    let mut written = Vec::new();
    let ca_pem = if ca {
        read_pem_files(dir, "ca")?
    } else {
        let pem = generate_ca("moat dev CA", 3650)?;
        written.extend(write_pem_files(dir, "ca", &pem, false)?);
        pem
    };
    let dns = ["localhost".to_owned()];
    let ips = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    let server_pem = generate_server(&ca_pem, &dns, &ips, 825)?;
    written.extend(write_pem_files(dir, "server", &server_pem, false)?);
    if !client {
        let client_pem = generate_client(&ca_pem, DEV_CLIENT, 825)?;
        written.extend(write_pem_files(dir, DEV_CLIENT, &client_pem, false)?);
    }
    Ok(written)
}

// === private helpers ===

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
fn key_id_method(ca: &X509Certificate<'_>) -> KeyIdMethod {
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

fn cert_der(pem: &str, what: &'static str) -> Result<Vec<u8>, CertError> {
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

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
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

fn pem_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

/// Whether both files of `dir/stem.{crt,key}` exist; an error when only one does.
fn pair_state(dir: &Path, stem: &str) -> Result<bool, CertError> {
    let (crt, key) = pem_paths(dir, stem);
    match (exists(&crt)?, exists(&key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(CertError::IncompleteSet {
            present: crt,
            missing: key,
        }),
        (false, true) => Err(CertError::IncompleteSet {
            present: key,
            missing: crt,
        }),
    }
}

/// Whether anything (even a dangling symlink) is at `path`.
fn exists(path: &Path) -> Result<bool, CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CertError::Io {
            action: "inspect",
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Creates `path` with `mode` from the first byte (O_EXCL, so no symlink is followed and no older,
/// wider permissions survive). With `overwrite`, an existing file is removed first.
fn write_new(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), CertError> {
    if overwrite {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", path)(e)),
            _ => {}
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CertError::AlreadyExists {
                path: path.to_owned(),
            },
            _ => io_err("create", path)(e),
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl Fn(io::Error) -> CertError + 'a {
    move |source| CertError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
