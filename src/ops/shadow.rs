//! The shadow policy's book: every difference between the enforced and the shadow set, counted
//! by action and rule pair, logged without flooding, and summarised for `moat ctl shadow`.
//!
//! What it owns: [`ShadowBook`] (one per server, in `Stats`), which the sessions and admission
//! feed a [`Difference`] (decided in the pure `policy/shadow.rs`) with who and what it was
//! about; the `/metrics` collector and `GET /v1/shadow` (`admin/shadow.rs`) read it. Why it is
//! separate: counting needs a lock and logging needs the clock, neither of which the policy may
//! touch, and the session machine only reports what it saw.
//!
//! Bounded: at most [`MAX_PAIRS`] (action, rule pair) counters, which rule counts bound already
//! (labels are rules, never clients); differences beyond are counted as `overflow`. At most
//! [`MAX_RECENT`] examples are kept, taken when a line is logged. A pair is logged (target `moat::shadow`) the first time and
//! then at most once per [`LOG_EVERY`], with how many were not logged since, so a busy topic
//! writes a line every few seconds, not one per message.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::policy::shadow::{compare, verdict_word, Difference, ShadowAction};
use crate::policy::{Decision, Policy, RuleRef, Verdict};

/// Most (action, verdict, rule pair) counters kept.
pub const MAX_PAIRS: usize = 4096;
/// Examples kept for `moat ctl shadow`.
pub const MAX_RECENT: usize = 20;
/// Shortest time between two log lines about the same pair.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest topic or identity kept in an example (longer ones are cut).
const MAX_TEXT: usize = 256;

/// Who and what a difference was about (for the log and the examples; never a metric label).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The identity, once authenticated.
    pub identity: Option<&'a str>,
    /// The client id, once known.
    pub client_id: Option<&'a str>,
    /// The topic, filter, user name or listener the decision was about.
    pub subject: &'a str,
}

/// Compares admission by address of a new connection from `addr` on `listener` (`network:`,
/// then the policy's `bans:` on networks) under the shadow set of `policy` with the enforced
/// one (the gate enforces; this only watches). Nothing when no shadow set is configured.
pub fn admission(policy: &Policy, book: &ShadowBook, addr: SocketAddr, listener: &str) {
    let Some(shadow) = policy.shadow() else {
        return;
    };
    let ip = addr.ip().to_canonical();
    let now = SystemTime::now();
    let by_address = |p: &Policy| {
        let d = p.admit_addr(ip, listener);
        match p.static_ban_ip(ip, now) {
            Some(ban) if d.is_allowed() => Decision::deny(ban.rule.clone()),
            _ => d,
        }
    };
    let enforced = by_address(policy);
    let judged = by_address(shadow);
    if let Some(diff) = compare(ShadowAction::Connect, &enforced, &judged) {
        let seen = Seen {
            peer: addr,
            identity: None,
            client_id: None,
            subject: listener,
        };
        book.record(&diff, seen);
    }
}

/// One counter's key. Rules are kept by place (shared file name, line), so counting a
/// difference clones two `Arc`s and formats nothing; labels are written at scrape time. Two rules
/// at the same place (one edited between reloads) share a counter, as they share a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PairKey {
    action: ShadowAction,
    enforced: Verdict2,
    enforced_rule: Place,
    shadow_rule: Place,
}

/// Where a rule is: its file and line, or a built-in rule's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    File(Arc<str>, u32),
    Builtin(Arc<str>),
}

impl Place {
    fn of(rule: &RuleRef) -> Place {
        match &rule.file {
            Some(file) => Place::File(file.clone(), rule.line),
            None => Place::Builtin(rule.label.clone()),
        }
    }

    fn label(&self) -> String {
        match self {
            Place::File(file, line) => format!("{file}:{line}"),
            Place::Builtin(name) => format!("builtin {name}"),
        }
    }
}

/// [`Verdict`] as a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Verdict2 {
    Allow,
    Deny,
}

impl From<Verdict> for Verdict2 {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Verdict2::Allow,
            Verdict::Deny => Verdict2::Deny,
        }
    }
}

impl Verdict2 {
    fn word(self) -> &'static str {
        match self {
            Verdict2::Allow => "allow",
            Verdict2::Deny => "deny",
        }
    }

    fn other(self) -> &'static str {
        match self {
            Verdict2::Allow => "deny",
            Verdict2::Deny => "allow",
        }
    }
}

/// One counter.
#[derive(Debug, Clone)]
struct Pair {
    count: u64,
    first: SystemTime,
    last: SystemTime,
    /// When this pair was last logged.
    logged: Option<Instant>,
    /// Differences not logged since.
    unlogged: u64,
}

/// The shared book (see the module docs).
#[derive(Debug)]
pub struct ShadowBook {
    inner: Mutex<Book>,
}

#[derive(Debug)]
struct Book {
    since: SystemTime,
    pairs: HashMap<PairKey, Pair>,
    overflow: u64,
    not_compared: u64,
    recent: VecDeque<Example>,
}

impl Default for ShadowBook {
    fn default() -> Self {
        ShadowBook {
            inner: Mutex::new(Book {
                since: SystemTime::now(),
                pairs: HashMap::new(),
                overflow: 0,
                not_compared: 0,
                recent: VecDeque::new(),
            }),
        }
    }
}

// === impl ShadowBook ===

impl ShadowBook {
    /// Counts, logs (rate-limited) and keeps as an example one difference.
    pub fn record(&self, diff: &Difference, seen: Seen<'_>) {
        let key = PairKey {
            action: diff.action,
            enforced: diff.enforced.verdict.into(),
            enforced_rule: Place::of(&diff.enforced.rule),
            shadow_rule: Place::of(&diff.shadow.rule),
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut book = self.book();
        let full = book.pairs.len() >= MAX_PAIRS;
        let log = match book.pairs.get_mut(&key) {
            Some(pair) => {
                pair.count += 1;
                pair.last = wall;
                pair.tick(now)
            }
            None if full => {
                book.overflow += 1;
                None
            }
            None => {
                let mut pair = Pair {
                    count: 1,
                    first: wall,
                    last: wall,
                    logged: None,
                    unlogged: 0,
                };
                let log = pair.tick(now);
                book.pairs.insert(key, pair);
                log
            }
        };
        // Examples are kept when a line is logged: at most one per pair per LOG_EVERY, so a busy
        // topic costs a counter, not a handful of strings per message.
        if log.is_some() {
            if book.recent.len() >= MAX_RECENT {
                book.recent.pop_front();
            }
            book.recent.push_back(Example::new(diff, &seen, wall));
        }
        drop(book);
        if let Some(unlogged) = log {
            tracing::info!(
                target: "moat::shadow",
                action = diff.action.as_str(),
                peer = %seen.peer,
                identity = ?seen.identity,
                client_id = ?seen.client_id,
                subject = ?seen.subject,
                enforced = verdict_word(diff.enforced.verdict),
                enforced_rule = %diff.enforced.rule,
                shadow = verdict_word(diff.shadow.verdict),
                shadow_rule = %diff.shadow.rule,
                not_logged_since = unlogged,
                "shadow policy differs"
            );
        }
    }

    /// One decision the shadow could not be compared on without a second password hash.
    pub fn not_compared(&self) {
        self.book().not_compared += 1;
    }

    /// Every counter, sorted by action, verdict and rules (for `/metrics`).
    pub fn counters(&self) -> Vec<Counter> {
        let book = self.book();
        let mut out: Vec<Counter> = book
            .pairs
            .iter()
            .map(|(k, p)| Counter {
                action: k.action,
                enforced: k.enforced.word(),
                enforced_rule: k.enforced_rule.label(),
                shadow_rule: k.shadow_rule.label(),
                count: p.count,
            })
            .collect();
        out.sort_by(|a, b| {
            (a.action, a.enforced, &a.enforced_rule, &a.shadow_rule).cmp(&(
                b.action,
                b.enforced,
                &b.enforced_rule,
                &b.shadow_rule,
            ))
        });
        out
    }

    /// The summary `GET /v1/shadow` answers; `files` are the shadow set's files in force.
    pub fn report(&self, files: Option<Vec<String>>) -> ShadowReport {
        let rfc = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let book = self.book();
        let mut pairs: Vec<PairView> = book
            .pairs
            .iter()
            .map(|(k, p)| PairView {
                action: k.action.as_str().to_owned(),
                enforced: k.enforced.word().to_owned(),
                enforced_rule: k.enforced_rule.label(),
                shadow: k.enforced.other().to_owned(),
                shadow_rule: k.shadow_rule.label(),
                count: p.count,
                first: rfc(p.first),
                last: rfc(p.last),
            })
            .collect();
        // Most frequent first: what an operator looks at before enforcing.
        pairs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.action.cmp(&b.action)));
        ShadowReport {
            configured: files.is_some(),
            files: files.unwrap_or_default(),
            since: rfc(book.since),
            differences: pairs.iter().map(|p| p.count).sum::<u64>() + book.overflow,
            overflow: book.overflow,
            not_compared: book.not_compared,
            pairs,
            recent: book.recent.iter().rev().cloned().collect(),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Pair ===

impl Pair {
    /// Whether to log now: `Some(differences not logged since the last line)`.
    fn tick(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY);
        if due {
            self.logged = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        }
    }
}

/// One counter of the book, as `/metrics` labels it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// What was asked.
    pub action: ShadowAction,
    /// The enforced verdict (`allow`, `deny`).
    pub enforced: &'static str,
    /// The enforced rule's label (`file:line`).
    pub enforced_rule: String,
    /// The shadow rule's label.
    pub shadow_rule: String,
    /// Differences counted.
    pub count: u64,
}

/// What `GET /v1/shadow` answers (and `moat ctl shadow` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Whether a shadow set is in force.
    pub configured: bool,
    /// Its files.
    pub files: Vec<String>,
    /// Counting started (moat's start).
    pub since: String,
    /// Differences counted in all.
    pub differences: u64,
    /// Differences whose rule pair found no room ([`MAX_PAIRS`]).
    pub overflow: u64,
    /// Authentications not compared (the shadow would need a second password verification).
    pub not_compared: u64,
    /// Counts per action and rule pair.
    pub pairs: Vec<PairView>,
    /// The latest differences, newest first.
    pub recent: Vec<Example>,
}

/// One counter of [`ShadowReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairView {
    /// connect, authenticate, publish, subscribe, receive.
    pub action: String,
    /// What was enforced: allow or deny.
    pub enforced: String,
    /// The enforced rule (`file:line`).
    pub enforced_rule: String,
    /// What the shadow set would have done.
    pub shadow: String,
    /// The shadow rule (`file:line`).
    pub shadow_rule: String,
    /// How many times.
    pub count: u64,
    /// First time seen.
    pub first: String,
    /// Last time seen.
    pub last: String,
}

/// One difference, with whom it concerned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    /// When.
    pub at: String,
    /// connect, authenticate, publish, subscribe, receive.
    pub action: String,
    /// The client's address.
    pub peer: String,
    /// The identity, once authenticated.
    pub identity: Option<String>,
    /// The client id, once known.
    pub client_id: Option<String>,
    /// Topic, filter, user name or listener.
    pub subject: String,
    /// The enforced decision and its rule (`allow by file:line label`).
    pub enforced: String,
    /// The shadow decision and its rule.
    pub shadow: String,
}

// === impl Example ===

impl Example {
    fn new(diff: &Difference, seen: &Seen<'_>, at: SystemTime) -> Example {
        Example {
            at: humantime::format_rfc3339_seconds(at).to_string(),
            action: diff.action.as_str().to_owned(),
            peer: seen.peer.to_string(),
            identity: seen.identity.map(cut),
            client_id: seen.client_id.map(cut),
            subject: cut(seen.subject),
            enforced: diff.enforced.to_string(),
            shadow: diff.shadow.to_string(),
        }
    }
}

/// At most [`MAX_TEXT`] bytes, cut on a character boundary.
fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;
    use crate::policy::{compile, PolicySource};

    #[test]
    fn admission_compares_networks_and_network_bans() {
        let set = |path: &str, text: &str| {
            compile(&[PolicySource {
                path: path.into(),
                text: text.into(),
            }])
            .unwrap()
        };
        let shadow = set(
            "s.yaml",
            "network:\n  allow: [\"10.0.0.0/8\"]\nbans:\n  - { address: \"10.9.0.0/16\" }\n",
        );
        let policy = set("p.yaml", "network:\n  allow: [\"10.0.0.0/8\"]\n")
            .with_shadow(Some(Arc::new(shadow)));
        let book = ShadowBook::default();
        admission(&policy, &book, "10.1.1.1:1".parse().unwrap(), "mqtts");
        assert!(book.counters().is_empty());
        admission(&policy, &book, "10.9.1.1:1".parse().unwrap(), "mqtts");
        let c = book.counters();
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].action, ShadowAction::Connect);
        assert_eq!(
            (c[0].enforced, c[0].shadow_rule.as_str()),
            ("allow", "s.yaml:4")
        );
    }
    use crate::policy::Decision;

    fn diff(line: u32) -> Difference {
        let enforced = Decision::allow(RuleRef::at("p.yaml".into(), line, "allow a/#"));
        let shadow = Decision::deny(RuleRef::at("s.yaml".into(), 3, "deny a/secret"));
        compare(ShadowAction::Publish, &enforced, &shadow).unwrap()
    }

    fn seen() -> Seen<'static> {
        Seen {
            peer: "127.0.0.1:1".parse().unwrap(),
            identity: Some("alice"),
            client_id: Some("c"),
            subject: "a/secret",
        }
    }

    #[test]
    fn counts_by_rule_pair_and_keeps_recent_examples() {
        let book = ShadowBook::default();
        for _ in 0..3 {
            book.record(&diff(7), seen());
        }
        book.record(&diff(8), seen());
        let counters = book.counters();
        assert_eq!(counters.len(), 2);
        assert_eq!(book.report(None).pairs[0].count, 3);
        assert_eq!(counters[0].enforced_rule, "p.yaml:7");
        assert_eq!(counters[0].shadow_rule, "s.yaml:3");
        assert_eq!(counters[0].count, 3);
        assert_eq!(counters[0].enforced, "allow");
        let report = book.report(Some(vec!["s.yaml".into()]));
        assert_eq!(report.differences, 4);
        // One example per pair until LOG_EVERY has passed, as logged.
        assert_eq!(report.recent.len(), 2);
        assert_eq!(report.pairs[0].shadow, "deny");
        assert!(
            report.recent[0].shadow.contains("s.yaml:3"),
            "{:?}",
            report.recent[0]
        );
    }

    #[test]
    fn a_busy_pair_is_logged_once_per_interval() {
        let mut pair = Pair {
            count: 0,
            first: SystemTime::now(),
            last: SystemTime::now(),
            logged: None,
            unlogged: 0,
        };
        let t = Instant::now();
        assert_eq!(pair.tick(t), Some(0));
        assert_eq!(pair.tick(t + Duration::from_secs(1)), None);
        assert_eq!(pair.tick(t + Duration::from_secs(2)), None);
        assert_eq!(pair.tick(t + LOG_EVERY), Some(2));
    }

    #[test]
    fn pairs_and_examples_are_bounded() {
        let book = ShadowBook::default();
        for line in 0..(MAX_PAIRS as u32 + 5) {
            book.record(&diff(line), seen());
        }
        let report = book.report(None);
        assert_eq!(report.pairs.len(), MAX_PAIRS);
        assert_eq!(report.overflow, 5);
        assert_eq!(report.recent.len(), MAX_RECENT);
        assert!(!report.configured);
        assert_eq!(cut(&"é".repeat(200)).len(), 256);
    }
}
