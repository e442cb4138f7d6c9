//! The admin listener's credential: a bearer token read from a file (again on every reload),
//! compared in constant time.
//!
//! Why it is separate: it is the one check between the network and the control routes, and
//! it must be auditable on its own. What it must not do: log the token, or answer faster for a
//! token that shares a prefix with the right one (both sides are hashed to a fixed length and
//! compared with `subtle`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Largest token file read: a token is a line of text, not a document.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// Shortest token accepted: anything shorter can be guessed over a network.
const MIN_TOKEN_LEN: usize = 16;

/// Why the token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("admin.token_file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no usable token.
    #[error("admin.token_file {}: {why}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The bearer token every admin request must carry (when one is configured), kept only as
/// its SHA-256 digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

// === impl Token ===

impl Token {
    /// Reads the token from `path`: the file's text without surrounding whitespace, at least
    /// 16 bytes.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let read = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let unusable = |why| TokenError::Unusable {
            path: path.to_path_buf(),
            why,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(unusable(
                "larger than 4096 bytes: expected one line holding the token",
            ));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| unusable("not UTF-8 text"))?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(unusable("the token is shorter than 16 characters"));
        }
        if token.chars().any(char::is_whitespace) {
            return Err(unusable("the token contains white space"));
        }
        Ok(Token::from_secret(token))
    }

    /// A token from its text (tests, and `load`).
    pub fn from_secret(secret: &str) -> Token {
        Token {
            digest: digest(secret.as_bytes()),
        }
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.digest.ct_eq(&digest(presented)))
    }
}

/// The token in force and the file it comes from: read at start, read again on every reload
/// (SIGHUP, `moat ctl reload`), so a rotated token applies to the next request.
pub struct LiveToken {
    /// `admin.token_file` as the listener started with it (another path needs a restart).
    path: PathBuf,
    /// The token requests are checked against now.
    current: ArcSwap<Token>,
}

/// What a reread of the token file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reread {
    /// The file holds another token, in force from the next request.
    Replaced,
    /// The file holds the token already in force.
    Unchanged,
}

// === impl LiveToken ===

impl LiveToken {
    /// Reads the token from `path` (see [`Token::load`]).
    pub fn load(path: &Path) -> Result<LiveToken, TokenError> {
        Ok(LiveToken {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(Token::load(path)?),
        })
    }

    /// Reads the file again and puts its token in force. A file that cannot be read or holds
    /// no usable token changes nothing: the running token stays, so a half-written or deleted
    /// file never opens the admin listener nor locks the operator out.
    pub fn reread(&self) -> Result<Reread, TokenError> {
        let new = Token::load(&self.path)?;
        // Digests of the configured secret on both sides: nothing a caller chose is compared.
        if new.digest == self.current.load().digest {
            return Ok(Reread::Unchanged);
        }
        self.current.store(Arc::new(new));
        Ok(Reread::Replaced)
    }

    /// Whether `presented` is the token in force (see [`Token::matches`]).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.current.load().matches(presented)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Middleware: lets a request through when no token is configured or when it carries
/// `Authorization: Bearer <token>`; 401 otherwise (with `WWW-Authenticate`, as RFC 6750 asks).
pub(super) async fn require(
    State(token): State<Option<Arc<LiveToken>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        _ => {
            tracing::warn!(
                target: "moat::audit",
                path = request.uri().path(),
                reason = if presented.is_some() { "wrong token" } else { "no token" },
                "refused admin request"
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::from_secret("0123456789abcdef-secret");
        assert!(token.matches(b"0123456789abcdef-secret"));
        assert!(!token.matches(b"0123456789abcdef-secreT"));
        assert!(!token.matches(b"0123456789abcdef-secret "));
        assert!(!token.matches(b""));
    }

    #[test]
    fn a_short_or_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(Token::load(&path).is_err());
        std::fs::write(&path, "  \n").unwrap();
        assert!(Token::load(&path).is_err());
        std::fs::write(&path, "0123456789abcdef-secret\n").unwrap();
        assert!(Token::load(&path)
            .unwrap()
            .matches(b"0123456789abcdef-secret"));
    }

    #[test]
    fn a_reread_puts_a_new_token_in_force_and_a_broken_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef-first\n").unwrap();
        let live = LiveToken::load(&path).unwrap();
        assert_eq!(live.reread().unwrap(), Reread::Unchanged);
        std::fs::write(&path, "0123456789abcdef-second\n").unwrap();
        assert_eq!(live.reread().unwrap(), Reread::Replaced);
        assert!(live.matches(b"0123456789abcdef-second"));
        assert!(!live.matches(b"0123456789abcdef-first"));
        for broken in ["", "short\n"] {
            std::fs::write(&path, broken).unwrap();
            assert!(live.reread().is_err());
            assert!(live.matches(b"0123456789abcdef-second"));
        }
        std::fs::remove_file(&path).unwrap();
        assert!(live.reread().is_err());
        assert!(live.matches(b"0123456789abcdef-second"));
    }
}
