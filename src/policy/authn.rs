//! Authentication: who is this client? Certificate CN, username + password (argon2id, or a
//! mosquitto `$7$`/`$6$` hash from a `password_file:`), or anonymous.
//!
//! One pure function, [`Policy::authenticate`], turns the credentials a client presented into an
//! [`AuthnDecision`] naming the rule that decided. Order of rules:
//!
//! 1. A verified certificate CN, when `cert_identity` is on, is the identity; the CONNECT
//!    username is ignored, or must equal the CN when `username_must_match_cert` is on. A password
//!    is then ignored. A CN must be a valid identity name (no `+ # /`, no control characters).
//! 2. Otherwise, `username_must_match_cert` still forbids a username that differs from a
//!    presented CN; then username + password are checked against the policy's users (argon2id).
//! 3. No credentials at all: the `anonymous` setting, deny by default.
//!
//! Timing: every attempt that carries a password pays exactly one verification, also for
//! unknown users, password-less users and malformed names (against a decoy: the policy's first
//! password hash, or a built-in argon2id one), so response time does not reveal which names
//! exist. (A policy mixing argon2id and PBKDF2 users still shows which kind a known name has.)
//! Every hash comparison is constant-time. Hashing is CPU-heavy by design, so the server splits
//! the work: [`Policy::begin_authentication`] is cheap and yields either the decision or the one
//! [`PasswordCheck`] it depends on, which the server's verification pool (`src/authn/`) runs in
//! memory it owns (`policy/password.rs`). This module never spawns, sleeps or reads the clock.

use super::decision::{Decision, RuleRef, Verdict};
use super::password::HashMemory;
use super::{Policy, Secret};

/// Longest identity name: the MQTT UTF-8 string limit [MQTT-1.5.3-1].
const MAX_NAME_BYTES: usize = 65_535;

/// The name given to clients that authenticate without credentials. Reserved: no user or
/// certificate may claim it.
pub const ANONYMOUS: &str = "anonymous";

/// What a client presented. `cert_cn` must be set only for a certificate that the TLS layer has
/// verified against the configured client CA.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// CONNECT username, if the username flag was set.
    pub username: Option<&'a str>,
    /// CONNECT password (binary in MQTT), if the password flag was set.
    pub password: Option<&'a [u8]>,
    /// Common name of the verified client certificate.
    pub cert_cn: Option<&'a str>,
}

/// The TLS settings that shape authentication (from `tls:` in moat.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthnOptions {
    /// A verified client certificate authenticates the client by its CN.
    pub cert_identity: bool,
    /// A CONNECT username next to a certificate must equal the certificate's CN.
    pub username_must_match_cert: bool,
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthnDecision {
    /// The client is `identity`.
    Allow {
        /// Who the client is.
        identity: Identity,
        /// The rule that accepted it.
        rule: RuleRef,
    },
    /// The client is refused.
    Deny {
        /// Why, coarsely (this is what reaches the wire).
        reason: AuthnFailure,
        /// The rule that refused it (this is what reaches the audit log).
        rule: RuleRef,
    },
}

// === impl AuthnDecision ===

impl AuthnDecision {
    /// The rule that decided.
    pub fn rule(&self) -> &RuleRef {
        match self {
            Self::Allow { rule, .. } | Self::Deny { rule, .. } => rule,
        }
    }

    /// Whether the client was accepted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// The verdict and rule, without the identity or reason.
    pub fn decision(&self) -> Decision {
        let verdict = if self.is_allowed() {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        Decision {
            verdict,
            rule: self.rule().clone(),
        }
    }

    fn allow(name: &str, groups: Vec<String>, source: IdentitySource, rule: RuleRef) -> Self {
        let identity = Identity {
            name: name.to_owned(),
            groups,
            source,
        };
        Self::Allow { identity, rule }
    }

    fn deny(reason: AuthnFailure, rule: RuleRef) -> Self {
        Self::Deny { reason, rule }
    }
}

/// Who an authenticated client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, certificate CN, or [`ANONYMOUS`].
    pub name: String,
    /// Groups from the policy's user entry (empty for anonymous and unlisted certificates).
    pub groups: Vec<String>,
    /// How the identity was established.
    pub source: IdentitySource,
}

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentitySource {
    /// Username and password.
    Password,
    /// Verified client certificate CN.
    Certificate,
    /// No credentials; the policy allows anonymous clients.
    Anonymous,
}

/// Why authentication failed. The session maps this to the wire in its one outcome function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthnFailure {
    /// Wrong password, unknown user, malformed name, username/certificate mismatch
    /// (CONNACK 0x04 in 3.1.1, 0x86 in 5).
    BadCredentials,
    /// No acceptable credentials: anonymous refused, username without password
    /// (CONNACK 0x05 in 3.1.1, 0x87 in 5).
    NotAuthorized,
}

/// Why a string is not a valid identity (user, group or certificate) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Names are never empty.
    #[error("it is empty")]
    Empty,
    /// Longer than an MQTT string can carry.
    #[error("it is longer than 65535 bytes")]
    TooLong,
    /// `+`, `#` and `/` would change the meaning of topics built from the name (`{username}`).
    #[error("it contains {0:?}; '+', '#' and '/' are not allowed because names are substituted into topics")]
    TopicCharacter(char),
    /// NUL and other control characters [MQTT-1.5.4-2].
    #[error("it contains the control character {0:?}")]
    ControlCharacter(char),
    /// The name anonymous clients get.
    #[error("'anonymous' is reserved for clients without credentials")]
    Reserved,
}

/// Checks a name that becomes an identity or group: non-empty, at most 65535 bytes, no `+ # /`,
/// no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '+' | '#' | '/')) {
        return Err(NameError::TopicCharacter(c));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter(c));
    }
    Ok(())
}

/// [`check_name`] plus the reserved name: for user names and certificate CNs.
pub(crate) fn check_identity_name(name: &str) -> Result<(), NameError> {
    check_name(name)?;
    if name == ANONYMOUS {
        return Err(NameError::Reserved);
    }
    Ok(())
}

// === impl Policy (authentication) ===

impl Policy {
    /// Decides who the client is, or why it is refused. CPU-heavy (argon2) when a password is
    /// presented, and allocates the hash's memory on every call: the server uses
    /// [`Policy::begin_authentication`] and verifies with memory it keeps.
    pub fn authenticate(&self, creds: &Credentials<'_>, opts: &AuthnOptions) -> AuthnDecision {
        match self.begin_authentication(creds, opts) {
            AuthnStep::Decided(decision) => decision,
            AuthnStep::Verify(check) => {
                let password = creds.password.unwrap_or_default();
                let matched = check.verify(password, &mut HashMemory::default());
                check.decide(matched)
            }
        }
    }

    /// The cheap part of [`Policy::authenticate`]: the decision, or the one password
    /// verification it still depends on. Every attempt that carries a password (and is not
    /// decided by a certificate) gets a [`PasswordCheck`], against the user's hash or the decoy.
    pub fn begin_authentication(&self, creds: &Credentials<'_>, opts: &AuthnOptions) -> AuthnStep {
        if let (Some(cn), Some(username)) = (creds.cert_cn, creds.username) {
            if opts.username_must_match_cert && !same_name(cn, username) {
                let rule = RuleRef::builtin("username-must-match-cert");
                let deny = AuthnDecision::deny(AuthnFailure::BadCredentials, rule);
                return self.burn(creds.password, deny);
            }
        }
        match creds.cert_cn {
            Some(cn) if opts.cert_identity => AuthnStep::Decided(self.by_certificate(cn)),
            _ => self.by_password(creds.username, creds.password),
        }
    }

    fn by_certificate(&self, cn: &str) -> AuthnDecision {
        if check_identity_name(cn).is_err() {
            let rule = RuleRef::builtin("invalid-certificate-cn");
            return AuthnDecision::deny(AuthnFailure::BadCredentials, rule);
        }
        let (groups, rule) = match self.users.get(cn) {
            Some(user) => (user.groups.clone(), user.rule.clone()),
            None => (Vec::new(), RuleRef::builtin("certificate-identity")),
        };
        AuthnDecision::allow(cn, groups, IdentitySource::Certificate, rule)
    }

    fn by_password(&self, username: Option<&str>, password: Option<&[u8]>) -> AuthnStep {
        use AuthnFailure::{BadCredentials, NotAuthorized};
        let username = match (username, password) {
            (None, None) => return AuthnStep::Decided(self.anonymous_decision()),
            (None, Some(_)) => {
                let rule = RuleRef::builtin("password-without-username");
                return self.burn(password, AuthnDecision::deny(BadCredentials, rule));
            }
            (Some(username), None) => {
                let rule = match self.users.get(username) {
                    Some(user) => user.rule.clone(),
                    None => RuleRef::builtin("password-required"),
                };
                return AuthnStep::Decided(AuthnDecision::deny(NotAuthorized, rule));
            }
            (Some(username), Some(_)) => username,
        };
        if check_identity_name(username).is_err() {
            let rule = RuleRef::builtin("invalid-username");
            return self.burn(password, AuthnDecision::deny(BadCredentials, rule));
        }
        let Some(user) = self.users.get(username) else {
            let rule = RuleRef::builtin("unknown-user");
            return self.burn(password, AuthnDecision::deny(BadCredentials, rule));
        };
        let deny = AuthnDecision::deny(BadCredentials, user.rule.clone());
        let Some(hash) = &user.password else {
            // A certificate-only user: same cost and same answer as a wrong password.
            return self.burn(password, deny);
        };
        let groups = user.groups.clone();
        let rule = user.rule.clone();
        AuthnStep::Verify(PasswordCheck {
            hash: hash.clone(),
            matched: AuthnDecision::allow(username, groups, IdentitySource::Password, rule),
            mismatched: deny,
        })
    }

    fn anonymous_decision(&self) -> AuthnDecision {
        let rule = self.anonymous.rule.clone();
        if self.anonymous.allowed {
            AuthnDecision::allow(ANONYMOUS, Vec::new(), IdentitySource::Anonymous, rule)
        } else {
            AuthnDecision::deny(AuthnFailure::NotAuthorized, rule)
        }
    }

    /// `decision`, after one verification against the decoy hash when a password was
    /// presented, so refusing costs what checking does.
    fn burn(&self, password: Option<&[u8]>, decision: AuthnDecision) -> AuthnStep {
        match (password, &self.decoy) {
            (Some(_), Some(decoy)) => AuthnStep::Verify(PasswordCheck {
                hash: decoy.clone(),
                // The result is meaningless: the attempt is refused whatever it is.
                matched: decision.clone(),
                mismatched: decision,
            }),
            _ => AuthnStep::Decided(decision),
        }
    }
}

/// Where an authentication stands after its cheap part ([`Policy::begin_authentication`]).
#[derive(Debug)]
pub enum AuthnStep {
    /// Decided without a password hash (certificate, anonymous, no password).
    Decided(AuthnDecision),
    /// One password verification decides.
    Verify(PasswordCheck),
}

/// One password verification and the decision either way. Owns a copy of the hash, so it can
/// travel to the thread that verifies.
pub struct PasswordCheck {
    /// The user's hash, or the decoy.
    hash: Secret,
    /// The decision when the password matches (for a decoy: the same refusal as below).
    matched: AuthnDecision,
    /// The decision when it does not.
    mismatched: AuthnDecision,
}

// === impl PasswordCheck ===

impl PasswordCheck {
    /// Whether `password` matches the hash: one verification, in `memory` (grown if the hash
    /// needs more than it holds).
    pub fn verify(&self, password: &[u8], memory: &mut HashMemory) -> bool {
        self.hash.verify(password, memory)
    }

    /// argon2 blocks (KiB) the verification needs (0 for mosquitto hashes).
    pub fn memory_blocks(&self) -> usize {
        self.hash.memory_blocks()
    }

    /// Whether the outcome does not depend on the verification (a refusal that only burns the
    /// same time as a real check, against the decoy or a certificate-only user's nothing).
    pub fn is_decoy(&self) -> bool {
        self.matched == self.mismatched
    }

    /// Whether `other` verifies the same stored hash (same user entry text in both sets), so
    /// one verification answers both: the shadow set reuses the enforced result.
    pub fn same_hash(&self, other: &PasswordCheck) -> bool {
        match (&self.hash, &other.hash) {
            (Secret::Argon2(a), Secret::Argon2(b)) => a.as_str() == b.as_str(),
            (Secret::Mosquitto(a), Secret::Mosquitto(b)) => a == b,
            _ => false,
        }
    }

    /// The decision, given whether the password matched. Only a match against a user's own
    /// hash can allow; a decoy verification refuses either way.
    pub fn decide(self, matched: bool) -> AuthnDecision {
        if matched {
            self.matched
        } else {
            self.mismatched
        }
    }
}

impl std::fmt::Debug for PasswordCheck {
    /// Names the decisions, never the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("matched", &self.matched)
            .field("mismatched", &self.mismatched)
            .finish_non_exhaustive()
    }
}

/// Name equality without an early exit on the first differing byte.
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
