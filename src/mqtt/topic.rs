//! Topic names, topic filters, shared subscriptions and filter matching (MQTT §4.7, §4.8.2).
//!
//! What it owns: the syntax of names and filters, the `$share/{group}/{filter}` unwrap, and the one
//! matcher `matches(filter, topic)` that policy and session code share.
//! Why it is separate: the packet decoders, the ACL engine (`policy::acl`) and the session all need
//! the same rules; a second, subtly different matcher is how ACL bypasses are born (catalogue §A.7–16).
//! What it must not do: normalise (`..`, empty levels and case are literal, §A.15), recurse on levels
//! (§A.16: a 65 535-byte topic of `/` is 65 536 levels), or decide policy (level caps, `$`-prefixes).
//!
//! Spec ids for the wildcard rules use MQTT 3.1.1 numbering (`v3:MQTT-4.7.1-1..3`); the same rules
//! are MQTT-4.7.0-1 and MQTT-4.7.1-1/-2 in 5.0.

/// Why a topic name or filter is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero-length name or filter [MQTT-4.7.3-1].
    #[error("empty topic [MQTT-4.7.3-1]")]
    Empty,
    /// Longer than 65 535 bytes [v3:MQTT-4.7.3-3].
    #[error("topic longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000 [v3:MQTT-4.7.3-2].
    #[error("topic contains U+0000 [MQTT-4.7.3-2]")]
    Nul,
    /// A topic name contains `+` or `#` [v3:MQTT-4.7.1-1, MQTT-4.7.0-1].
    #[error("wildcard in a topic name [MQTT-4.7.1-1]")]
    WildcardInName,
    /// `#` is not alone in the last level [v3:MQTT-4.7.1-2].
    #[error("'#' must be alone in the last level [MQTT-4.7.1-2]")]
    MisplacedMultiLevel,
    /// `+` does not occupy a whole level [v3:MQTT-4.7.1-3].
    #[error("'+' must occupy a whole level [MQTT-4.7.1-3]")]
    MisplacedSingleLevel,
    /// `$share//…` or `$share/` with no name [MQTT-4.8.2-1].
    #[error("shared subscription without a share name [MQTT-4.8.2-1]")]
    SharedEmptyName,
    /// The share name contains `+` or `#` [MQTT-4.8.2-2].
    #[error("share name contains a wildcard [MQTT-4.8.2-2]")]
    SharedInvalidName,
    /// `$share/{name}` with no `/` and filter after it [MQTT-4.8.2-2].
    #[error("shared subscription without a topic filter [MQTT-4.8.2-2]")]
    SharedMissingFilter,
}

// === impl TopicError ===

impl TopicError {
    /// The normative statement this violates.
    pub fn spec(&self) -> Option<&'static str> {
        Some(match self {
            Self::Empty => "MQTT-4.7.3-1",
            Self::TooLong => "v3:MQTT-4.7.3-3",
            Self::Nul => "v3:MQTT-4.7.3-2",
            Self::WildcardInName => "v3:MQTT-4.7.1-1",
            Self::MisplacedMultiLevel => "v3:MQTT-4.7.1-2",
            Self::MisplacedSingleLevel => "v3:MQTT-4.7.1-3",
            Self::SharedEmptyName => "MQTT-4.8.2-1",
            Self::SharedInvalidName | Self::SharedMissingFilter => "MQTT-4.8.2-2",
        })
    }
}

const SHARE_PREFIX: &str = "$share/";

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Checks a Topic Name (PUBLISH, Will, Response Topic): non-empty, no wildcards.
/// (An empty PUBLISH topic with a Topic Alias is the PUBLISH decoder's special case.)
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    // [v3:MQTT-4.7.1-1] [MQTT-4.7.0-1]
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks wildcard placement in a plain (not `$share/`) filter.
fn check_filter_levels(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevel); // [v3:MQTT-4.7.1-2]
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevel); // [v3:MQTT-4.7.1-3]
        }
    }
    Ok(())
}

/// Checks a Topic Filter (SUBSCRIBE, UNSUBSCRIBE), including the `$share/` form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    match split_shared(filter)? {
        Some(_) => Ok(()), // the inner filter was checked by `split_shared`
        None => check_filter_levels(filter),
    }
}

/// Unwraps a shared subscription: `Ok(None)` for a non-shared filter, `Ok(Some((group, filter)))`
/// for `$share/{group}/{filter}`. Malformed shares (`$share//a`, `$share/g+/a`, `$share/#/a`,
/// `$share/g`) are errors [MQTT-4.8.2-1, MQTT-4.8.2-2]. The inner filter is validated too.
pub fn split_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(if rest.is_empty() {
            TopicError::SharedEmptyName
        } else {
            TopicError::SharedMissingFilter
        });
    };
    if group.is_empty() {
        return Err(TopicError::SharedEmptyName); // [MQTT-4.8.2-1]
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::SharedInvalidName); // [MQTT-4.8.2-2]
    }
    if inner.is_empty() {
        return Err(TopicError::SharedMissingFilter); // [MQTT-4.8.2-2]
    }
    check_filter_levels(inner)?;
    Ok(Some((group, inner)))
}

/// True if the (valid, non-shared) `filter` matches the (valid) topic name `topic`.
///
/// Iterative, one pass over both strings. Rules: levels compare byte-exactly; `+` matches exactly
/// one level, including an empty one; `#` matches the parent level and any number of levels below
/// (`a/#` matches `a`, `a/`, `a/b/c`); a filter starting with a wildcard never matches a topic
/// starting with `$` [MQTT-4.7.2-1]. Pass the inner filter of a `$share/` subscription.
pub fn matches(filter: &str, topic: &str) -> bool {
    // [MQTT-4.7.2-1]
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for n in [
            "a", "a/b", "/", "//", "a//b", "/a", "a/", "$SYS/x", "..", " ", "é",
        ] {
            assert_eq!(validate_topic_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn wildcard_in_name_mqtt_4_7_1_1() {
        for n in ["a/#", "a/+/b", "a#", "+", "#"] {
            assert_eq!(
                validate_topic_name(n),
                Err(TopicError::WildcardInName),
                "{n}"
            );
        }
    }

    #[test]
    fn empty_mqtt_4_7_3_1() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn nul_mqtt_4_7_3_2() {
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::Nul));
        assert_eq!(validate_topic_filter("a/\0"), Err(TopicError::Nul));
    }

    #[test]
    fn valid_filters() {
        for f in [
            "#",
            "+",
            "a/#",
            "+/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//#",
            "$SYS/#",
            "$share/g/#",
        ] {
            assert_eq!(validate_topic_filter(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn multi_level_misplaced_mqtt_4_7_1_2() {
        for f in ["a/#/b", "a#", "#/", "##", "+#", "a/b#"] {
            assert_eq!(
                validate_topic_filter(f),
                Err(TopicError::MisplacedMultiLevel),
                "{f}"
            );
        }
    }

    #[test]
    fn single_level_misplaced_mqtt_4_7_1_3() {
        for f in ["a+/b", "a/+b", "++", "a/b+"] {
            assert_eq!(
                validate_topic_filter(f),
                Err(TopicError::MisplacedSingleLevel),
                "{f}"
            );
        }
    }

    #[test]
    fn shared_split_mqtt_4_8_2_1() {
        assert_eq!(split_shared("a/b"), Ok(None));
        assert_eq!(split_shared("$share/g/#"), Ok(Some(("g", "#"))));
        assert_eq!(split_shared("$share/g/$SYS/#"), Ok(Some(("g", "$SYS/#"))));
        assert_eq!(split_shared("$share/g/a/b"), Ok(Some(("g", "a/b"))));
        assert_eq!(split_shared("$share//a"), Err(TopicError::SharedEmptyName));
        assert_eq!(split_shared("$share/"), Err(TopicError::SharedEmptyName));
        // `$share` alone is an ordinary filter.
        assert_eq!(split_shared("$share"), Ok(None));
    }

    #[test]
    fn shared_malformed_mqtt_4_8_2_2() {
        assert_eq!(
            split_shared("$share/g+/a"),
            Err(TopicError::SharedInvalidName)
        );
        assert_eq!(
            split_shared("$share/#/a"),
            Err(TopicError::SharedInvalidName)
        );
        assert_eq!(
            split_shared("$share/g"),
            Err(TopicError::SharedMissingFilter)
        );
        assert_eq!(
            split_shared("$share/g/"),
            Err(TopicError::SharedMissingFilter)
        );
        assert_eq!(
            split_shared("$share/g/a#"),
            Err(TopicError::MisplacedMultiLevel)
        );
        assert_eq!(
            validate_topic_filter("$share/g"),
            Err(TopicError::SharedMissingFilter)
        );
    }

    #[test]
    fn matching_basics() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("allowed", "allowed/secret"));
        assert!(!matches("allowed", "allowedX"));
        assert!(!matches("allowed", "allowed/"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/+", "a"));
        assert!(matches("a/+", "a/"), "+ matches an empty level");
        assert!(matches("devices/+/x", "devices//x"));
        assert!(matches("+/+", "/a"));
        assert!(
            matches("devices/alice/#", "devices/alice/../bob/cmd"),
            "no normalisation"
        );
        assert!(!matches("devices/alice/#", "/devices/alice"));
    }

    #[test]
    fn multi_level_matches_parent() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/#", "ab"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/#", "a"));
    }

    #[test]
    fn dollar_topics_mqtt_4_7_2_1() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(!matches("+/#", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
        assert!(matches("a/+", "a/$x"), "only the first level is special");
    }

    #[test]
    fn deep_topic_is_linear() {
        let topic = "/".repeat(65_535);
        assert_eq!(validate_topic_name(&topic), Ok(()));
        assert!(matches("#", &topic));
        let filter = "+/".repeat(32_767) + "#";
        assert_eq!(validate_topic_filter(&filter), Ok(()));
        assert!(matches(&filter, &topic));
    }
}
