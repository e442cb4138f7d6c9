//! Why a TLS or QUIC handshake was refused, named for the audit line.
//!
//! An operator must see a revoked device knocking, so every handshake moat refuses gets a cause
//! that says what failed (revoked, expired, unknown CA, …) and the setting that decided it. The
//! TLS listener has rustls' own error; QUIC only has the alert quinn closed with and rustls'
//! text of the error, so the alert decides there and the text only splits what one alert
//! covers (certificate_expired is also "not yet valid"; unknown_ca is also "no CRL decides" and
//! "CRL expired"). What it must not do: log, count or decide anything; the listener does that.

use rustls::{CertificateError, PeerIncompatible};

use super::quic::QuicError;
use super::tls::TlsError;

/// The cause of a refused handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeRefusal {
    /// The client certificate is on a CRL.
    Revoked,
    /// The client certificate is past its notAfter.
    Expired,
    /// The client certificate is before its notBefore.
    NotYetValid,
    /// The client certificate does not chain to `client_ca`.
    UnknownCa,
    /// CRLs are configured and none decides this certificate (its issuer has none).
    RevocationUnknown,
    /// The CRL responsible is past its nextUpdate and `crl_expired: refuse`.
    CrlExpired,
    /// The client certificate is unusable otherwise (bad signature, purpose, encoding, CN).
    BadCertificate,
    /// `client_certs: required` and the client sent none.
    NoCertificate,
    /// The client offers no TLS version moat accepts (`tls.min_version`).
    ProtocolVersion,
    /// No cipher suite, key exchange group or signature scheme in common.
    NoCommonParameters,
    /// The client offered ALPN, and none of moat's.
    NoApplicationProtocol,
    /// Not TLS, or a TLS message that breaks the protocol.
    Malformed,
    /// The client gave up with an alert (it may not trust moat's certificate).
    ClientAborted,
    /// The handshake did not finish within `timeouts.tls_handshake`.
    Timeout,
    /// Anything rustls refused for another reason.
    Other,
}

// === impl HandshakeRefusal ===

impl HandshakeRefusal {
    /// Every cause, in declaration order (`cause as usize` is its index).
    pub const ALL: [HandshakeRefusal; 15] = [
        Self::Revoked,
        Self::Expired,
        Self::NotYetValid,
        Self::UnknownCa,
        Self::RevocationUnknown,
        Self::CrlExpired,
        Self::BadCertificate,
        Self::NoCertificate,
        Self::ProtocolVersion,
        Self::NoCommonParameters,
        Self::NoApplicationProtocol,
        Self::Malformed,
        Self::ClientAborted,
        Self::Timeout,
        Self::Other,
    ];

    /// The cause as an audit line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "client certificate revoked",
            Self::Expired => "client certificate expired",
            Self::NotYetValid => "client certificate not yet valid",
            Self::UnknownCa => "client certificate from an unknown CA",
            Self::RevocationUnknown => "client certificate revocation status unknown (no CRL)",
            Self::CrlExpired => "CRL expired",
            Self::BadCertificate => "client certificate unusable",
            Self::NoCertificate => "no client certificate",
            Self::ProtocolVersion => "TLS version refused",
            Self::NoCommonParameters => "no cipher suite or group in common",
            Self::NoApplicationProtocol => "ALPN refused",
            Self::Malformed => "malformed TLS",
            Self::ClientAborted => "client aborted the handshake",
            Self::Timeout => "TLS handshake timeout",
            Self::Other => "TLS handshake refused",
        }
    }

    /// The setting that decided the refusal, for the audit line's rule.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Revoked | Self::RevocationUnknown => "tls.crls",
            Self::CrlExpired => "tls.crl_expired",
            Self::Expired | Self::NotYetValid | Self::UnknownCa | Self::BadCertificate => {
                "tls.client_ca"
            }
            Self::NoCertificate => "tls.client_certs",
            Self::ProtocolVersion | Self::NoCommonParameters => "tls.min_version",
            Self::NoApplicationProtocol => "alpn",
            Self::Timeout => "timeouts.tls_handshake",
            Self::Malformed | Self::ClientAborted | Self::Other => "protocol",
        }
    }

    /// The cause of a rustls error.
    pub fn of_rustls(error: &rustls::Error) -> Self {
        use rustls::Error as E;
        match error {
            E::InvalidCertificate(e) => Self::of_certificate(e),
            E::NoCertificatesPresented => Self::NoCertificate,
            E::PeerIncompatible(e) => Self::of_incompatible(e),
            E::NoApplicationProtocol => Self::NoApplicationProtocol,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError => Self::Malformed,
            E::AlertReceived(_) => Self::ClientAborted,
            _ => Self::Other,
        }
    }

    fn of_certificate(e: &CertificateError) -> Self {
        use CertificateError as C;
        match e {
            C::Revoked => Self::Revoked,
            C::Expired | C::ExpiredContext { .. } => Self::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
            C::UnknownIssuer => Self::UnknownCa,
            C::UnknownRevocationStatus => Self::RevocationUnknown,
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => Self::CrlExpired,
            _ => Self::BadCertificate,
        }
    }

    fn of_incompatible(e: &PeerIncompatible) -> Self {
        use PeerIncompatible as P;
        match e {
            P::SupportedVersionsExtensionRequired
            | P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::Tls13RequiredForQuic => Self::ProtocolVersion,
            _ => Self::NoCommonParameters,
        }
    }

    /// The cause of a TLS alert moat sent (`alert`: the TLS AlertDescription), split further by
    /// rustls' text of the error (`reason`) where one alert covers several causes.
    pub fn of_alert(alert: u8, reason: &str) -> Self {
        match alert {
            44 => Self::Revoked,
            45 if reason.contains("not valid yet") || reason.contains("NotValidYet") => {
                Self::NotYetValid
            }
            45 => Self::Expired,
            48 if reason.contains("UnknownRevocationStatus") => Self::RevocationUnknown,
            48 if reason.contains("revocation list expired")
                || reason.contains("ExpiredRevocationList") =>
            {
                Self::CrlExpired
            }
            48 => Self::UnknownCa,
            42 | 43 | 46 | 49 | 51 => Self::BadCertificate,
            116 => Self::NoCertificate,
            70 => Self::ProtocolVersion,
            40 | 71 => Self::NoCommonParameters,
            120 => Self::NoApplicationProtocol,
            10 | 20 | 47 | 50 => Self::Malformed,
            _ => Self::Other,
        }
    }
}

// === impl TlsError ===

impl TlsError {
    /// Why the handshake was refused, when moat refused it (not when the peer just went away).
    pub fn refusal(&self) -> Option<HandshakeRefusal> {
        match self {
            TlsError::HandshakeTimeout(_) => Some(HandshakeRefusal::Timeout),
            TlsError::Identity(_) => Some(HandshakeRefusal::BadCertificate),
            TlsError::Handshake(io) => io
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map(HandshakeRefusal::of_rustls),
            TlsError::Pem { .. } | TlsError::Config(_) => None,
        }
    }
}

// === impl QuicError ===

impl QuicError {
    /// Why the QUIC handshake was refused, when moat refused it.
    pub fn refusal(&self) -> Option<HandshakeRefusal> {
        use quinn::ConnectionError as C;
        match self {
            QuicError::HandshakeTimeout(_) => Some(HandshakeRefusal::Timeout),
            QuicError::Tls(e) => e.refusal(),
            // moat closed the connection: a crypto error code is 0x100 + the TLS alert.
            QuicError::Handshake(C::TransportError(e)) => {
                crypto_alert(u64::from(e.code)).map(|a| HandshakeRefusal::of_alert(a, &e.reason))
            }
            QuicError::Handshake(C::ConnectionClosed(close))
                if crypto_alert(u64::from(close.error_code)).is_some() =>
            {
                Some(HandshakeRefusal::ClientAborted)
            }
            _ => None,
        }
    }
}

/// The TLS alert a QUIC crypto error code carries (RFC 9001 §4.8: 0x0100 + alert).
fn crypto_alert(code: u64) -> Option<u8> {
    code.checked_sub(0x100).and_then(|a| u8::try_from(a).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    #[test]
    fn all_is_in_declaration_order() {
        for (i, cause) in super::HandshakeRefusal::ALL.iter().enumerate() {
            assert_eq!(*cause as usize, i);
        }
    }

    use super::*;

    #[test]
    fn certificate_errors_name_what_failed() {
        let cases = [
            (CertificateError::Revoked, HandshakeRefusal::Revoked),
            (CertificateError::Expired, HandshakeRefusal::Expired),
            (CertificateError::NotValidYet, HandshakeRefusal::NotYetValid),
            (CertificateError::UnknownIssuer, HandshakeRefusal::UnknownCa),
            (
                CertificateError::UnknownRevocationStatus,
                HandshakeRefusal::RevocationUnknown,
            ),
            (
                CertificateError::ExpiredRevocationList,
                HandshakeRefusal::CrlExpired,
            ),
            (
                CertificateError::BadSignature,
                HandshakeRefusal::BadCertificate,
            ),
        ];
        for (error, want) in cases {
            let rustls_error = rustls::Error::InvalidCertificate(error.clone());
            assert_eq!(
                HandshakeRefusal::of_rustls(&rustls_error),
                want,
                "{error:?}"
            );
            // The same through the alert rustls sends and its text (the QUIC path).
            let alert = u8::from(rustls::AlertDescription::from(error));
            let text = rustls_error.to_string();
            assert_eq!(HandshakeRefusal::of_alert(alert, &text), want, "{text}");
        }
    }

    #[test]
    fn version_and_alpn_refusals_are_named() {
        let version = rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled);
        assert_eq!(
            HandshakeRefusal::of_rustls(&version),
            HandshakeRefusal::ProtocolVersion
        );
        assert_eq!(
            HandshakeRefusal::of_rustls(&rustls::Error::NoApplicationProtocol),
            HandshakeRefusal::NoApplicationProtocol
        );
        assert_eq!(
            HandshakeRefusal::of_rustls(&rustls::Error::NoCertificatesPresented),
            HandshakeRefusal::NoCertificate
        );
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, version);
        assert_eq!(
            TlsError::Handshake(io).refusal(),
            Some(HandshakeRefusal::ProtocolVersion)
        );
        // A peer that just went away was not refused.
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        assert_eq!(TlsError::Handshake(eof).refusal(), None);
    }
}
