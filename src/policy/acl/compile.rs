//! `acl:` and `tests:` in policy files → compiled [`Rule`]s and [`PolicyCase`]s.
//!
//! What it owns: the raw serde shapes of a rule and a test case, and every check made on them
//! once, at load time, with the file, line and column of the offending value: exactly one of
//! `allow`/`deny`, known actions, valid filters with whole-level placeholders, no `$share/` in a
//! rule (rules name the inner filter), sane QoS, parseable networks, conditions only where they
//! mean something. Why it is separate: `policy/compile.rs` merges files; this file only turns
//! one rule or case into its compiled form, so the two evolve apart. Pure: text in, values out.
//!
//! A rule in YAML:
//!
//! ```yaml
//! acl:
//!   - allow: [publish, subscribe, receive]   # or `all`; `deny: …` for a denying rule
//!     topics: ["devices/{username}/#"]
//!     groups: [devices]                       # who: users, groups, certs (any of them)
//!     listeners: [mqtts]                      # and, when given, one of these listeners
//!     sources: [10.0.0.0/8]                   # and one of these networks
//!     max_qos: 1                              # conditions (allow rules only)
//!     retain: false
//!   - deny: subscribe
//!     topics: ["test/nosubscribe"]
//!     subscribe_overlap: withhold             # deny rules: `#` granted, these topics withheld
//! ```
//!
//! and at the top of one file, the default for every deny rule and for `default-deny`:
//! `subscribe_overlap: strict | withhold` (`subscribe.rs`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::cases::PolicyCase;
use super::rule::{Pattern, Placeholder, Rule, Who};
use super::{Acl, Action, OverlapSetting, Subject, SubscribeOverlap};
use crate::config::{quoted, Position, SourceLocation};
use crate::mqtt::topic;
use crate::policy::authn::check_name;
use crate::policy::decision::{RuleRef, Verdict};
use crate::policy::error::{AclError, PolicyError, PolicyErrorKind, PolicySource};
use crate::policy::IdentitySource;

/// Longest rule label kept in a [`RuleRef`] (audit lines stay short).
const MAX_LABEL: usize = 96;

/// `allow:` / `deny:` value: one action word or a list of them.
#[derive(Debug)]
pub(crate) struct RawActions(Vec<String>);

/// The same shapes the deserializer takes: one action word, or a list of them; the words are
/// `Action`'s own spellings and `all`.
impl schemars::JsonSchema for RawActions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Actions".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let words: Vec<&str> = std::iter::once("all")
            .chain(Action::ALL.iter().map(|a| a.as_str()))
            .collect();
        schemars::json_schema!({
            "description": "An action (publish, subscribe, receive, all) or a list of them.",
            "anyOf": [
                { "enum": words },
                { "type": "array", "items": { "enum": words }, "minItems": 1 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RawActions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawActions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action (publish, subscribe, receive, all) or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawActions, E> {
                Ok(RawActions(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawActions, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<String>()? {
                    words.push(word);
                }
                Ok(RawActions(words))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `acl[]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[schemars(with = "Option<RawActions>")]
    allow: Option<Spanned<RawActions>>,
    #[schemars(with = "Option<RawActions>")]
    deny: Option<Spanned<RawActions>>,
    #[schemars(with = "Vec<String>")]
    topics: Spanned<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    users: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    groups: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    certs: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    listeners: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    sources: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    share_groups: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<u8>")]
    max_qos: Option<Spanned<u8>>,
    #[schemars(with = "Option<bool>")]
    retain: Option<Spanned<bool>>,
    disconnect: Option<bool>,
    #[schemars(with = "Option<SubscribeOverlap>")]
    subscribe_overlap: Option<Spanned<SubscribeOverlap>>,
}

/// `tests[]`: one expected decision.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCase {
    user: Option<String>,
    client_id: Option<String>,
    cert_cn: Option<String>,
    listener: Option<String>,
    #[schemars(with = "Option<String>")]
    source: Option<Spanned<String>>,
    #[schemars(with = "String")]
    action: Spanned<String>,
    #[schemars(with = "String")]
    topic: Spanned<String>,
    #[schemars(with = "Option<u8>")]
    qos: Option<Spanned<u8>>,
    retain: Option<bool>,
    #[schemars(with = "String")]
    expect: Spanned<String>,
}

/// Rules and cases gathered across files, in order.
#[derive(Debug, Default)]
pub(crate) struct AclBuilder {
    rules: Vec<Rule>,
    cases: Vec<PolicyCase>,
    /// `subscribe_overlap:` and where it was first set.
    overlap: Option<(OverlapSetting, SourceLocation)>,
}

// === impl AclBuilder ===

impl AclBuilder {
    /// Compiles one file's `acl:`, `tests:` and `subscribe_overlap:` entries.
    pub(crate) fn add(
        &mut self,
        source: &PolicySource,
        file: &Arc<str>,
        rules: Option<Vec<RawRule>>,
        cases: Option<Vec<RawCase>>,
        overlap: Option<Spanned<SubscribeOverlap>>,
    ) -> Result<(), PolicyError> {
        if let Some(overlap) = overlap {
            self.set_overlap(source, file, &overlap)?;
        }
        for raw in rules.unwrap_or_default() {
            self.rules.push(compile_rule(source, file, raw)?);
        }
        for raw in cases.unwrap_or_default() {
            self.cases.push(compile_case(source, raw)?);
        }
        Ok(())
    }

    /// The policy-wide `subscribe_overlap`: one value, whichever files set it.
    fn set_overlap(
        &mut self,
        source: &PolicySource,
        file: &Arc<str>,
        value: &Spanned<SubscribeOverlap>,
    ) -> Result<(), PolicyError> {
        let position = Position::of_spanned(value);
        match &self.overlap {
            Some((first, at)) if first.default != value.value => {
                let kind = AclError::ConflictingOverlap {
                    value: value.value,
                    other: first.default,
                    first: at.clone(),
                };
                Err(fail(source, position, kind))
            }
            Some(_) => Ok(()),
            None => {
                let label = format!("subscribe_overlap: {}", value.value);
                let setting = OverlapSetting {
                    default: value.value,
                    rule: RuleRef::at(file.clone(), position.line, label),
                    overrides: 0,
                };
                self.overlap = Some((setting, SourceLocation::new(&source.path, position)));
                Ok(())
            }
        }
    }

    /// The indexed ACL and the test cases.
    pub(crate) fn finish(self) -> (Acl, Vec<PolicyCase>) {
        let overlap = self.overlap.map(|(o, _)| o).unwrap_or_default();
        (Acl::new(self.rules, overlap), self.cases)
    }
}

fn fail(source: &PolicySource, position: Position, kind: AclError) -> PolicyError {
    PolicyError {
        at: SourceLocation::new(&source.path, position),
        kind: PolicyErrorKind::Acl(kind),
    }
}

fn compile_rule(source: &PolicySource, file: &Arc<str>, raw: RawRule) -> Result<Rule, PolicyError> {
    let (verdict, words) = match (raw.allow, raw.deny) {
        (Some(a), None) => (Verdict::Allow, a),
        (None, Some(d)) => (Verdict::Deny, d),
        _ => {
            return Err(fail(
                source,
                Position::of_spanned(&raw.topics),
                AclError::Verdict,
            ))
        }
    };
    let at = Position::of_spanned(&words);
    let actions = actions(&words.value.0).map_err(|k| fail(source, at, k))?;
    if raw.topics.value.is_empty() {
        return Err(fail(source, at, AclError::NoTopics));
    }
    let mut patterns = Vec::with_capacity(raw.topics.value.len());
    for t in &raw.topics.value {
        patterns.push(pattern(&t.value).map_err(|k| fail(source, Position::of_spanned(t), k))?);
    }
    let names = |list: &Option<Vec<Spanned<String>>>, what: &'static str| {
        let mut out = Vec::new();
        for n in list.iter().flatten() {
            check_name(&n.value).map_err(|reason| {
                let kind = AclError::Name {
                    list: what,
                    name: quoted(&n.value),
                    reason,
                };
                fail(source, Position::of_spanned(n), kind)
            })?;
            out.push(Box::<str>::from(n.value.as_str()));
        }
        Ok::<_, PolicyError>(out)
    };
    let mut sources = Vec::new();
    for s in raw.sources.iter().flatten() {
        let net = parse_net(&s.value).ok_or_else(|| {
            fail(
                source,
                Position::of_spanned(s),
                AclError::Source(quoted(&s.value)),
            )
        })?;
        sources.push(net);
    }
    let who = Who {
        users: names(&raw.users, "users")?,
        groups: names(&raw.groups, "groups")?,
        certs: names(&raw.certs, "certs")?,
        listeners: names(&raw.listeners, "listeners")?,
        sources,
    };
    let share_groups = match &raw.share_groups {
        None => None,
        Some(_) if actions != [false, true, false] => {
            return Err(fail(source, at, AclError::ShareGroupsNotSubscribe));
        }
        Some(_) => Some(names(&raw.share_groups, "share_groups")?),
    };
    let max_qos = match &raw.max_qos {
        None => 2,
        Some(q) if verdict == Verdict::Deny => {
            return Err(fail(
                source,
                Position::of_spanned(q),
                AclError::ConditionOnDeny("max_qos"),
            ));
        }
        Some(q) if q.value > 2 => {
            return Err(fail(
                source,
                Position::of_spanned(q),
                AclError::MaxQos(q.value),
            ));
        }
        Some(q) => q.value,
    };
    let retain = match &raw.retain {
        None => true,
        Some(r) if verdict == Verdict::Deny => {
            return Err(fail(
                source,
                Position::of_spanned(r),
                AclError::ConditionOnDeny("retain"),
            ));
        }
        Some(r) => r.value,
    };
    // Only a deny rule that covers subscribe refuses filters, so only it can withhold instead.
    let overlap = match &raw.subscribe_overlap {
        None => None,
        Some(o)
            if verdict == Verdict::Deny
                && actions.get(Action::Subscribe as usize) == Some(&true) =>
        {
            Some(o.value)
        }
        Some(o) => {
            return Err(fail(
                source,
                Position::of_spanned(o),
                AclError::OverlapNotDenySubscribe,
            ));
        }
    };
    let label = label(verdict, &words.value.0, &raw.topics.value);
    Ok(Rule {
        verdict,
        actions,
        patterns,
        who,
        share_groups,
        max_qos,
        retain,
        disconnect: raw.disconnect.unwrap_or(false),
        overlap,
        rule: RuleRef::at(file.clone(), at.line, label),
    })
}

fn actions(words: &[String]) -> Result<[bool; 3], AclError> {
    let mut set = [false; 3];
    for word in words {
        if word == "all" {
            set = [true; 3];
            continue;
        }
        let action = Action::parse(word).ok_or_else(|| AclError::UnknownAction(quoted(word)))?;
        if let Some(slot) = set.get_mut(action as usize) {
            *slot = true;
        }
    }
    if set == [false; 3] {
        return Err(AclError::NoAction);
    }
    Ok(set)
}

/// A rule's topic filter → levels, placeholders recognised as whole levels only.
fn pattern(filter: &str) -> Result<Vec<Pattern>, AclError> {
    if filter.starts_with("$share/") {
        return Err(AclError::SharedInRule(quoted(filter)));
    }
    let mut levels = Vec::new();
    let mut plain = Vec::new();
    for level in filter.split('/') {
        if let Some(p) = Placeholder::parse(level) {
            levels.push(Pattern::Var(p));
            plain.push("x");
            continue;
        }
        // `dev-{username}` or `{user}` is a mistake, not a literal: refuse it.
        if level.contains('{') && level.contains('}') {
            return Err(AclError::Placeholder {
                filter: quoted(filter),
            });
        }
        levels.push(match level {
            "+" => Pattern::Plus,
            "#" => Pattern::Hash,
            other => Pattern::Literal(other.into()),
        });
        plain.push(level);
    }
    topic::validate_topic_filter(&plain.join("/")).map_err(|e| AclError::Filter {
        filter: quoted(filter),
        reason: e.to_string(),
    })?;
    Ok(levels)
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

fn label(verdict: Verdict, words: &[String], topics: &[Spanned<String>]) -> String {
    let verdict = match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    let topics: Vec<&str> = topics.iter().map(|t| t.value.as_str()).collect();
    let mut text = format!("{verdict} {} {}", words.join(","), topics.join(","));
    if text.len() > MAX_LABEL {
        let mut cut = MAX_LABEL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn compile_case(source: &PolicySource, raw: RawCase) -> Result<PolicyCase, PolicyError> {
    let at = Position::of_spanned(&raw.action);
    let bad = |position: Position, what: String| fail(source, position, AclError::Case(what));
    let action = Action::parse(&raw.action.value).ok_or_else(|| {
        bad(
            at,
            format!(
                "unknown action {}: expected publish, subscribe or receive",
                quoted(&raw.action.value)
            ),
        )
    })?;
    let expect = match raw.expect.value.as_str() {
        "allow" => Verdict::Allow,
        "deny" => Verdict::Deny,
        other => {
            let what = format!("expect is {}: expected allow or deny", quoted(other));
            return Err(bad(Position::of_spanned(&raw.expect), what));
        }
    };
    let valid = match action {
        Action::Subscribe => topic::validate_topic_filter(&raw.topic.value),
        _ => topic::validate_topic_name(&raw.topic.value),
    };
    if let Err(e) = valid {
        let what = format!("topic {}: {e}", quoted(&raw.topic.value));
        return Err(bad(Position::of_spanned(&raw.topic), what));
    }
    let addr = match &raw.source {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(s) => s.value.trim().parse().map_err(|_| {
            bad(
                Position::of_spanned(s),
                format!("source {} is not an address", quoted(&s.value)),
            )
        })?,
    };
    let qos = match &raw.qos {
        None => 0,
        Some(q) if q.value > 2 => {
            return Err(bad(
                Position::of_spanned(q),
                format!("qos {} is not 0, 1 or 2", q.value),
            ))
        }
        Some(q) => q.value,
    };
    let subject = Subject::describe(
        raw.user.as_deref(),
        raw.client_id.as_deref(),
        raw.cert_cn.as_deref(),
        raw.listener.as_deref(),
        addr,
    );
    Ok(PolicyCase {
        at: SourceLocation::new(&source.path, at),
        subject,
        action,
        topic: raw.topic.value,
        qos,
        retain: raw.retain.unwrap_or(false),
        expect,
    })
}

// === impl Subject (described) ===

impl Subject {
    /// A subject described by hand (`moat explain`, policy tests): `user` is a password
    /// identity; without it a `cert_cn` is a certificate identity; with neither, anonymous. The
    /// listener defaults to `mqtts` and the client id to the identity name.
    pub fn describe(
        user: Option<&str>,
        client_id: Option<&str>,
        cert_cn: Option<&str>,
        listener: Option<&str>,
        addr: IpAddr,
    ) -> Subject {
        let (name, source) = match (user, cert_cn) {
            (Some(user), _) => (user.to_owned(), IdentitySource::Password),
            (None, Some(cn)) => (cn.to_owned(), IdentitySource::Certificate),
            (None, None) => (
                crate::policy::ANONYMOUS.to_owned(),
                IdentitySource::Anonymous,
            ),
        };
        Subject {
            client_id: client_id.map_or_else(|| name.clone(), str::to_owned),
            name,
            source,
            cert_cn: cert_cn.map(str::to_owned),
            listener: Arc::from(listener.unwrap_or("mqtts")),
            addr,
        }
    }
}
