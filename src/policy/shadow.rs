//! The shadow policy: a candidate policy set judged beside the enforced one, never enforced.
//!
//! What it owns: the comparison of an enforced decision with the shadow set's decision on the
//! same request ([`compare`], giving a [`Difference`] when the outcomes differ), and the
//! shadow's side of authentication, which reuses the enforced password verification instead of
//! paying for a second one ([`ShadowAuthn`]). Why it is separate: the comparison is the whole
//! meaning of "the shadow differs" and must be testable without a session; what to do with a
//! difference (count it, log it, show it to `moat ctl shadow`) is the edge's business
//! (`ops/shadow.rs`). What it must not do: change the enforced decision, or touch a clock, a
//! lock or a log.
//!
//! The shadow set is compiled exactly like the enforced one and travels *inside* the enforced
//! snapshot ([`Policy::shadow`]), so one pointer load per packet gives both, a reload swaps
//! them together, and a policy without a shadow costs one `Option` branch per decision.

use std::fmt;
use std::sync::Arc;

use super::authn::{AuthnDecision, AuthnStep, PasswordCheck};
use super::decision::{Decision, Verdict};
use super::{AuthnOptions, Credentials, Policy};

/// The decisions the shadow set is compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShadowAction {
    /// Admission of a connection by its address (`network:`).
    Connect,
    /// Authentication at CONNECT.
    Authenticate,
    /// Whether the identity may use its client id (`client_id:`), at CONNECT.
    ClientId,
    /// A PUBLISH from the client (and the will, at CONNECT).
    Publish,
    /// One filter of a SUBSCRIBE.
    Subscribe,
    /// A delivery from the broker.
    Receive,
}

// === impl ShadowAction ===

impl ShadowAction {
    /// Every action, in order.
    pub const ALL: [ShadowAction; 6] = [
        ShadowAction::Connect,
        ShadowAction::Authenticate,
        ShadowAction::ClientId,
        ShadowAction::Publish,
        ShadowAction::Subscribe,
        ShadowAction::Receive,
    ];

    /// The word used in metrics, logs and `moat ctl shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowAction::Connect => "connect",
            ShadowAction::Authenticate => "authenticate",
            ShadowAction::ClientId => "client_id",
            ShadowAction::Publish => "publish",
            ShadowAction::Subscribe => "subscribe",
            ShadowAction::Receive => "receive",
        }
    }
}

impl From<super::Action> for ShadowAction {
    fn from(action: super::Action) -> Self {
        match action {
            super::Action::Publish => ShadowAction::Publish,
            super::Action::Subscribe => ShadowAction::Subscribe,
            super::Action::Receive => ShadowAction::Receive,
        }
    }
}

impl fmt::Display for ShadowAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request on which the enforced and the shadow set disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What was asked.
    pub action: ShadowAction,
    /// What happened (the enforced set's decision).
    pub enforced: Decision,
    /// What the shadow set would have done.
    pub shadow: Decision,
}

/// Compares the enforced decision on a request with the shadow set's decision on the same
/// request. Only the outcome counts: two sets that reach the same verdict through different
/// rules (a rule moved to another line, split in two) do not differ, so renumbering a file does
/// not flood the differences; a different verdict does, with both rules named.
pub fn compare(action: ShadowAction, enforced: &Decision, shadow: &Decision) -> Option<Difference> {
    if enforced.verdict == shadow.verdict {
        return None;
    }
    Some(Difference {
        action,
        enforced: enforced.clone(),
        shadow: shadow.clone(),
    })
}

/// A verdict as a word, for logs and `moat ctl shadow`.
pub fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

/// The shadow set's side of one authentication, begun next to the enforced one.
#[derive(Debug)]
pub enum ShadowAuthn {
    /// The shadow decided without a password (certificate, anonymous, no password, or a
    /// refusal whose decoy verification cannot change it).
    Decided(AuthnDecision),
    /// The shadow verifies the same hash the enforced set verifies: the enforced outcome
    /// says whether the password matched.
    SameHash(PasswordCheck),
    /// The shadow would verify a different hash than the enforced set: comparing would cost a
    /// second verification, so this authentication is not compared.
    NotCompared,
}

// === impl ShadowAuthn ===

impl ShadowAuthn {
    /// Begins the shadow's authentication of `creds`, knowing the enforced set's first step.
    pub fn begin(
        shadow: &Policy,
        creds: &Credentials<'_>,
        opts: &AuthnOptions,
        enforced: &AuthnStep,
    ) -> ShadowAuthn {
        match shadow.begin_authentication(creds, opts) {
            AuthnStep::Decided(d) => ShadowAuthn::Decided(d),
            AuthnStep::Verify(check) if check.is_decoy() => {
                ShadowAuthn::Decided(check.decide(false))
            }
            AuthnStep::Verify(check) => match enforced {
                AuthnStep::Verify(e) if !e.is_decoy() && e.same_hash(&check) => {
                    ShadowAuthn::SameHash(check)
                }
                _ => ShadowAuthn::NotCompared,
            },
        }
    }

    /// The shadow's decision, given the enforced one (`None`: not compared).
    pub fn finish(self, enforced: &AuthnDecision) -> Option<AuthnDecision> {
        match self {
            ShadowAuthn::Decided(d) => Some(d),
            // The enforced check was against this user's own hash: it allowed iff it matched.
            ShadowAuthn::SameHash(check) => Some(check.decide(enforced.is_allowed())),
            ShadowAuthn::NotCompared => None,
        }
    }
}

// === impl Policy (shadow) ===

impl Policy {
    /// This snapshot with `shadow` as its shadow set (what a reload builds).
    pub fn with_shadow(mut self, shadow: Option<Arc<Policy>>) -> Policy {
        self.shadow = shadow;
        self
    }

    /// The shadow set judged beside this one, if one is configured.
    #[inline]
    pub fn shadow(&self) -> Option<&Arc<Policy>> {
        self.shadow.as_ref()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
