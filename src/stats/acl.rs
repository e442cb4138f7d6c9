//! ACL denials counted by action and rule: the one labelled counter whose label set is only
//! known at run time (the policy's rules, which a reload changes).
//!
//! Why it looks like this: a denial already builds its audit line, so one lookup in a map
//! read without a lock (`arc-swap`) costs little next to it; a rule seen for the first time
//! is added under a mutex and the map republished. The label is the rule's `file:line` (or
//! `builtin …`), never anything a client chose, and the map is capped at [`MAX_RULES`]
//! entries (past that, denials count under `other`), so a metric's size follows the policy,
//! not the traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::counters::Counters;
use crate::policy::Action;

/// Most distinct rules counted (across reloads); far above any real policy.
const MAX_RULES: usize = 4096;
/// The rule label past [`MAX_RULES`].
const OTHER: &str = "other";

type Table = HashMap<Box<str>, Arc<Counters<3>>>;

/// Denials per rule and action.
#[derive(Debug, Default)]
pub struct AclDenials {
    table: ArcSwap<Table>,
    /// Serialises inserts (reads never take it).
    insert: Mutex<()>,
}

// === impl AclDenials ===

impl AclDenials {
    /// Counts one denial of `action` by `rule` (as an audit line names it: `file:line label`
    /// or `builtin label`).
    pub fn bump(&self, action: Action, rule: &str) {
        let label = rule_label(rule);
        if let Some(counters) = self.table.load().get(label) {
            counters.bump(action as usize);
            return;
        }
        self.insert(label).bump(action as usize);
    }

    fn insert(&self, label: &str) -> Arc<Counters<3>> {
        let _guard = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.table.load_full();
        if let Some(counters) = current.get(label) {
            return counters.clone();
        }
        let label = match current.len() < MAX_RULES {
            true => label,
            false => OTHER,
        };
        if let Some(counters) = current.get(label) {
            return counters.clone();
        }
        let mut next: Table = (*current).clone();
        let counters = Arc::new(Counters::default());
        next.insert(label.into(), counters.clone());
        self.table.store(Arc::new(next));
        counters
    }

    /// Every `(action, rule, count)` with a count above zero.
    pub fn read(&self) -> Vec<(&'static str, Box<str>, u64)> {
        let table = self.table.load();
        let mut out = Vec::new();
        for (rule, counters) in table.iter() {
            for (i, n) in counters.iter() {
                if let (Some(action), true) = (Action::ALL.get(i), n > 0) {
                    out.push((action.as_str(), rule.clone(), n));
                }
            }
        }
        out.sort();
        out
    }
}

/// `file:line` of a rule as an audit line names it (`file:line label`), or the whole text for
/// a built-in rule.
fn rule_label(rule: &str) -> &str {
    if rule.starts_with("builtin ") {
        return rule;
    }
    for (at, _) in rule.match_indices(' ') {
        let head = rule.get(..at).unwrap_or(rule);
        if let Some((_, line)) = head.rsplit_once(':') {
            if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
                return head;
            }
        }
    }
    rule
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_file_and_line() {
        assert_eq!(
            rule_label("policies/acl.yaml:12 user alice"),
            "policies/acl.yaml:12"
        );
        assert_eq!(rule_label("my dir/acl.yaml:7 group x"), "my dir/acl.yaml:7");
        assert_eq!(rule_label("builtin default-deny"), "builtin default-deny");
    }

    #[test]
    fn denials_count_per_rule_and_action() {
        let d = AclDenials::default();
        d.bump(Action::Publish, "a.yaml:3 user x");
        d.bump(Action::Publish, "a.yaml:3 user x");
        d.bump(Action::Subscribe, "builtin default-deny");
        assert_eq!(
            d.read(),
            vec![
                ("publish", "a.yaml:3".into(), 2),
                ("subscribe", "builtin default-deny".into(), 1)
            ]
        );
    }
}
