//! mosquitto_passwd files: `user:$7$…` (PBKDF2-SHA512) and `user:$6$…` (salted SHA-512) lines.
//!
//! What it owns: parsing the text of a password file written by `mosquitto_passwd` into users
//! and their hashes, and verifying a password against one of those hashes, so Mosquitto users
//! can move to moat with their password file unchanged (`password_file:` in a policy).
//! Formats (mosquitto 2.0, `src/password_mosq.c`), base64 with padding:
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password, 64-byte output (the default
//!   of `mosquitto_passwd` since 2.0; Debian's 2.0.11 writes 101 iterations, 12-byte salts);
//! - `$6$SALT$HASH`: one SHA-512 of password ‖ salt (mosquitto 1.x, `-H sha512`). Accepted for
//!   migration only: a GPU tests billions of guesses per second against it, so every such user
//!   produces a warning.
//!
//! Why it is separate: its own grammar and errors (`file:line`), and its own constant-time
//! verification (ring's PBKDF2 `verify`, `subtle` for SHA-512), next to argon2 in `authn.rs`.
//! What it must not do: read the file (`ops::load` does), accept an iteration count that turns
//! a login into a CPU denial of service, or accept a line it does not fully understand (a blank
//! or malformed line never becomes a user: catalogue §A.24).

use std::num::NonZeroU32;

use base64ct::{Base64, Encoding};
use ring::{digest, pbkdf2};
use subtle::ConstantTimeEq;

use super::authn::{check_identity_name, NameError};

/// Most PBKDF2 iterations accepted: mosquitto writes 101 (2.0) or 1 000 (2.1); a file asking
/// for millions would make every login attempt (and every decoy verification) a CPU burner.
pub const MAX_PBKDF2_ITERATIONS: u32 = 100_000;

/// Longest salt accepted, in bytes (mosquitto writes 12 or 64).
const MAX_SALT_BYTES: usize = 1024;

/// SHA-512 output length, the length of every hash in these files.
const HASH_BYTES: usize = 64;

/// A password hash from a mosquitto_passwd file.
#[derive(Clone, PartialEq, Eq)]
pub enum MosquittoHash {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 {
        /// The salt, decoded.
        salt: Vec<u8>,
        /// The digest, decoded.
        hash: [u8; HASH_BYTES],
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// Iteration count (1..=[`MAX_PBKDF2_ITERATIONS`]).
        iterations: NonZeroU32,
        /// The salt, decoded.
        salt: Vec<u8>,
        /// The derived key, decoded.
        hash: [u8; HASH_BYTES],
    },
}

/// One user line of a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoUser {
    /// 1-based line number.
    pub line: u32,
    /// The user name (a valid identity name).
    pub name: String,
    /// The hash.
    pub hash: MosquittoHash,
}

/// Why a line of a password file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdError {
    /// No `:` between user name and hash.
    #[error("expected 'user:hash' as written by mosquitto_passwd")]
    NoSeparator,
    /// A blank line: mosquitto once read one as a user with an empty name (CVE-2018-12551).
    #[error("blank line: remove it (a password file holds only 'user:hash' lines)")]
    Blank,
    /// The user name cannot be an identity.
    #[error("invalid user name: {0}")]
    Name(NameError),
    /// A plain-text password (never hashed with `mosquitto_passwd -U`).
    #[error("the password is not hashed: run 'mosquitto_passwd -U' on the file first")]
    Plaintext,
    /// A hash type moat does not read (`$argon2id$` from mosquitto 2.1 included).
    #[error("unsupported hash type {0}: expected $7$ (PBKDF2-SHA512) or $6$ (SHA-512)")]
    UnsupportedType(String),
    /// Wrong number of `$` fields, bad base64, wrong hash length.
    #[error("malformed {kind} hash: {reason}")]
    Malformed {
        /// `$6$` or `$7$`.
        kind: &'static str,
        /// What is wrong (never the hash itself).
        reason: &'static str,
    },
    /// More PBKDF2 iterations than [`MAX_PBKDF2_ITERATIONS`].
    #[error("{0} PBKDF2 iterations is more than the {MAX_PBKDF2_ITERATIONS} moat accepts (each login attempt would cost that much CPU)")]
    TooManyIterations(u64),
}

/// A refused line: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct PasswdLineError {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong.
    pub error: PasswdError,
}

/// Parses a whole password file. A trailing newline is fine; any other blank line, comment or
/// malformed line is an error naming its line (a file must mean exactly what it says).
pub fn parse(text: &str) -> Result<Vec<MosquittoUser>, PasswdLineError> {
    let mut users = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(users);
    }
    for (index, raw) in body.split('\n').enumerate() {
        let line = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
        let at = |error| PasswdLineError { line, error };
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            return Err(at(PasswdError::Blank));
        }
        let (name, hash) = raw.split_once(':').ok_or(at(PasswdError::NoSeparator))?;
        check_identity_name(name).map_err(|e| at(PasswdError::Name(e)))?;
        let hash = parse_hash(hash).map_err(at)?;
        users.push(MosquittoUser {
            line,
            name: name.to_owned(),
            hash,
        });
    }
    Ok(users)
}

/// Parses one `$6$…` or `$7$…` string.
pub fn parse_hash(text: &str) -> Result<MosquittoHash, PasswdError> {
    let Some(rest) = text.strip_prefix('$') else {
        return Err(PasswdError::Plaintext);
    };
    let fields: Vec<&str> = rest.split('$').collect();
    match fields.as_slice() {
        ["6", salt, hash] => Ok(MosquittoHash::Sha512 {
            salt: salt_bytes("$6$", salt)?,
            hash: hash_bytes("$6$", hash)?,
        }),
        ["7", iterations, salt, hash] => {
            let malformed = PasswdError::Malformed {
                kind: "$7$",
                reason: "the iteration count is not a number",
            };
            let n: u64 = iterations.parse().map_err(|_| malformed.clone())?;
            if n > u64::from(MAX_PBKDF2_ITERATIONS) {
                return Err(PasswdError::TooManyIterations(n));
            }
            let iterations =
                u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or(PasswdError::Malformed {
                        kind: "$7$",
                        reason: "the iteration count is 0",
                    })?;
            Ok(MosquittoHash::Pbkdf2Sha512 {
                iterations,
                salt: salt_bytes("$7$", salt)?,
                hash: hash_bytes("$7$", hash)?,
            })
        }
        ["6" | "7", ..] => Err(PasswdError::Malformed {
            kind: if fields.first() == Some(&"6") {
                "$6$"
            } else {
                "$7$"
            },
            reason: "wrong number of '$' fields",
        }),
        [kind, ..] => Err(PasswdError::UnsupportedType(format!("${kind}$"))),
        [] => Err(PasswdError::Plaintext),
    }
}

fn salt_bytes(kind: &'static str, b64: &str) -> Result<Vec<u8>, PasswdError> {
    let salt = Base64::decode_vec(b64).map_err(|_| PasswdError::Malformed {
        kind,
        reason: "the salt is not base64",
    })?;
    if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
        return Err(PasswdError::Malformed {
            kind,
            reason: "the salt is empty or longer than 1024 bytes",
        });
    }
    Ok(salt)
}

fn hash_bytes(kind: &'static str, b64: &str) -> Result<[u8; HASH_BYTES], PasswdError> {
    let mut out = [0u8; HASH_BYTES];
    match Base64::decode(b64, &mut out) {
        Ok(decoded) if decoded.len() == HASH_BYTES => Ok(out),
        _ => Err(PasswdError::Malformed {
            kind,
            reason: "the hash is not 64 bytes of base64",
        }),
    }
}

// === impl MosquittoHash ===

impl MosquittoHash {
    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                let got = ctx.finish();
                bool::from(got.as_ref().ct_eq(hash.as_slice()))
            }
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
        }
    }

    /// The weak `$6$` form (one unsalted-strength SHA-512 round), which deserves a warning.
    pub fn is_weak(&self) -> bool {
        matches!(self, Self::Sha512 { .. })
    }
}

impl std::fmt::Debug for MosquittoHash {
    /// Names the kind, never the salt or hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sha512 { .. } => f.write_str("MosquittoHash($6$)"),
            Self::Pbkdf2Sha512 { iterations, .. } => {
                write!(f, "MosquittoHash($7$, {iterations} iterations)")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    /// Written by Debian's mosquitto_passwd 2.0.11: alice/secret (default), bob/hunter2
    /// (`-H sha512`), carol/pässwörd (`-H sha512-pbkdf2`).
    const FILE: &str = "alice:$7$101$+4/UiSKrSNGiQPEL$6WCEn6uTfcuFnYYWUkHoxWOiBVwkRi1WbDzWznl64R00pUdUv71/kGMTT1ZV6YenF18j6dHxydhnXzzHqaBpPA==\n\
bob:$6$Jc9q7TamKLWtVnrQ$uQ4zY7S6v9GBl3TVWI64Al82H4HXZDlhAXjQ57Tv6YiDq03lFNLopEHrQ7AwuJspqslSZL3+GiekAXhe+iibBQ==\n\
carol:$7$101$RDex4XLcd2Yz5c5Z$SrM9l8QxKQUT7YPbIJez4qwg93v/qH7UX0ka4h0Sod/BW4HWBZ3QRimZwywC9G5+h73feqLMHNVy7ElvH4frbg==\n";

    #[test]
    fn real_mosquitto_passwd_output_verifies() {
        let users = parse(FILE).unwrap();
        let names: Vec<_> = users.iter().map(|u| (u.line, u.name.as_str())).collect();
        assert_eq!(names, [(1, "alice"), (2, "bob"), (3, "carol")]);
        let check = |i: usize, pw: &str| users[i].hash.verify(pw.as_bytes());
        assert!(check(0, "secret") && !check(0, "Secret") && !check(0, ""));
        assert!(check(1, "hunter2") && !check(1, "hunter3"));
        assert!(check(2, "pässwörd") && !check(2, "passwort"));
        assert!(users[1].hash.is_weak() && !users[0].hash.is_weak());
        assert_eq!(
            format!("{:?}", users[0].hash),
            "MosquittoHash($7$, 101 iterations)"
        );
    }

    #[test]
    fn empty_file_and_crlf() {
        assert_eq!(parse("").unwrap(), vec![]);
        let crlf = FILE.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap().len(), 3);
    }

    #[test]
    fn every_bad_line_is_named() {
        let good = FILE.lines().next().unwrap();
        let cases: Vec<(String, PasswdError)> = vec![
            (format!("{good}\n\n{good}"), PasswdError::Blank),
            (format!("{good}\n   "), PasswdError::Blank),
            ("alice".into(), PasswdError::NoSeparator),
            (":$6$abcd$x".into(), PasswdError::Name(NameError::Empty)),
            (
                "a+b:$6$abcd$x".into(),
                PasswdError::Name(NameError::TopicCharacter('+')),
            ),
            ("alice:secret".into(), PasswdError::Plaintext),
            (
                "alice:$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA".into(),
                PasswdError::UnsupportedType("$argon2id$".into()),
            ),
            (
                "alice:$7$101$c2FsdA==".into(),
                PasswdError::Malformed {
                    kind: "$7$",
                    reason: "wrong number of '$' fields",
                },
            ),
            (
                "alice:$7$0$c2FsdA==$aGFzaA==".into(),
                PasswdError::Malformed {
                    kind: "$7$",
                    reason: "the iteration count is 0",
                },
            ),
            (
                "alice:$7$100001$c2FsdA==$aGFzaA==".into(),
                PasswdError::TooManyIterations(100_001),
            ),
            (
                "alice:$7$99999999999999999999999$c2FsdA==$aGFzaA==".into(),
                PasswdError::Malformed {
                    kind: "$7$",
                    reason: "the iteration count is not a number",
                },
            ),
            (
                "alice:$6$c2FsdA==$aGFzaA==".into(),
                PasswdError::Malformed {
                    kind: "$6$",
                    reason: "the hash is not 64 bytes of base64",
                },
            ),
            (
                "alice:$6$!!$aGFzaA==".into(),
                PasswdError::Malformed {
                    kind: "$6$",
                    reason: "the salt is not base64",
                },
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.error, want, "{text}");
            let line = text.lines().count().max(1);
            if want == PasswdError::Blank {
                assert!(err.line >= 2, "{text}: {err}");
            } else {
                assert_eq!(err.line as usize, line, "{text}: {err}");
            }
        }
    }
}
