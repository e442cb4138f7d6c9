//! Why a session refused something, and the one mapping from that to the wire.
//!
//! Every refusal a session makes is a [`Refusal`]; [`Refusal::outcome`] is the only code that
//! picks an MQTT reason code (house rule 4). Before the CONNACK the answer is a CONNACK code
//! (translated for 3.x clients), after it a v5 DISCONNECT, and for 3.x clients a plain close,
//! because MQTT 3.1.1 has no way to say why.

use crate::mqtt::{ConnectError, DecodeError, FrameError, ProtocolVersion, ReasonCode};
use crate::policy::{AclReason, RuleRef};

/// Which limit a client went above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// PUBLISH packets per second.
    PublishRate,
    /// PUBLISH bytes per second.
    PublishBytes,
    /// SUBSCRIBE / UNSUBSCRIBE packets per second.
    SubscribeRate,
    /// Topic filters held by the session.
    Subscriptions,
    /// QoS 1/2 PUBLISHes not yet acknowledged (Receive Maximum).
    Inflight,
    /// A topic name or filter longer than allowed.
    TopicLength,
    /// A topic name or filter with too many levels.
    TopicLevels,
}

// === impl Exceeded ===

impl Exceeded {
    /// For logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::PublishRate => "publish rate",
            Self::PublishBytes => "publish byte rate",
            Self::SubscribeRate => "subscribe rate",
            Self::Subscriptions => "subscriptions per session",
            Self::Inflight => "inflight QoS 1/2 (Receive Maximum)",
            Self::TopicLength => "topic length",
            Self::TopicLevels => "topic levels",
        }
    }
}

/// What moat puts on the wire before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// CONNACK with this (MQTT 5) reason code, translated for 3.x clients, then close.
    ConnAck(ReasonCode),
    /// CONNACK with this code, already in the client's version's numbering (the codec chose
    /// it for a CONNECT it could not accept), then close.
    ConnAckRaw(u8),
    /// MQTT 5 DISCONNECT with this reason code, then close (3.x: close only).
    Disconnect(ReasonCode),
    /// Close without a word (e.g. the peer never spoke MQTT).
    Close,
}

/// Everything that ends a session on moat's initiative.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The first packet was not CONNECT [MQTT-3.1.0-1].
    #[error("first packet was not CONNECT [MQTT-3.1.0-1]")]
    FirstNotConnect,
    /// No complete CONNECT within the connect timeout.
    #[error("no CONNECT within the connect timeout")]
    ConnectTimeout,
    /// The CONNECT could not be accepted as sent.
    #[error("CONNECT refused: {0}")]
    Connect(#[from] ConnectError),
    /// The CONNECT's fixed header declared an impossible size.
    #[error("CONNECT: {0}")]
    ConnectFrame(FrameError),
    /// Client identifier the broker would mishandle or the policy does not accept.
    #[error("client identifier not valid: {0}")]
    ClientId(&'static str),
    /// The policy binds client ids to identities and this one is not the client's
    /// (`client_id:` rule; catalogue §A.21).
    #[error("client identifier not allowed for this identity ({0})")]
    ClientIdNotBound(RuleRef),
    /// Credentials did not match.
    #[error("bad user name or password ({0})")]
    BadCredentials(RuleRef),
    /// Authenticated (or anonymous) but not allowed in.
    #[error("not authorized ({0})")]
    NotAuthorized(RuleRef),
    /// The will's topic, QoS or retain flag may not be published by this client (catalogue
    /// §A.18).
    #[error("will on {topic:?} not authorized: {reason} ({rule})")]
    WillDenied {
        /// The will topic.
        topic: String,
        /// Why.
        reason: AclReason,
        /// The rule that refused it.
        rule: RuleRef,
    },
    /// A PUBLISH was refused by a rule that says to end the session (`disconnect: true`).
    #[error("publish to {topic:?} not authorized: {reason} ({rule})")]
    PublishDenied {
        /// The (resolved) topic.
        topic: String,
        /// Why.
        reason: AclReason,
        /// The rule that refused it.
        rule: RuleRef,
    },
    /// The broker is down or did not answer.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(String),
    /// A packet after CONNECT was malformed or broke a protocol rule.
    #[error("{0}")]
    Packet(#[from] DecodeError),
    /// A packet's fixed header was malformed or too large.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A client sent a packet only a server may send, or a second CONNECT.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// More unacknowledged QoS 1/2 PUBLISHes than the Receive Maximum moat advertised
    /// [MQTT-3.3.4-7].
    #[error("receive maximum exceeded [MQTT-3.3.4-7]")]
    ReceiveMaximum,
    /// An MQTT 5 CONNECT asked for enhanced authentication, which moat does not offer
    /// (catalogue §B.31).
    #[error("unsupported authentication method")]
    BadAuthMethod,
    /// Topic alias 0, above the maximum, or unknown with an empty topic.
    #[error("topic alias invalid: {0}")]
    TopicAlias(&'static str),
    /// No packet within 1.5 × keep alive [MQTT-3.1.2-24].
    #[error("keep alive expired [MQTT-3.1.2-24]")]
    KeepAlive,
    /// moat is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The broker misbehaved after the session started.
    #[error("broker error: {0}")]
    Broker(String),
    /// A new connection of the same identity took the client id (and the broker session) over.
    #[error("session taken over by a new connection with the same client id")]
    TakenOver,
    // --- network guard (session/limits.rs, admission) ---
    /// The client id, user name or source is banned (static or automatic ban).
    #[error("banned ({0})")]
    Banned(RuleRef),
    /// The client went above a per-session limit.
    #[error("{what} limit exceeded ({rule})", what = .0.as_str(), rule = .1)]
    Limit(Exceeded, RuleRef),
    /// The client stopped reading: a write to it did not finish in time.
    #[error("client did not read for {0:?}")]
    WriteTimeout(std::time::Duration),
    /// A TLS reload brought a CRL that revokes the client certificate this session was
    /// established with.
    #[error("client certificate (serial {serial}) revoked by {crl}")]
    CertificateRevoked {
        /// The CRL file that revokes it.
        crl: String,
        /// The certificate's serial (hex).
        serial: String,
    },
}

// === impl Refusal ===

impl Refusal {
    /// The rule behind the refusal, for the audit line: a policy rule where one decided,
    /// otherwise the protocol itself.
    pub(crate) fn rule(&self) -> String {
        match self {
            Refusal::BadCredentials(rule)
            | Refusal::NotAuthorized(rule)
            | Refusal::ClientIdNotBound(rule)
            | Refusal::WillDenied { rule, .. }
            | Refusal::PublishDenied { rule, .. }
            | Refusal::Banned(rule)
            | Refusal::Limit(_, rule) => rule.to_string(),
            Refusal::CertificateRevoked { .. } => "builtin tls.crls".to_string(),
            _ => "protocol".to_string(),
        }
    }

    /// The action and topic an audit line names for this refusal.
    pub(crate) fn audit_subject(&self) -> (&'static str, &str) {
        match self {
            Refusal::WillDenied { topic, .. } => ("will", topic),
            Refusal::PublishDenied { topic, .. } => ("publish", topic),
            Refusal::CertificateRevoked { .. } => ("session", ""),
            _ => ("connect", ""),
        }
    }

    /// The one mapping from a refusal to what the client is told.
    pub(crate) fn outcome(&self) -> Outcome {
        use ReasonCode as R;
        match self {
            Refusal::FirstNotConnect | Refusal::ConnectTimeout => Outcome::Close,
            Refusal::Connect(e) => match e.version().and_then(|v| e.connack_code(v)) {
                Some(code) => Outcome::ConnAckRaw(code),
                None => Outcome::Close,
            },
            Refusal::ConnectFrame(FrameError::TooLarge { .. }) => {
                Outcome::ConnAck(R::PacketTooLarge)
            }
            Refusal::ConnectFrame(_) => Outcome::Close,
            Refusal::ClientId(_) | Refusal::ClientIdNotBound(_) => {
                Outcome::ConnAck(R::ClientIdentifierNotValid)
            }
            Refusal::BadCredentials(_) => Outcome::ConnAck(R::BadUserNameOrPassword),
            Refusal::NotAuthorized(_) | Refusal::WillDenied { .. } => {
                Outcome::ConnAck(R::NotAuthorized)
            }
            Refusal::PublishDenied { .. } => Outcome::Disconnect(R::NotAuthorized),
            Refusal::BrokerUnavailable(_) => Outcome::ConnAck(R::ServerUnavailable),
            Refusal::Packet(e) => Outcome::Disconnect(e.reason()),
            Refusal::Frame(FrameError::TooLarge { .. }) => Outcome::Disconnect(R::PacketTooLarge),
            Refusal::Frame(_) => Outcome::Disconnect(R::MalformedPacket),
            Refusal::Protocol(_) => Outcome::Disconnect(R::ProtocolError),
            Refusal::TopicAlias(_) => Outcome::Disconnect(R::TopicAliasInvalid),
            Refusal::ReceiveMaximum => Outcome::Disconnect(R::ReceiveMaximumExceeded),
            Refusal::BadAuthMethod => Outcome::ConnAck(R::BadAuthenticationMethod),
            Refusal::KeepAlive => Outcome::Disconnect(R::KeepAliveTimeout),
            Refusal::ShuttingDown => Outcome::Disconnect(R::ServerShuttingDown),
            Refusal::Broker(_) => Outcome::Disconnect(R::UnspecifiedError),
            Refusal::TakenOver => Outcome::Disconnect(R::SessionTakenOver),
            Refusal::Banned(_) => Outcome::ConnAck(R::Banned),
            Refusal::Limit(what, _) => Outcome::Disconnect(match what {
                Exceeded::PublishRate | Exceeded::SubscribeRate => R::MessageRateTooHigh,
                Exceeded::PublishBytes | Exceeded::Subscriptions => R::QuotaExceeded,
                // [MQTT-3.3.4-7] More unacknowledged QoS 1/2 PUBLISHes than Receive Maximum.
                Exceeded::Inflight => R::ReceiveMaximumExceeded,
                Exceeded::TopicLength | Exceeded::TopicLevels => R::TopicNameInvalid,
            }),
            Refusal::WriteTimeout(_) => Outcome::Close,
            // 0x87, not 0x8A: Banned is a CONNACK code only; MQTT 5's DISCONNECT table
            // (3.14.2.1) does not list it, and a client may treat it as a protocol error.
            Refusal::CertificateRevoked { .. } => Outcome::Disconnect(R::NotAuthorized),
        }
    }
}

/// A policy refusal of one packet that leaves the session up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// A PUBLISH (QoS > 0 gets an acknowledgement).
    Publish,
    /// One filter of a SUBSCRIBE.
    Subscribe,
    /// One filter of a SUBSCRIBE the policy allows but the broker cannot serve.
    Unservable,
}

// === impl Denied ===

impl Denied {
    /// The code the client's acknowledgement carries: MQTT 5 says "not authorized" (0x87) in
    /// PUBACK/PUBREC and SUBACK; MQTT 3.x cannot refuse a PUBLISH, so it gets a positive
    /// acknowledgement [MQTT-3.3.5-2], and a refused filter gets SUBACK 0x80.
    ///
    /// A filter the broker cannot serve gets 0x83 in MQTT 5, "Implementation specific error:
    /// the SUBSCRIBE is valid but the Server does not accept it" (§3.9.3): the filter is
    /// well-formed (not 0x8F) and allowed (not 0x87), and 0x80 would say less.
    pub(crate) fn code(self, version: ProtocolVersion) -> u8 {
        match (self, version.is_v5()) {
            (Denied::Unservable, true) => ReasonCode::ImplementationSpecificError.code(),
            (_, true) => ReasonCode::NotAuthorized.code(),
            (Denied::Publish, false) => 0x00,
            (Denied::Subscribe | Denied::Unservable, false) => 0x80,
        }
    }
}
