//! The client id the broker sees: the client's own, namespaced by the identity that
//! authenticated, so two identities can never share a broker session.
//!
//! What it owns: one injective encoding of (identity, client id) into a broker client id,
//! `{identity}:{client id}` with `%`, `:` and `$` in the identity written `%25`, `%3A` and
//! `%24`. The identity part then has no bare `:`, so the first `:` ends it and the pair reads
//! back unambiguously (the tests decode it); without the escape, identity `a` with client id
//! `b:c` and identity `a:b` with client id `c` would meet in one broker session.
//! Why this encoding: it needs no state and no key, so it holds across moat restarts and
//! across several moat instances in front of one broker, and an operator reading the broker's
//! log or writing a mosquitto `%c` ACL sees `alice:dev-1`. `$` is escaped because rumqttd
//! silently drops a CONNECT whose client id contains one (as it does `+ # /`, which neither
//! identities nor client ids may hold); mosquitto takes any UTF-8 without `+ #`. Three
//! characters to escape need no percent-encoding crate, which would also encode all non-ASCII.
//! What it must not do: reach the client (CONNACK, ACL placeholders, bans and logs use the
//! client's own id), or exceed an MQTT string: a pair longer than 65 535 bytes together is
//! refused, not cut.

/// Ends the identity part; never bare inside it.
const SEPARATOR: char = ':';

/// The longest MQTT string, so the longest client id a broker can be sent [MQTT-1.5.4].
const MAX_LEN: usize = 65_535;

/// The identity and the client id do not fit in one MQTT string together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// The broker client id for `client_id` used by `identity`.
pub(crate) fn encode(identity: &str, client_id: &str) -> Result<String, TooLong> {
    let identity_len: usize = identity
        .chars()
        .map(|c| escape(c).map_or(c.len_utf8(), str::len))
        .sum();
    let len = identity_len
        .saturating_add(SEPARATOR.len_utf8())
        .saturating_add(client_id.len());
    if len > MAX_LEN {
        return Err(TooLong);
    }
    let mut id = String::with_capacity(len);
    for c in identity.chars() {
        match escape(c) {
            Some(escaped) => id.push_str(escaped),
            None => id.push(c),
        }
    }
    id.push(SEPARATOR);
    id.push_str(client_id);
    Ok(id)
}

fn escape(c: char) -> Option<&'static str> {
    match c {
        '%' => Some("%25"),
        ':' => Some("%3A"),
        '$' => Some("%24"),
        _ => None,
    }
}

#[cfg(test)]
#[path = "broker_id_tests.rs"]
mod tests;
