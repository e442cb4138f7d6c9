//! Why a session refused something, and the one mapping from that to the wire.
//!
//! Every refusal a session makes is a [`Refusal`], and says whose fault it is, rustls-style: the
//! client's ([`PeerFault`]), the policy's decision ([`PolicyRefusal`]), the broker's
//! ([`BrokerFault`]) or moat's own ([`InternalFault`]); shutting down and a takeover are no
//! one's fault. Logs name that side ([`Refusal::side`]): a client that vanished is not a broker
//! failure.
//!
//! This file is the only code that picks MQTT reason codes (house rule 4):
//! [`Refusal::outcome`] for whatever ends a session or refuses a CONNECT, [`Denied::code`] for
//! the answers that refuse one packet or filter and leave the session up (PUBACK/PUBREC 0x87,
//! SUBACK 0x87/0x83/0x8F/0x80, PUBCOMP 0x92), and [`Outcome::packet`], the one translation of
//! an MQTT 5 answer for 3.x clients: a CONNACK return code, or a plain close, because MQTT
//! 3.1.1 has no DISCONNECT from the server.

use std::time::Duration;

use super::reader::ReadError;
use crate::mqtt::{
    self, ConnectError, ConnectReturnCode, DecodeError, EncodeError, FrameError, Packet,
    ProtocolVersion, ReasonCode,
};
use crate::policy::{AclReason, RuleRef};

/// Everything that ends a session (or refuses its CONNECT) on moat's initiative.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The client broke the protocol, or stopped behaving like a client.
    #[error(transparent)]
    Peer(#[from] PeerFault),
    /// The policy (or a limit it sets) said no.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// The broker failed or misbehaved.
    #[error(transparent)]
    Broker(#[from] BrokerFault),
    /// moat failed on its own.
    #[error(transparent)]
    Internal(#[from] InternalFault),
    /// moat could not verify the password in time: the verification queue had no slot for
    /// the client's source, or no verifier was free within `passwords.queue_wait`. Says
    /// nothing about the credentials (and is not counted as a failed login).
    #[error("{0}")]
    PasswordBusy(crate::authn::Busy),
    /// moat is shutting down (or draining, with no other instance to name).
    #[error("server shutting down")]
    ShuttingDown,
    /// moat is draining and names the instance to use instead (`drain.server_reference`).
    #[error("server draining; use {0}")]
    Moved(std::sync::Arc<str>),
    /// An operator ended the session (`moat ctl kick`).
    #[error("kicked by an operator")]
    Kicked,
    /// A new connection of the same identity took the client id (and the broker session) over.
    #[error("session taken over by a new connection with the same client id")]
    TakenOver,
}

/// Faults of the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerFault {
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
    /// A client identifier the broker would mishandle, or too long for the policy.
    #[error("client identifier not valid: {0}")]
    ClientId(&'static str),
    /// An MQTT 5 CONNECT asked for enhanced authentication, which moat does not offer
    /// (catalogue §B.31).
    #[error("unsupported authentication method")]
    BadAuthMethod,
    /// A packet after CONNECT was malformed or broke a protocol rule.
    #[error("{0}")]
    Packet(#[from] DecodeError),
    /// A packet's fixed header was malformed or too large.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A packet only a server may send, a second CONNECT, a packet id in use, …
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Topic alias 0 or above the maximum [MQTT-3.3.2-8].
    #[error("topic alias invalid: {0}")]
    TopicAlias(&'static str),
    /// No packet within 1.5 × keep alive [MQTT-3.1.2-24].
    #[error("keep alive expired [MQTT-3.1.2-24]")]
    KeepAlive,
    /// The client stopped reading: a write to it did not finish in time.
    #[error("client did not read for {0:?}")]
    StoppedReading(Duration),
    /// A write to the client failed: it is gone.
    #[error("client connection lost: {0}")]
    Gone(std::io::Error),
}

/// Refusals the policy decided (each names its rule in the audit line).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyRefusal {
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
    /// The client id, user name or source is banned (static or automatic ban).
    #[error("banned ({0})")]
    Banned(RuleRef),
    /// A ban set while the session was live (a policy reload or an operator) covers its
    /// identity, client id or source.
    #[error("banned while connected ({0})")]
    BannedLive(RuleRef),
    /// The client went above a per-session limit.
    #[error("{what} limit exceeded ({rule})", what = .0.as_str(), rule = .1)]
    Limit(Exceeded, RuleRef),
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

/// Faults of the broker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerFault {
    /// The broker is down, refused moat's CONNECT or did not answer it (CONNECT phase).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker closed the connection.
    #[error("broker closed the connection")]
    Closed,
    /// Reading from the broker failed (socket error, a bad or oversized frame).
    #[error("broker read: {0}")]
    Read(#[source] ReadError),
    /// Writing to the broker failed.
    #[error("broker write: {0}")]
    Write(#[source] std::io::Error),
    /// The broker sent a packet the codec refuses.
    #[error("broker sent a bad packet: {0}")]
    BadPacket(#[source] DecodeError),
    /// The broker broke a protocol rule moat relies on.
    #[error("broker error: {0}")]
    Misbehaved(&'static str),
    /// A new delivery on a packet id whose QoS 2 exchange is still open.
    #[error("broker reused packet id {0} before its QoS 2 exchange was complete")]
    ReusedPacketId(u16),
    /// A PUBREL for a delivery the broker had no PUBREC for.
    #[error("broker sent PUBREL {0} before it had the PUBREC")]
    PubRelBeforePubRec(u16),
}

/// Faults of moat itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InternalFault {
    /// A packet moat built could not be encoded.
    #[error("cannot encode {0}")]
    Encode(#[from] EncodeError),
    /// Something moat's own code guarantees did not hold.
    #[error("internal error: {0}")]
    Invariant(&'static str),
}

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

/// Whose fault a refusal is, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client.
    Client,
    /// The policy decided.
    Policy,
    /// The broker.
    Broker,
    /// moat (its own fault, or shutting down).
    Moat,
}

// === impl Side ===

impl Side {
    /// For logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Policy => "policy",
            Side::Broker => "broker",
            Side::Moat => "moat",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moat puts on the wire before closing, as an MQTT 5 reason code; [`Outcome::packet`]
/// says it in the client's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// CONNACK with this reason code, then close.
    ConnAck(ReasonCode),
    /// DISCONNECT with this reason code, then close.
    Disconnect(ReasonCode),
    /// Close without a word (e.g. the peer never spoke MQTT, or is gone).
    Close,
}

// === impl Outcome ===

impl Outcome {
    /// The packet that says this outcome in `version`, or `None` to close without one. The one
    /// translation for 3.x: a CONNACK return code from `ConnectReturnCode::from_v5`; MQTT 3.x
    /// has no DISCONNECT from the server, so closing is the answer.
    pub(crate) fn packet(self, version: ProtocolVersion) -> Option<Packet> {
        Some(match (self, version.is_v5()) {
            (Outcome::ConnAck(code), true) => Packet::ConnAck(mqtt::ConnAck::new(code.code())),
            (Outcome::ConnAck(code), false) => {
                Packet::ConnAck(mqtt::ConnAck::new(ConnectReturnCode::from_v5(code).code()))
            }
            (Outcome::Disconnect(code), true) => {
                Packet::Disconnect(mqtt::Disconnect::new(code.code()))
            }
            (Outcome::Disconnect(_), false) | (Outcome::Close, _) => return None,
        })
    }
}

// === impl Refusal ===

impl Refusal {
    /// Whose fault it is.
    pub(crate) fn side(&self) -> Side {
        match self {
            Refusal::Peer(_) | Refusal::TakenOver => Side::Client,
            Refusal::Policy(_) => Side::Policy,
            Refusal::Broker(_) => Side::Broker,
            Refusal::Internal(_)
            | Refusal::PasswordBusy(_)
            | Refusal::ShuttingDown
            | Refusal::Moved(_)
            | Refusal::Kicked => Side::Moat,
        }
    }

    /// Why a session that was up ended, as one short word or phrase for the `session closed`
    /// line (a log shipper groups by it; the refusal's text says the rest).
    pub(crate) fn end_reason(&self) -> &'static str {
        match self {
            Refusal::Peer(PeerFault::KeepAlive) => "keep alive",
            Refusal::Peer(PeerFault::StoppedReading(_)) => "client stopped reading",
            Refusal::Peer(PeerFault::Gone(_)) => "client lost",
            Refusal::Peer(_) => "protocol error",
            Refusal::Policy(_) => "refusal",
            Refusal::Broker(_) => "broker",
            Refusal::Internal(_) | Refusal::PasswordBusy(_) => "internal",
            Refusal::ShuttingDown => "shutdown",
            Refusal::Moved(_) => "drained",
            Refusal::Kicked => "kicked",
            Refusal::TakenOver => "taken over",
        }
    }

    /// The rule behind the refusal, for the audit line: a policy rule where one decided,
    /// otherwise the protocol itself.
    pub(crate) fn rule(&self) -> String {
        let refusal = match self {
            Refusal::Policy(refusal) => refusal,
            Refusal::PasswordBusy(_) => return "builtin password-verification-capacity".into(),
            _ => return "protocol".to_string(),
        };
        match refusal {
            PolicyRefusal::BadCredentials(rule)
            | PolicyRefusal::NotAuthorized(rule)
            | PolicyRefusal::ClientIdNotBound(rule)
            | PolicyRefusal::WillDenied { rule, .. }
            | PolicyRefusal::PublishDenied { rule, .. }
            | PolicyRefusal::Banned(rule)
            | PolicyRefusal::BannedLive(rule)
            | PolicyRefusal::Limit(_, rule) => rule.to_string(),
            PolicyRefusal::CertificateRevoked { .. } => "builtin tls.crls".to_string(),
        }
    }

    /// The action and topic an audit line names for this refusal.
    pub(crate) fn audit_subject(&self) -> (&'static str, &str) {
        match self {
            Refusal::Policy(PolicyRefusal::WillDenied { topic, .. }) => ("will", topic),
            Refusal::Policy(PolicyRefusal::PublishDenied { topic, .. }) => ("publish", topic),
            Refusal::Policy(
                PolicyRefusal::CertificateRevoked { .. } | PolicyRefusal::BannedLive(_),
            ) => ("session", ""),
            Refusal::Policy(PolicyRefusal::Limit(..)) => ("limit", ""),
            _ => ("connect", ""),
        }
    }

    /// The packet that ends the session in `version` (see [`Outcome::packet`]), with the
    /// Server Reference property [MQTT-3.14.2.2.5] when the client is told to go elsewhere.
    pub(crate) fn goodbye(&self, version: ProtocolVersion) -> Option<Packet> {
        let mut packet = self.outcome().packet(version)?;
        if let (Refusal::Moved(to), Packet::Disconnect(d)) = (self, &mut packet) {
            d.properties.server_reference = Some(mqtt::MqttStr::from(&**to));
        }
        Some(packet)
    }

    /// Whether this refusal is a failed login, which automatic bans count
    /// (`auto_ban.failed_auth`). A refusal for lack of verification capacity is not: it says
    /// nothing about the credentials, and counting it would let a flood ban the sources it
    /// crowds out.
    pub(crate) fn is_failed_login(&self) -> bool {
        matches!(
            self,
            Refusal::Policy(PolicyRefusal::BadCredentials(_) | PolicyRefusal::NotAuthorized(_))
        )
    }

    /// The one mapping from a refusal to what the client is told. Before the CONNACK the
    /// answer is a CONNACK code, after it a DISCONNECT (both translated for 3.x by
    /// [`Outcome::packet`]).
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Refusal::Peer(fault) => fault.outcome(),
            Refusal::Policy(refusal) => refusal.outcome(),
            // A broker that failed before the CONNACK, or no capacity to verify the password:
            // the client did nothing wrong.
            Refusal::Broker(BrokerFault::Unavailable(_)) | Refusal::PasswordBusy(_) => {
                Outcome::ConnAck(ReasonCode::ServerUnavailable)
            }
            Refusal::Broker(_) | Refusal::Internal(_) => {
                Outcome::Disconnect(ReasonCode::UnspecifiedError)
            }
            Refusal::ShuttingDown => Outcome::Disconnect(ReasonCode::ServerShuttingDown),
            Refusal::Moved(_) => Outcome::Disconnect(ReasonCode::UseAnotherServer),
            Refusal::Kicked => Outcome::Disconnect(ReasonCode::AdministrativeAction),
            Refusal::TakenOver => Outcome::Disconnect(ReasonCode::SessionTakenOver),
        }
    }
}

// === impl PeerFault ===

impl PeerFault {
    fn outcome(&self) -> Outcome {
        use ReasonCode as R;
        match self {
            PeerFault::FirstNotConnect | PeerFault::ConnectTimeout => Outcome::Close,
            PeerFault::Connect(e) => match e.version().and_then(|v| e.connack_reason(v)) {
                Some(code) => Outcome::ConnAck(code),
                None => Outcome::Close,
            },
            PeerFault::ConnectFrame(FrameError::TooLarge { .. }) => {
                Outcome::ConnAck(R::PacketTooLarge)
            }
            PeerFault::ConnectFrame(_) => Outcome::Close,
            PeerFault::ClientId(_) => Outcome::ConnAck(R::ClientIdentifierNotValid),
            PeerFault::BadAuthMethod => Outcome::ConnAck(R::BadAuthenticationMethod),
            PeerFault::Packet(e) => Outcome::Disconnect(e.reason()),
            PeerFault::Frame(FrameError::TooLarge { .. }) => Outcome::Disconnect(R::PacketTooLarge),
            PeerFault::Frame(_) => Outcome::Disconnect(R::MalformedPacket),
            PeerFault::Protocol(_) => Outcome::Disconnect(R::ProtocolError),
            PeerFault::TopicAlias(_) => Outcome::Disconnect(R::TopicAliasInvalid),
            PeerFault::KeepAlive => Outcome::Disconnect(R::KeepAliveTimeout),
            // Nobody is reading, or nobody is there: nothing can be told.
            PeerFault::StoppedReading(_) | PeerFault::Gone(_) => Outcome::Close,
        }
    }
}

// === impl PolicyRefusal ===

impl PolicyRefusal {
    fn outcome(&self) -> Outcome {
        use ReasonCode as R;
        match self {
            PolicyRefusal::ClientIdNotBound(_) => Outcome::ConnAck(R::ClientIdentifierNotValid),
            PolicyRefusal::BadCredentials(_) => Outcome::ConnAck(R::BadUserNameOrPassword),
            PolicyRefusal::NotAuthorized(_) | PolicyRefusal::WillDenied { .. } => {
                Outcome::ConnAck(R::NotAuthorized)
            }
            PolicyRefusal::Banned(_) => Outcome::ConnAck(R::Banned),
            PolicyRefusal::PublishDenied { .. } => Outcome::Disconnect(R::NotAuthorized),
            PolicyRefusal::Limit(what, _) => Outcome::Disconnect(match what {
                Exceeded::PublishRate | Exceeded::SubscribeRate => R::MessageRateTooHigh,
                Exceeded::PublishBytes | Exceeded::Subscriptions => R::QuotaExceeded,
                // [MQTT-3.3.4-7] More unacknowledged QoS 1/2 PUBLISHes than Receive Maximum.
                Exceeded::Inflight => R::ReceiveMaximumExceeded,
                Exceeded::TopicLength | Exceeded::TopicLevels => R::TopicNameInvalid,
            }),
            // 0x87, not 0x8A: Banned is a CONNACK code only; MQTT 5's DISCONNECT table
            // (3.14.2.1) does not list it, and a client may treat it as a protocol error.
            PolicyRefusal::CertificateRevoked { .. } => Outcome::Disconnect(R::NotAuthorized),
            // Not 0x8A either (see above): the ban is an operator's action on a live session.
            PolicyRefusal::BannedLive(_) => Outcome::Disconnect(R::AdministrativeAction),
        }
    }
}

/// An answer that refuses one packet or one filter and leaves the session up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// A PUBLISH the policy refused (QoS > 0 gets an acknowledgement).
    Publish,
    /// One filter of a SUBSCRIBE the policy refused.
    Subscribe,
    /// One filter of a SUBSCRIBE the policy allows but the broker cannot serve.
    Unservable,
    /// One filter of an MQTT 5 SUBSCRIBE that is not a valid filter.
    InvalidFilter,
    /// A PUBREL for a packet id no exchange holds (answered with PUBCOMP).
    UnknownPacketId,
}

// === impl Denied ===

impl Denied {
    /// The code the client's acknowledgement carries in `version`.
    ///
    /// MQTT 5 says "not authorized" (0x87) in PUBACK/PUBREC and SUBACK; MQTT 3.x cannot refuse
    /// a PUBLISH, so it gets a positive acknowledgement [MQTT-3.3.5-2], and a refused filter
    /// gets SUBACK 0x80.
    ///
    /// A filter the broker cannot serve gets 0x83 in MQTT 5, "Implementation specific error:
    /// the SUBSCRIBE is valid but the Server does not accept it" (§3.9.3): the filter is
    /// well-formed (not 0x8F) and allowed (not 0x87), and 0x80 would say less. An invalid
    /// filter is 0x8F "Topic Filter invalid" (3.x closes the connection instead; this answer
    /// is never asked for there). A PUBREL nobody holds gets PUBCOMP 0x92 "Packet Identifier
    /// not found"; 3.x has no reason codes, so a plain PUBCOMP frees the id.
    pub(crate) fn code(self, version: ProtocolVersion) -> u8 {
        let reason = match (self, version.is_v5()) {
            (Denied::Publish | Denied::UnknownPacketId, false) => return 0x00,
            (Denied::Subscribe | Denied::Unservable | Denied::InvalidFilter, false) => return 0x80,
            (Denied::Publish | Denied::Subscribe, true) => ReasonCode::NotAuthorized,
            (Denied::Unservable, true) => ReasonCode::ImplementationSpecificError,
            (Denied::InvalidFilter, true) => ReasonCode::TopicFilterInvalid,
            (Denied::UnknownPacketId, true) => ReasonCode::PacketIdentifierNotFound,
        };
        reason.code()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests;
