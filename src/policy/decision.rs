//! Decisions and the rules that make them.
//!
//! Every verdict moat reaches about a client (admit, authenticate, authorize) names the rule that
//! made it, so the code that acts on a refusal can log it once with that rule and `moat explain`
//! can print the same reference. A [`RuleRef`] is either a place in a policy file
//! (`policies/example.yaml:7 user alice`) or a built-in rule that no file wrote
//! (`builtin default-deny`). This file holds only these shared shapes; no decision is made here.

use std::fmt;
use std::sync::Arc;

/// The rule that made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The policy file that holds the rule (as the operator named it); `None` for built-in rules.
    pub file: Option<Arc<str>>,
    /// 1-based line of the rule in `file`; 0 for built-in rules.
    pub line: u32,
    /// What the rule is, e.g. `user alice`, `anonymous: true`, `default-deny`.
    pub label: Arc<str>,
}

// === impl RuleRef ===

impl RuleRef {
    /// A rule written at `line` of `file`.
    pub fn at(file: Arc<str>, line: u32, label: impl Into<Arc<str>>) -> Self {
        Self {
            file: Some(file),
            line,
            label: label.into(),
        }
    }

    /// A rule built into moat (deny by default, protocol requirements), not written in a file.
    pub fn builtin(label: &str) -> Self {
        Self {
            file: None,
            line: 0,
            label: label.into(),
        }
    }

    /// Whether no policy file wrote this rule.
    pub fn is_builtin(&self) -> bool {
        self.file.is_none()
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{} {}", self.line, self.label),
            None => write!(f, "builtin {}", self.label),
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The client may go on.
    Allow,
    /// The client is refused.
    Deny,
}

/// A verdict and the rule that reached it: the shape shared by every policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Which rule decided.
    pub rule: RuleRef,
}

// === impl Decision ===

impl Decision {
    /// An allowing decision made by `rule`.
    pub fn allow(rule: RuleRef) -> Self {
        Self {
            verdict: Verdict::Allow,
            rule,
        }
    }

    /// A denying decision made by `rule`.
    pub fn deny(rule: RuleRef) -> Self {
        Self {
            verdict: Verdict::Deny,
            rule,
        }
    }

    /// Whether the client may go on.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        };
        write!(f, "{verdict} by {}", self.rule)
    }
}
