//! The one mapping to the wire: every refusal's outcome, the per-packet codes, and the one
//! translation for 3.x clients.

use super::*;
use crate::mqtt::DecodeError;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn rule() -> RuleRef {
    RuleRef::builtin("test")
}

/// The bytes `outcome` puts on the wire for `version` (empty: a plain close).
fn wire(outcome: Outcome, version: ProtocolVersion) -> Vec<u8> {
    match outcome.packet(version) {
        Some(p) => p.to_bytes(version).unwrap().to_vec(),
        None => Vec::new(),
    }
}

#[test]
fn every_side_has_its_outcome_and_its_name_in_the_log() {
    let cases: Vec<(Refusal, Side, Outcome)> = vec![
        (
            PeerFault::KeepAlive.into(),
            Side::Client,
            Outcome::Disconnect(ReasonCode::KeepAliveTimeout),
        ),
        (
            PeerFault::Gone(std::io::ErrorKind::BrokenPipe.into()).into(),
            Side::Client,
            Outcome::Close,
        ),
        (
            PeerFault::StoppedReading(Duration::from_secs(30)).into(),
            Side::Client,
            Outcome::Close,
        ),
        (
            PolicyRefusal::Limit(Exceeded::PublishRate, rule()).into(),
            Side::Policy,
            Outcome::Disconnect(ReasonCode::MessageRateTooHigh),
        ),
        (
            PolicyRefusal::Banned(rule()).into(),
            Side::Policy,
            Outcome::ConnAck(ReasonCode::Banned),
        ),
        (
            BrokerFault::Unavailable("down".into()).into(),
            Side::Broker,
            Outcome::ConnAck(ReasonCode::ServerUnavailable),
        ),
        (
            BrokerFault::Closed.into(),
            Side::Broker,
            Outcome::Disconnect(ReasonCode::UnspecifiedError),
        ),
        (
            BrokerFault::Write(std::io::ErrorKind::ConnectionReset.into()).into(),
            Side::Broker,
            Outcome::Disconnect(ReasonCode::UnspecifiedError),
        ),
        (
            InternalFault::Invariant("test").into(),
            Side::Moat,
            Outcome::Disconnect(ReasonCode::UnspecifiedError),
        ),
        (
            Refusal::ShuttingDown,
            Side::Moat,
            Outcome::Disconnect(ReasonCode::ServerShuttingDown),
        ),
        (
            Refusal::TakenOver,
            Side::Client,
            Outcome::Disconnect(ReasonCode::SessionTakenOver),
        ),
    ];
    for (refusal, side, outcome) in cases {
        assert_eq!(refusal.side(), side, "{refusal}");
        assert_eq!(refusal.outcome(), outcome, "{refusal}");
    }
}

#[test]
fn a_vanished_client_is_not_a_broker_error() {
    let gone: Refusal = PeerFault::Gone(std::io::ErrorKind::BrokenPipe.into()).into();
    assert_eq!(gone.side().as_str(), "client");
    assert!(
        gone.to_string().starts_with("client connection lost"),
        "{gone}"
    );
}

#[test]
fn outcomes_are_translated_once_for_3_x() {
    // CONNACK: 5.0 keeps the reason code, 3.1.1 gets the return code of the same meaning.
    let banned = Outcome::ConnAck(ReasonCode::Banned);
    assert_eq!(wire(banned, V5), [0x20, 0x03, 0x00, 0x8a, 0x00]);
    assert_eq!(wire(banned, V3), [0x20, 0x02, 0x00, 0x05]);
    let unavailable = Outcome::ConnAck(ReasonCode::ServerUnavailable);
    assert_eq!(wire(unavailable, V3), [0x20, 0x02, 0x00, 0x03]);
    // DISCONNECT: 3.x has none from the server; closing is the answer.
    let ka = Outcome::Disconnect(ReasonCode::KeepAliveTimeout);
    assert_eq!(wire(ka, V5), [0xe0, 0x02, 0x8d, 0x00]);
    assert_eq!(wire(ka, V3), Vec::<u8>::new());
    assert_eq!(wire(Outcome::Close, V5), Vec::<u8>::new());
}

#[test]
fn a_refused_connect_is_answered_in_its_own_version() {
    // A 3.1.1 CONNECT with an empty client id and clean session 0: 0x02 Identifier rejected.
    let e = ConnectError::ClientIdNotValid { version: V3 };
    let refusal: Refusal = PeerFault::Connect(e).into();
    assert_eq!(
        refusal.outcome(),
        Outcome::ConnAck(ReasonCode::ClientIdentifierNotValid)
    );
    assert_eq!(wire(refusal.outcome(), V3), [0x20, 0x02, 0x00, 0x02]);
}

#[test]
fn a_malformed_connect_closes_3_x_and_answers_5_0() {
    let malformed = |version| ConnectError::Malformed {
        version: Some(version),
        error: DecodeError::from(FrameError::MalformedLength),
    };
    let r: Refusal = PeerFault::Connect(malformed(V3)).into();
    assert_eq!(r.outcome(), Outcome::Close);
    let r: Refusal = PeerFault::Connect(malformed(V5)).into();
    assert_eq!(r.outcome(), Outcome::ConnAck(ReasonCode::MalformedPacket));
}

#[test]
fn per_packet_answers_including_0x8f_0x92_and_0x83() {
    let cases = [
        (Denied::Publish, 0x87, 0x00),
        (Denied::Subscribe, 0x87, 0x80),
        (Denied::Unservable, 0x83, 0x80),
        (Denied::InvalidFilter, 0x8f, 0x80),
        (Denied::UnknownPacketId, 0x92, 0x00),
    ];
    for (denied, v5, v3) in cases {
        assert_eq!(denied.code(V5), v5, "{denied:?}");
        assert_eq!(denied.code(V3), v3, "{denied:?}");
    }
}

#[test]
fn policy_refusals_name_their_rule_and_others_the_protocol() {
    let r: Refusal = PolicyRefusal::Limit(Exceeded::Subscriptions, RuleRef::builtin("x")).into();
    assert_eq!(r.rule(), RuleRef::builtin("x").to_string());
    assert_eq!(r.audit_subject(), ("limit", ""));
    let r: Refusal = PeerFault::KeepAlive.into();
    assert_eq!(r.rule(), "protocol");
    assert!(Refusal::from(PolicyRefusal::BadCredentials(rule())).is_failed_login());
    assert!(!Refusal::from(PeerFault::KeepAlive).is_failed_login());
}

#[test]
fn password_busy_is_server_unavailable_and_no_failed_login() {
    use crate::authn::Busy;
    for busy in [
        Busy::QueueFull,
        Busy::Displaced,
        Busy::Waited,
        Busy::Stopped,
    ] {
        let refusal = Refusal::PasswordBusy(busy);
        // 5.0: CONNACK 0x88; 3.1.1: 0x03.
        assert_eq!(
            refusal.outcome(),
            Outcome::ConnAck(ReasonCode::ServerUnavailable)
        );
        assert_eq!(wire(refusal.outcome(), V5), [0x20, 0x03, 0x00, 0x88, 0x00]);
        assert_eq!(wire(refusal.outcome(), V3), [0x20, 0x02, 0x00, 0x03]);
        assert!(!refusal.is_failed_login(), "{busy:?}");
        assert_eq!(refusal.side(), Side::Moat);
        assert_eq!(refusal.rule(), "builtin password-verification-capacity");
    }
    assert!(Refusal::from(PolicyRefusal::NotAuthorized(rule())).is_failed_login());
}
