//! The rule index: a topic trie whose nodes hold rule ids bucketed by who they apply to.
//!
//! What it owns: [`Trie`] (one per action) and [`Bucket`] (rule ids keyed by user, group,
//! certificate CN, or "anyone"). Why it is separate: a decision must not scan every rule. A
//! lookup walks the topic's levels once, following only the literal, `+`, `#` and placeholder
//! edges that can match, and in each reached node reads only the buckets of this subject's name,
//! groups and CN; the smallest rule id found is the first match. A policy with 10,000 rules for
//! 100,000 users costs a handful of hash lookups per level, not 10,000 comparisons.
//! What it must not do: recurse (the walk is iterative and stops as soon as no node is active,
//! so a 65,536-level topic costs at most the depth of the deepest rule, catalogue §A.16).
//!
//! Rule ids are indexes into the policy's rule list, in file order: a smaller id is an earlier
//! rule. They are inserted in increasing order, so every list in a bucket is sorted.

use std::collections::HashMap;

use super::rule::{Pattern, Values, Who};

/// The facts the identity buckets are keyed on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WhoKey<'a> {
    /// Identity name.
    pub(crate) name: &'a str,
    /// Groups the policy gives that identity.
    pub(crate) groups: &'a [String],
    /// Verified certificate CN.
    pub(crate) cert_cn: Option<&'a str>,
}

/// Rule ids bucketed by the identity selectors of their rules.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// Rules without identity selectors.
    anyone: Vec<u32>,
    /// Rules naming a user.
    users: HashMap<Box<str>, Vec<u32>>,
    /// Rules naming a group.
    groups: HashMap<Box<str>, Vec<u32>>,
    /// Rules naming a certificate CN.
    certs: HashMap<Box<str>, Vec<u32>>,
}

// === impl Bucket ===

impl Bucket {
    /// Adds rule `id` (ids arrive in increasing order).
    pub(crate) fn add(&mut self, id: u32, who: &Who) {
        fn push(list: &mut Vec<u32>, id: u32) {
            if list.last() != Some(&id) {
                list.push(id);
            }
        }
        if who.is_anyone() {
            push(&mut self.anyone, id);
        }
        for (names, map) in [
            (&who.users, &mut self.users),
            (&who.groups, &mut self.groups),
            (&who.certs, &mut self.certs),
        ] {
            for name in names {
                push(map.entry(name.clone()).or_default(), id);
            }
        }
    }

    /// Calls `visit` with each list of rule ids that applies to `key` (each sorted).
    fn lists<'s>(&'s self, key: &WhoKey<'_>, mut visit: impl FnMut(&'s [u32])) {
        visit(&self.anyone);
        if !self.users.is_empty() {
            if let Some(list) = self.users.get(key.name) {
                visit(list);
            }
        }
        if !self.groups.is_empty() {
            for group in key.groups {
                if let Some(list) = self.groups.get(group.as_str()) {
                    visit(list);
                }
            }
        }
        if let (false, Some(cn)) = (self.certs.is_empty(), key.cert_cn) {
            if let Some(list) = self.certs.get(cn) {
                visit(list);
            }
        }
    }

    /// The smallest id below `below` that applies to `key` and passes `ok`.
    pub(crate) fn first(
        &self,
        key: &WhoKey<'_>,
        below: Option<u32>,
        ok: &dyn Fn(u32) -> bool,
    ) -> Option<u32> {
        let mut best = below;
        self.lists(key, |list| {
            let limit = best.unwrap_or(u32::MAX);
            if let Some(&id) = list
                .iter()
                .take_while(|&&id| id < limit)
                .find(|&&id| ok(id))
            {
                best = Some(id);
            }
        });
        best.filter(|id| Some(*id) != below)
    }

    /// Every id that applies to `key`, appended to `out` (unsorted, may repeat).
    pub(crate) fn collect(&self, key: &WhoKey<'_>, out: &mut Vec<u32>) {
        self.lists(key, |list| out.extend_from_slice(list));
    }
}

/// One node of the trie.
#[derive(Debug, Default)]
struct Node {
    /// Literal next levels.
    literal: HashMap<Box<str>, u32>,
    /// The `+` child.
    plus: Option<u32>,
    /// The `#` child (a leaf: its bucket holds the rules ending in `#` here).
    hash: Option<u32>,
    /// Placeholder children, by [`super::rule::Placeholder`] number.
    vars: [Option<u32>; 3],
    /// Rules whose filter ends exactly here.
    here: Bucket,
}

/// A topic trie over the filters of the rules for one action.
#[derive(Debug)]
pub(crate) struct Trie {
    /// Node 0 is the root.
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

// === impl Trie ===

impl Trie {
    /// Adds rule `id`'s filter `pattern` (ids arrive in increasing order).
    pub(crate) fn insert(&mut self, pattern: &[Pattern], id: u32, who: &Who) {
        let mut at = 0u32;
        for level in pattern {
            at = self.child(at, level);
        }
        if let Some(node) = self.nodes.get_mut(at as usize) {
            node.here.add(id, who);
        }
    }

    /// The child of `at` along `level`, created if missing.
    fn child(&mut self, at: u32, level: &Pattern) -> u32 {
        let fresh = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let Some(node) = self.nodes.get_mut(at as usize) else {
            return at;
        };
        let slot = match level {
            Pattern::Literal(l) => node.literal.entry(l.clone()).or_insert(fresh),
            Pattern::Plus => node.plus.get_or_insert(fresh),
            Pattern::Hash => node.hash.get_or_insert(fresh),
            Pattern::Var(p) => match node.vars.get_mut(*p as usize) {
                Some(slot) => slot.get_or_insert(fresh),
                None => return at,
            },
        };
        let id = *slot;
        if id == fresh {
            self.nodes.push(Node::default());
        }
        id
    }

    fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.get(id as usize)
    }

    /// The smallest rule id whose filter matches `topic` (a valid topic name), that applies to
    /// `key`, and passes `ok` (listener and source). One pass over the levels.
    pub(crate) fn first_match(
        &self,
        topic: &str,
        key: &WhoKey<'_>,
        values: &Values<'_>,
        ok: &dyn Fn(u32) -> bool,
    ) -> Option<u32> {
        // [MQTT-4.7.2-1] No leading wildcard (or placeholder) matches a `$`-topic.
        let dollar = topic.starts_with('$');
        let mut best = None;
        let mut active: Vec<u32> = vec![0];
        let mut next: Vec<u32> = Vec::new();
        let take = |bucket: &Bucket, best: &mut Option<u32>| {
            if let Some(id) = bucket.first(key, *best, ok) {
                *best = Some(id);
            }
        };
        for (depth, level) in topic.split('/').enumerate() {
            if active.is_empty() {
                break;
            }
            let guarded = depth == 0 && dollar;
            for node in active.iter().filter_map(|&id| self.node(id)) {
                if let (false, Some(hash)) = (guarded, node.hash.and_then(|h| self.node(h))) {
                    take(&hash.here, &mut best);
                }
                if let Some(&child) = node.literal.get(level) {
                    next.push(child);
                }
                if guarded {
                    continue;
                }
                next.extend(node.plus);
                for (p, child) in [
                    super::rule::Placeholder::Username,
                    super::rule::Placeholder::ClientId,
                    super::rule::Placeholder::CertCn,
                ]
                .into_iter()
                .zip(node.vars)
                {
                    if let Some(child) = child {
                        if values.get(p, depth) == Some(level) {
                            next.push(child);
                        }
                    }
                }
            }
            std::mem::swap(&mut active, &mut next);
            next.clear();
        }
        for node in active.iter().filter_map(|&id| self.node(id)) {
            take(&node.here, &mut best);
            // `a/#` matches `a`: the parent level.
            if let Some(hash) = node.hash.and_then(|h| self.node(h)) {
                take(&hash.here, &mut best);
            }
        }
        best
    }
}
