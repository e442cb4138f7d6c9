//! MQTT 5 topic aliases sent by the client, resolved by moat.
//!
//! The broker never sees an alias: moat tells it (Topic Alias Maximum 0 in the upstream CONNECT)
//! that it accepts none, and forwards every PUBLISH with its full topic name. The table is
//! updated on every well-formed PUBLISH, allowed or denied, so it stays in step with what the
//! client believes; policy is judged on the resolved topic (catalogue §A.1–3).

use crate::mqtt::MqttStr;

/// The client→moat alias table of one connection (aliases never survive a reconnect).
#[derive(Debug, Default)]
pub(crate) struct AliasTable {
    /// Index `alias - 1`; length is the Topic Alias Maximum moat advertised.
    slots: Vec<Option<MqttStr>>,
}

/// Why an alias could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasError {
    /// Alias 0 or above the advertised maximum [MQTT-3.3.2-8, MQTT-3.3.2-9].
    OutOfRange,
    /// Empty topic with an alias that was never set [MQTT-3.3.2-12] (a protocol error).
    Unknown,
}

// === impl AliasTable ===

impl AliasTable {
    /// A table for `maximum` aliases (the value moat advertises in CONNACK).
    pub(crate) fn new(maximum: u16) -> Self {
        AliasTable {
            slots: vec![None; usize::from(maximum)],
        }
    }

    /// Resolves a PUBLISH's (topic, alias) pair to the topic it stands for, updating the table
    /// when a non-empty topic comes with an alias.
    pub(crate) fn resolve(&mut self, topic: &MqttStr, alias: u16) -> Result<MqttStr, AliasError> {
        let slot = usize::from(alias)
            .checked_sub(1)
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(AliasError::OutOfRange)?;
        if topic.as_str().is_empty() {
            slot.clone().ok_or(AliasError::Unknown)
        } else {
            *slot = Some(topic.clone());
            Ok(topic.clone())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alias_remap_follows_the_client_mqtt_3_3_2_12() {
        let mut t = AliasTable::new(4);
        assert_eq!(t.resolve(&"".into(), 1), Err(AliasError::Unknown));
        assert_eq!(
            t.resolve(&"allowed/x".into(), 1).unwrap().as_str(),
            "allowed/x"
        );
        assert_eq!(t.resolve(&"".into(), 1).unwrap().as_str(), "allowed/x");
        assert_eq!(
            t.resolve(&"secret/y".into(), 1).unwrap().as_str(),
            "secret/y"
        );
        assert_eq!(t.resolve(&"".into(), 1).unwrap().as_str(), "secret/y");
    }

    #[test]
    fn alias_zero_and_above_maximum_are_invalid_mqtt_3_3_2_8() {
        let mut t = AliasTable::new(4);
        assert_eq!(t.resolve(&"a".into(), 0), Err(AliasError::OutOfRange));
        assert_eq!(t.resolve(&"a".into(), 5), Err(AliasError::OutOfRange));
        let mut none = AliasTable::new(0);
        assert_eq!(none.resolve(&"a".into(), 1), Err(AliasError::OutOfRange));
    }
}
