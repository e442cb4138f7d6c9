//! MQTT 5 reason codes, MQTT 3.1.1 CONNACK return codes, and the mapping between them.
//!
//! What it owns: the table of wire codes (defined once, like quinn's `transport_error.rs`), which
//! codes each packet may carry, and how a v5 CONNACK/SUBACK reason is expressed to a 3.x client.
//! Why it is separate: house rule 4 — reason codes are picked in one place (the session's
//! `outcome()`); this file only names them.
//! What it must not do: decide *which* code a situation deserves.

use super::PacketType;

/// Every MQTT 5.0 reason code (§2.4). 0x00 is Success / Normal disconnection / Granted QoS 0,
/// 0x01 and 0x02 are Granted QoS 1/2 (one variant per value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // The names are the spec's names.
pub enum ReasonCode {
    /// Success, Normal disconnection, Granted QoS 0.
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

const ALL: [ReasonCode; 43] = {
    use ReasonCode::*;
    [
        Success,
        GrantedQoS1,
        GrantedQoS2,
        DisconnectWithWill,
        NoMatchingSubscribers,
        NoSubscriptionExisted,
        ContinueAuthentication,
        ReAuthenticate,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        ServerShuttingDown,
        BadAuthenticationMethod,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        PacketIdentifierInUse,
        PacketIdentifierNotFound,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

// === impl ReasonCode ===

impl ReasonCode {
    /// The wire value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// True for failure codes (0x80 and above).
    pub fn is_error(self) -> bool {
        self.code() >= 0x80
    }
}

impl From<ReasonCode> for u8 {
    fn from(r: ReasonCode) -> u8 {
        r as u8
    }
}

impl TryFrom<u8> for ReasonCode {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        ALL.iter().copied().find(|r| r.code() == v).ok_or(v)
    }
}

/// Which reason codes a v5 packet may carry [MQTT-3.2.2-8, MQTT-3.4.2-1, MQTT-3.5.2-1,
/// MQTT-3.6.2-1, MQTT-3.7.2-1, MQTT-3.9.3-2, MQTT-3.11.3-2, MQTT-3.14.2-1, MQTT-3.15.2-1].
pub fn allowed_in(packet: PacketType, code: u8) -> bool {
    match packet {
        PacketType::ConnAck => matches!(
            code,
            0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
        ),
        PacketType::PubAck | PacketType::PubRec => {
            matches!(
                code,
                0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
            )
        }
        PacketType::PubRel | PacketType::PubComp => matches!(code, 0x00 | 0x92),
        PacketType::SubAck => matches!(
            code,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        ),
        PacketType::UnsubAck => matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
        PacketType::Disconnect => matches!(
            code,
            0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
        ),
        PacketType::Auth => matches!(code, 0x00 | 0x18 | 0x19),
        _ => false,
    }
}

/// The MQTT 3.1.1 CONNACK return codes (§3.2.2.3); 6–255 are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0x00 Connection accepted.
    Accepted = 0,
    /// 0x01 Unacceptable protocol version.
    UnacceptableProtocolVersion = 1,
    /// 0x02 Identifier rejected.
    IdentifierRejected = 2,
    /// 0x03 Server unavailable.
    ServerUnavailable = 3,
    /// 0x04 Bad user name or password.
    BadUserNameOrPassword = 4,
    /// 0x05 Not authorized.
    NotAuthorized = 5,
}

// === impl ConnectReturnCode ===

impl ConnectReturnCode {
    /// The wire value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Expresses a v5 CONNACK reason to a 3.x client:
    ///
    /// | v5 | 3.1.1 |
    /// |---|---|
    /// | 0x00 | 0x00 accepted |
    /// | 0x84 unsupported protocol version | 0x01 |
    /// | 0x85 client identifier not valid | 0x02 |
    /// | 0x86 bad user name or password, 0x8C bad authentication method | 0x04 |
    /// | 0x87 not authorized, 0x8A banned | 0x05 |
    /// | 0x88, 0x89, 0x9F and every other failure | 0x03 server unavailable |
    ///
    /// (For 0x81/0x82 a 3.1.1 server closes without CONNACK; that choice is the caller's — see
    /// `ConnectError::connack_reason`.)
    pub fn from_v5(reason: ReasonCode) -> ConnectReturnCode {
        match reason {
            ReasonCode::Success => Self::Accepted,
            ReasonCode::UnsupportedProtocolVersion => Self::UnacceptableProtocolVersion,
            ReasonCode::ClientIdentifierNotValid => Self::IdentifierRejected,
            ReasonCode::BadUserNameOrPassword | ReasonCode::BadAuthenticationMethod => {
                Self::BadUserNameOrPassword
            }
            ReasonCode::NotAuthorized | ReasonCode::Banned => Self::NotAuthorized,
            _ => Self::ServerUnavailable,
        }
    }

    /// The reverse direction (a v3 broker's answer shown to a v5 client).
    pub fn to_v5(self) -> ReasonCode {
        match self {
            Self::Accepted => ReasonCode::Success,
            Self::UnacceptableProtocolVersion => ReasonCode::UnsupportedProtocolVersion,
            Self::IdentifierRejected => ReasonCode::ClientIdentifierNotValid,
            Self::ServerUnavailable => ReasonCode::ServerUnavailable,
            Self::BadUserNameOrPassword => ReasonCode::BadUserNameOrPassword,
            Self::NotAuthorized => ReasonCode::NotAuthorized,
        }
    }
}

impl TryFrom<u8> for ConnectReturnCode {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return Err(v),
        })
    }
}

/// Expresses a v5 SUBACK reason code to a 3.x client: granted QoS stays, any failure is 0x80
/// [v3:MQTT-3.9.3-2].
pub fn suback_code_v3(code: u8) -> u8 {
    if code <= 2 {
        code
    } else {
        0x80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_round_trip() {
        for v in 0..=255u8 {
            if let Ok(r) = ReasonCode::try_from(v) {
                assert_eq!(r.code(), v);
            }
        }
        assert_eq!(ReasonCode::try_from(0x81), Ok(ReasonCode::MalformedPacket));
        assert_eq!(ReasonCode::try_from(0x03), Err(0x03));
        assert_eq!(ReasonCode::try_from(0xA3), Err(0xA3));
        assert_eq!(ALL.len(), 43);
    }

    #[test]
    fn v5_to_v3_connack() {
        use ConnectReturnCode as C;
        use ReasonCode as R;
        let cases = [
            (R::Success, C::Accepted),
            (
                R::UnsupportedProtocolVersion,
                C::UnacceptableProtocolVersion,
            ),
            (R::ClientIdentifierNotValid, C::IdentifierRejected),
            (R::ServerUnavailable, C::ServerUnavailable),
            (R::ServerBusy, C::ServerUnavailable),
            (R::ConnectionRateExceeded, C::ServerUnavailable),
            (R::BadUserNameOrPassword, C::BadUserNameOrPassword),
            (R::NotAuthorized, C::NotAuthorized),
            (R::Banned, C::NotAuthorized),
        ];
        for (r, c) in cases {
            assert_eq!(ConnectReturnCode::from_v5(r), c, "{r:?}");
        }
        assert_eq!(ConnectReturnCode::try_from(6), Err(6));
    }

    #[test]
    fn allowed_codes_mqtt_3_4_2_1() {
        assert!(allowed_in(PacketType::PubAck, 0x87));
        assert!(!allowed_in(PacketType::PubAck, 0x92));
        assert!(allowed_in(PacketType::PubComp, 0x92));
        assert!(!allowed_in(PacketType::Auth, 0x80));
        assert!(allowed_in(PacketType::Disconnect, 0xA2));
        assert!(!allowed_in(PacketType::Disconnect, 0x84));
        assert!(!allowed_in(PacketType::Disconnect, 0x92));
        assert!(allowed_in(PacketType::ConnAck, 0x9F));
        assert!(!allowed_in(PacketType::ConnAck, 0x8B));
        assert_eq!(suback_code_v3(0x87), 0x80);
        assert_eq!(suback_code_v3(2), 2);
    }
}
