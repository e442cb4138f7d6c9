//! The broker client id: readable, injective (property tests read every encoding back), free of
//! the characters brokers refuse, and never longer than an MQTT string.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use proptest::prelude::*;

use super::{encode, TooLong, MAX_LEN};

/// Reads a broker client id back into (identity, client id); `None` if no encoding gives it.
fn decode(broker_id: &str) -> Option<(String, String)> {
    let (escaped, client_id) = broker_id.split_once(':')?;
    let mut identity = String::new();
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        identity.push_str(&rest[..at]);
        let (c, after) = match rest.get(at..at + 3)? {
            "%25" => ('%', 3),
            "%3A" => (':', 3),
            "%24" => ('$', 3),
            _ => return None,
        };
        identity.push(c);
        rest = &rest[at + after..];
    }
    identity.push_str(rest);
    Some((identity, client_id.to_owned()))
}

#[test]
fn plain_names_read_as_they_are() {
    assert_eq!(encode("alice", "dev-1").unwrap(), "alice:dev-1");
    assert_eq!(encode("anonymous", "x").unwrap(), "anonymous:x");
    assert_eq!(encode("Zoë Ω", "ü:1").unwrap(), "Zoë Ω:ü:1");
}

#[test]
fn a_colon_in_the_identity_cannot_reach_into_the_client_id() {
    // `{identity}:{client_id}` alone would give "a:b:c" twice.
    let one = encode("a", "b:c").unwrap();
    let two = encode("a:b", "c").unwrap();
    assert_eq!((one.as_str(), two.as_str()), ("a:b:c", "a%3Ab:c"));
    // An identity spelling the escape itself stays apart from the one it would imitate.
    assert_eq!(encode("a%3Ab", "c").unwrap(), "a%253Ab:c");
    assert_eq!(encode("x$y", "c").unwrap(), "x%24y:c");
}

#[test]
fn a_pair_longer_than_an_mqtt_string_is_refused() {
    let name = "a".repeat(MAX_LEN - 2);
    assert_eq!(encode(&name, "b").unwrap().len(), MAX_LEN);
    assert_eq!(encode(&name, "bc"), Err(TooLong));
    // Escapes count at their encoded length: 21 845 `$` are 65 535 bytes before the `:`.
    assert_eq!(encode(&"$".repeat(21_845), ""), Err(TooLong));
    assert_eq!(
        encode(&"$".repeat(65_535), &"c".repeat(65_535)),
        Err(TooLong)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every encoding reads back to its pair, so no two pairs share one.
    #[test]
    fn every_encoding_reads_back(identity in "[a:%$23A5b]{0,10}", client_id in "[a:%$23A5b]{0,10}") {
        let id = encode(&identity, &client_id).unwrap();
        prop_assert_eq!(decode(&id), Some((identity, client_id)));
    }

    /// Pairs drawn from the characters of the escapes collide often under a naive encoding:
    /// here two encodings are equal exactly when the pairs are.
    #[test]
    fn two_pairs_share_an_id_only_when_equal(
        a in ("[a:%3A]{0,4}", "[a:%3A]{0,4}"),
        b in ("[a:%3A]{0,4}", "[a:%3A]{0,4}"),
    ) {
        let ea = encode(&a.0, &a.1).unwrap();
        let eb = encode(&b.0, &b.1).unwrap();
        prop_assert_eq!(ea == eb, a == b);
    }

    /// Whatever moat accepts (identity: no `+ # /` or controls; client id: no `+ # / $`), the
    /// broker id holds nothing rumqttd drops or mosquitto's ACLs refuse.
    #[test]
    fn accepted_names_give_ids_both_brokers_take(
        identity in "[^+#/\\p{Cc}]{1,16}",
        client_id in "[^+#/$\\p{Cc}]{0,16}",
    ) {
        let id = encode(&identity, &client_id).unwrap();
        prop_assert!(!id.contains(['+', '#', '/', '$']), "{:?}", id);
        prop_assert!(id.len() <= MAX_LEN);
        let tail = format!(":{client_id}");
        prop_assert!(id.ends_with(&tail));
    }
}
