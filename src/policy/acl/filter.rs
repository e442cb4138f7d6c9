//! Filter algebra: does one topic filter cover, or overlap, another?
//!
//! What it owns: [`Level`] (one level of a filter after placeholder substitution), and the two
//! questions a SUBSCRIBE decision asks about a rule filter `G` and a requested filter `F`:
//! [`covers`] (every topic `F` can match is matched by `G`) and [`intersects`] (some topic is
//! matched by both). Why it is separate: treating the requested filter as a topic and "matching"
//! it is the classic subscription-ACL bypass (`a/+` matches the literal level `#`, catalogue §A.7);
//! these are the only functions that compare two filters, and property tests check them against
//! `mqtt::topic::matches`. What it must not do: recurse (levels are walked in one loop, §A.16).
//!
//! Both answers follow the matcher's rules: `+` is exactly one (possibly empty) level, `#` is the
//! parent level and anything below, and a filter starting with a wildcard matches no topic
//! starting with `$` [MQTT-4.7.2-1].

/// One level of a topic filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level<'a> {
    /// A literal level (possibly empty), compared byte for byte.
    Literal(&'a str),
    /// `+`: exactly one level.
    Plus,
    /// `#`: the parent level and every level below; always last.
    Hash,
}

// === impl Level ===

impl<'a> Level<'a> {
    /// Splits a valid, non-shared filter into levels.
    pub(crate) fn split(filter: &'a str) -> Vec<Level<'a>> {
        filter.split('/').map(Level::parse).collect()
    }

    /// One level of a valid filter.
    pub(crate) fn parse(level: &'a str) -> Level<'a> {
        match level {
            "+" => Level::Plus,
            "#" => Level::Hash,
            other => Level::Literal(other),
        }
    }

    fn is_wildcard(self) -> bool {
        matches!(self, Level::Plus | Level::Hash)
    }

    fn is_dollar(self) -> bool {
        matches!(self, Level::Literal(l) if l.starts_with('$'))
    }
}

/// True if every topic the filter `f` matches is matched by the filter `g` (F ⊆ G).
///
/// Exact for single filters, including `+/#` ≡ `#`. A `$`-topic is only covered by a rule whose
/// first level names it [MQTT-4.7.2-1].
pub(crate) fn covers(g: &[Level<'_>], f: &[Level<'_>]) -> bool {
    // [MQTT-4.7.2-1] F holds `$`-topics only if its first level is a literal `$…`; a rule that
    // starts with a wildcard never matches those.
    if let (Some(g0), Some(f0)) = (g.first(), f.first()) {
        if g0.is_wildcard() && f0.is_dollar() {
            return false;
        }
        // `+/#` matches every topic `#` does: a topic has at least one level.
        if g.len() == 2
            && *g0 == Level::Plus
            && g.get(1) == Some(&Level::Hash)
            && *f0 == Level::Hash
        {
            return true;
        }
    }
    let mut i = 0;
    loop {
        match (g.get(i), f.get(i)) {
            (Some(Level::Hash), _) => return true,
            (Some(Level::Plus), Some(Level::Literal(_) | Level::Plus)) => {}
            (Some(Level::Literal(a)), Some(Level::Literal(b))) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

/// True if some topic is matched by both filters.
pub(crate) fn intersects(g: &[Level<'_>], f: &[Level<'_>]) -> bool {
    // [MQTT-4.7.2-1] A leading wildcard never meets a `$`-topic.
    if let (Some(g0), Some(f0)) = (g.first(), f.first()) {
        if (g0.is_wildcard() && f0.is_dollar()) || (f0.is_wildcard() && g0.is_dollar()) {
            return false;
        }
    }
    let mut i = 0;
    loop {
        match (g.get(i), f.get(i)) {
            (Some(Level::Hash), _) | (_, Some(Level::Hash)) | (None, None) => return true,
            (Some(Level::Plus), Some(_)) | (Some(_), Some(Level::Plus)) => {}
            (Some(Level::Literal(a)), Some(Level::Literal(b))) if a == b => {}
            _ => return false,
        }
        i += 1;
    }
}
