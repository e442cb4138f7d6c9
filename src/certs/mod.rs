//! Certificate generation: a small private PKI for moat's listeners.
//!
//! CA, server and client certificates (ECDSA P-256 by default, P-384 or Ed25519; random
//! serials, explicit validity; renewal keeping a key), CRLs that grow by revocation,
//! PEM files written with safe permissions (keys 0600, created that way so there is no readable
//! window), and the dev-cert bootstrap of `moat run`. Reading a verified client certificate at
//! run time is the transport's (`transport/cert_info.rs`).
//!
//! It is separate so that `moat certs`, `moat run` and the integration tests build certificates the
//! same way. It must not verify chains or decide trust: rustls does that in `transport/tls.rs`.
//! It never overwrites a file unless asked to, and checks every output before writing any.
//!
//! Files: `generate.rs` makes certificates and CRLs (every call into rcgen), `files.rs` writes
//! and reads them (and bootstraps the dev set); this file holds what both share: [`Pem`],
//! [`CertError`] and the rule for client names.

mod files;
mod generate;

use std::io;
use std::path::PathBuf;

pub use files::{ensure_dev_certs, read_pem_files, replace_file, write_pem_files, DEV_CLIENT};
pub use generate::{
    crl_entries, generate_ca, generate_ca_with, generate_client, generate_client_with,
    generate_client_with_validity, generate_crl, generate_crl_with, generate_server,
    generate_server_with, parse_serial, serial_issued_by, KeySource, KeyType, Revoked, CLOCK_SKEW,
    CRL_VALIDITY,
};

/// Longest client name accepted (X.509 `ub-common-name`).
pub const MAX_NAME_LEN: usize = 64;

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

#[cfg(test)]
mod tests;
