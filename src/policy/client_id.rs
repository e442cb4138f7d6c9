//! Binding client identifiers to identities (`client_id:` in a policy file).
//!
//! What it owns: the rule that an authenticated client may only use client identifiers derived
//! from its identity, for deployments whose ids follow a scheme (catalogue §A.21). Sessions of
//! different identities never meet whatever the ids, because the broker sees each id namespaced
//! by identity (`session/broker_id.rs`). A template names the identity with `{identity}`:
//!
//! ```yaml
//! client_id: { must_equal: "{identity}" }         # the client id is the user name / CN
//! client_id: { must_start_with: "{identity}-" }   # alice-1, alice-kitchen, …
//! ```
//!
//! A `must_start_with` template must not end with `{identity}`: identity `al` would otherwise
//! own every client id of `alice`. Anonymous clients share one identity and are not bound.
//! Why it is separate: one pure decision with its own compile step.
//! What it must not do: assign client ids, or look at live sessions.

use std::sync::Arc;

use super::authn::ANONYMOUS;
use super::decision::{Decision, RuleRef};

/// The placeholder for the identity in a template.
pub const PLACEHOLDER: &str = "{identity}";

/// A compiled `client_id:` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdRule {
    /// Exact or prefix match.
    kind: BindKind,
    /// Text before `{identity}`.
    before: String,
    /// Text after `{identity}`.
    after: String,
    /// Where the rule is written.
    rule: RuleRef,
}

/// How a client id must relate to the identity's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// `must_equal`.
    Equal,
    /// `must_start_with`.
    StartWith,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Not exactly one `{identity}`.
    #[error("the template must contain {{identity}} exactly once")]
    Placeholder,
    /// Braces other than the placeholder.
    #[error("the only placeholder is {{identity}}")]
    OtherBraces,
    /// `must_start_with` ending in the identity.
    #[error("a must_start_with template must not end with {{identity}}: identity 'al' would own the client ids of 'alice'; add a separator, e.g. \"{{identity}}-\"")]
    Unseparated,
    /// Both or neither of `must_equal` / `must_start_with`.
    #[error("set exactly one of must_equal and must_start_with")]
    OneOf,
}

// === impl ClientIdRule ===

impl ClientIdRule {
    /// Compiles a template written at `file:line`.
    pub fn new(
        kind: BindKind,
        template: &str,
        file: Arc<str>,
        line: u32,
    ) -> Result<Self, TemplateError> {
        let (before, after) = template
            .split_once(PLACEHOLDER)
            .ok_or(TemplateError::Placeholder)?;
        if after.contains(PLACEHOLDER) {
            return Err(TemplateError::Placeholder);
        }
        if before.contains(['{', '}']) || after.contains(['{', '}']) {
            return Err(TemplateError::OtherBraces);
        }
        if kind == BindKind::StartWith && after.is_empty() {
            return Err(TemplateError::Unseparated);
        }
        let verb = match kind {
            BindKind::Equal => "must_equal",
            BindKind::StartWith => "must_start_with",
        };
        Ok(Self {
            kind,
            before: before.to_owned(),
            after: after.to_owned(),
            rule: RuleRef::at(file, line, format!("client_id: {verb} {template:?}")),
        })
    }

    /// Whether `identity` may use `client_id`, and the rule that says so.
    pub fn check(&self, identity: &str, client_id: &str) -> Decision {
        if identity == ANONYMOUS {
            return Decision::allow(RuleRef::builtin("client-id-unbound-for-anonymous"));
        }
        let rest = client_id
            .strip_prefix(self.before.as_str())
            .and_then(|r| r.strip_prefix(identity))
            .and_then(|r| r.strip_prefix(self.after.as_str()));
        let ok = match (self.kind, rest) {
            (BindKind::Equal, Some(rest)) => rest.is_empty(),
            (BindKind::StartWith, Some(_)) => true,
            (_, None) => false,
        };
        if ok {
            Decision::allow(self.rule.clone())
        } else {
            Decision::deny(self.rule.clone())
        }
    }

    /// Where the rule is written.
    pub fn rule(&self) -> &RuleRef {
        &self.rule
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(kind: BindKind, t: &str) -> Result<ClientIdRule, TemplateError> {
        ClientIdRule::new(kind, t, "p.yaml".into(), 3)
    }

    #[test]
    fn must_equal_binds_the_id_to_the_identity() {
        let r = rule(BindKind::Equal, "{identity}").unwrap();
        assert!(r.check("alice", "alice").is_allowed());
        assert!(!r.check("alice", "alice2").is_allowed());
        assert!(!r.check("bob", "alice").is_allowed());
        assert_eq!(
            r.check("bob", "alice").rule.to_string(),
            "p.yaml:3 client_id: must_equal \"{identity}\""
        );
        let r = rule(BindKind::Equal, "plant1-{identity}").unwrap();
        assert!(r.check("alice", "plant1-alice").is_allowed());
        assert!(!r.check("alice", "alice").is_allowed());
    }

    #[test]
    fn must_start_with_needs_a_separator() {
        assert_eq!(
            rule(BindKind::StartWith, "{identity}"),
            Err(TemplateError::Unseparated)
        );
        let r = rule(BindKind::StartWith, "{identity}-").unwrap();
        assert!(r.check("alice", "alice-1").is_allowed());
        assert!(r.check("alice", "alice-").is_allowed());
        assert!(!r.check("alice", "alice").is_allowed());
        assert!(!r.check("al", "alice-1").is_allowed());
        assert!(!r.check("bob", "alice-1").is_allowed());
    }

    #[test]
    fn templates_are_checked() {
        for t in ["", "alice", "{identity}{identity}", "{identity}-{identity}"] {
            assert_eq!(
                rule(BindKind::Equal, t),
                Err(TemplateError::Placeholder),
                "{t}"
            );
        }
        assert_eq!(
            rule(BindKind::Equal, "{user}-{identity}"),
            Err(TemplateError::OtherBraces)
        );
    }

    #[test]
    fn anonymous_is_not_bound() {
        let r = rule(BindKind::Equal, "{identity}").unwrap();
        assert!(r.check(ANONYMOUS, "any").is_allowed());
    }
}
