//! The CONNECT phase: read and judge the client's CONNECT, authenticate, open the upstream,
//! answer with the CONNACK and hand the session to the driver ([`establish`]).
//!
//! Nothing reaches the broker before this phase says yes: no upstream connection is opened for
//! a client that is not authenticated, and packets pipelined behind the CONNECT stay in the
//! reader's buffer until the CONNACK has gone out (catalogue §B.30).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::driver::{say_goodbye, Link};
use super::env::Env;
use super::error::{Outcome, PeerFault, PolicyRefusal, Refusal};
use super::machine::{Machine, Setup, Terms};
use super::reader::{FrameReader, ReadError};
use super::upstream::{self, Upstream};
use crate::mqtt::{self, Connect, Packet, PacketType, ProtocolVersion};
use crate::ops::audit::{self, Escaped};
use crate::policy::shadow::ShadowAuthn;
use crate::policy::{
    source_key, AuthnDecision, AuthnFailure, AuthnStep, ClientLimits, Credentials, Identity,
    PublishFacts, Subject,
};
use crate::stats::Stats;
use crate::transport::Peer;

/// How many topic aliases moat accepts from an MQTT 5 client.
pub(crate) const TOPIC_ALIAS_MAXIMUM: u16 = 64;

/// Most unacknowledged QoS 1/2 PUBLISHes moat accepts from an MQTT 5 client (lowered further
/// when the broker advertises less); one more is DISCONNECT 0x93.
pub(crate) const RECEIVE_MAXIMUM: u16 = 1024;

/// A client that passed the CONNECT phase.
pub(crate) struct Admitted {
    /// The CONNECT as the client sent it.
    pub(crate) connect: Connect,
    /// Who the client is.
    pub(crate) identity: Identity,
    /// What ACL rules are matched against for this session.
    pub(crate) subject: Subject,
    /// The broker connection, whose CONNACK is in `upstream.connack`.
    pub(crate) upstream: Upstream,
    /// Client id moat assigned (empty client id), to report in an MQTT 5 CONNACK.
    pub(crate) assigned_client_id: Option<String>,
    /// Keep alive the session enforces on the client, in seconds (0 = none).
    pub(crate) keep_alive: u16,
    /// The broker client id (the client's, namespaced by identity), held until the session
    /// ends.
    pub(crate) claim: super::registry::Claim,
    /// The per-session limits of this identity (the session machine enforces them).
    pub(crate) limits: ClientLimits,
}

/// A refusal in the CONNECT phase, with the version to answer in (if known).
pub(crate) struct Refused {
    /// Why.
    pub(crate) refusal: Refusal,
    /// The client's protocol version, when the CONNECT got far enough to tell.
    pub(crate) version: Option<ProtocolVersion>,
    /// The identity the client claimed or proved, for the audit line.
    pub(crate) identity: Option<String>,
}

/// The CONNECT phase and the CONNACK; `None` when the session ends here (the client was told
/// why, if its version has a way to say it).
pub(super) async fn establish<R, W>(
    reader: &mut FrameReader<R>,
    wr: &mut W,
    peer: &Peer,
    env: &Env,
) -> Option<Link>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let admitted = match admit(reader, peer, env).await {
        Ok(a) => a,
        Err(refused) => {
            Stats::bump(&env.stats().connects_refused);
            let (action, topic) = refused.refusal.audit_subject();
            if matches!(refused.refusal, Refusal::Policy(PolicyRefusal::Banned(_))) {
                Stats::bump(&env.stats().connects_banned);
            }
            audit::refused(
                peer,
                refused.identity.as_deref(),
                action,
                topic,
                &refused.refusal.to_string(),
                &refused.refusal.rule(),
            );
            let outcome = refused.refusal.outcome();
            env.stats()
                .connect_outcome(match (refused.version, outcome) {
                    (Some(_), Outcome::ConnAck(code)) => Some(code.code()),
                    _ => None,
                });
            if let Some(version) = refused.version {
                let _ = say_goodbye(wr, version, outcome).await;
            }
            return None;
        }
    };
    let version = admitted.connect.protocol;
    let connack = client_connack(&admitted, env);
    let accepted = connack.code == 0;
    env.stats().connect_outcome(Some(match version.is_v5() {
        true => connack.code,
        // Counted by the MQTT 5 code, as refusals are.
        false => mqtt::ConnectReturnCode::try_from(connack.code)
            .map_or(connack.code, |c| c.to_v5().code()),
    }));
    let mut out = BytesMut::new();
    if Packet::ConnAck(connack).encode(version, &mut out).is_err()
        || wr.write_all(&out).await.is_err()
        || !accepted
    {
        return None;
    }
    tracing::info!(
        identity = %Escaped(&admitted.identity.name),
        client_id = %Escaped(admitted.connect.client_id.as_str()),
        broker_client_id = %Escaped(admitted.claim.broker_id()),
        version = version.name(),
        "session up"
    );
    // The session's clocks start now, with the CONNACK on its way.
    let now = tokio::time::Instant::now().into_std();
    let machine = Machine::new(now, setup(&admitted, env), env.policy_handle().clone());
    Some(Link {
        machine,
        upstream_rd: admitted.upstream.reader,
        upstream_wr: admitted.upstream.writer,
        claim: admitted.claim,
    })
}

/// Runs the CONNECT phase up to the broker's CONNACK.
async fn admit<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    peer: &Peer,
    env: &Env,
) -> Result<Admitted, Refused> {
    let no_version = |refusal| Refused {
        refusal,
        version: None,
        identity: None,
    };
    let deadline = env.settings().connect_timeout;
    let frame = read_first(reader, deadline).await.map_err(no_version)?;
    let mut connect = Connect::decode(frame).map_err(|e| Refused {
        version: e.version(),
        refusal: Refusal::Peer(PeerFault::Connect(e)),
        identity: None,
    })?;
    let version = connect.protocol;
    let refuse = |refusal, identity: Option<String>| Refused {
        refusal,
        version: Some(version),
        identity,
    };
    // Enhanced authentication (AUTH exchanges) is not offered: CONNACK 0x8C, and rumqttd, which
    // has no AUTH packet, never sees the method [MQTT-4.12.0-1].
    if connect.properties.authentication_method.is_some() {
        return Err(refuse(Refusal::Peer(PeerFault::BadAuthMethod), None));
    }
    let assigned_client_id = check_client_id(&connect).map_err(|r| refuse(r, None))?;
    if let Some(id) = &assigned_client_id {
        connect.client_id = id.as_str().into();
    }

    let claimed = connect.username.as_ref().map(|u| u.as_str().to_owned());
    let client_id = connect.client_id.as_str().to_owned();
    // Bans first: a banned client id, user name or source costs no password check.
    check_bans(env, peer, claimed.as_deref(), &client_id)
        .map_err(|r| refuse(r, claimed.clone()))?;
    let identity = match authenticate(&connect, peer, env).await {
        Ok(identity) => identity,
        Err(r) => {
            if r.is_failed_login() {
                let ip = peer.addr.ip();
                env.auth_failed(ip, claimed.as_deref(), &client_id);
            }
            return Err(refuse(r, claimed));
        }
    };
    let who = || Some(identity.name.clone());
    check_bans(env, peer, Some(&identity.name), &client_id).map_err(|r| refuse(r, who()))?;
    let limits = env.policy().client_limits(&identity);
    if assigned_client_id.is_none() && client_id.len() > limits.max_client_id {
        let r = Refusal::Peer(PeerFault::ClientId(
            "client id longer than limits max_client_id",
        ));
        return Err(refuse(r, who()));
    }

    let subject = Subject {
        name: identity.name.clone(),
        source: identity.source,
        client_id: connect.client_id.as_str().to_owned(),
        cert_cn: peer.cert_cn.clone(),
        listener: peer.listener.clone(),
        addr: peer.addr.ip(),
    };
    // The will is a publish the broker makes later on the client's behalf: judged now, on its
    // topic, QoS and retain flag, before the broker hears of the client (catalogue §A.18).
    if let Some(will) = &connect.will {
        let facts = PublishFacts {
            topic: will.topic.as_str(),
            qos: will.qos as u8,
            retain: will.retain,
            empty_payload: will.payload.is_empty(),
        };
        let policy = env.policy();
        let decision = policy.authorize_publish(&subject, &facts);
        if let Some(shadow_set) = policy.shadow() {
            shadow::will(env, peer, shadow_set, &subject, &facts, &decision);
        }
        if !decision.is_allowed() {
            let refusal = Refusal::Policy(PolicyRefusal::WillDenied {
                topic: will.topic.as_str().to_owned(),
                reason: decision.reason,
                rule: decision.decision.rule,
            });
            return Err(refuse(refusal, who()));
        }
    }

    let claim = bind_client_id(&connect, &identity, assigned_client_id.is_some(), peer, env)
        .map_err(|r| refuse(r, who()))?;

    let settings = env.settings();
    let max_keepalive = limits
        .keepalive_max
        .map_or(settings.max_keepalive, |m| m.min(settings.max_keepalive));
    let keep_alive = effective_keep_alive(connect.keep_alive, max_keepalive, limits.keepalive_min);
    let upstream_connect = upstream_connect(&connect, &identity, claim.broker_id(), env);
    Stats::bump(&env.stats().upstream_connects);
    let started = std::time::Instant::now();
    let upstream = upstream::open(
        env.broker(),
        &upstream_connect,
        settings.upstream_connect_timeout,
        settings.max_packet_size.saturating_mul(2),
        env.ack_pacer(),
    )
    .await
    .map_err(|r| refuse(r, who()))?;
    env.stats().upstream_opened(started.elapsed());
    Ok(Admitted {
        connect,
        identity,
        subject,
        upstream,
        assigned_client_id,
        keep_alive,
        claim,
        limits,
    })
}

/// Checks that `identity` may use the CONNECT's client id (the policy's `client_id:` rule, for
/// ids the client chose; an id moat assigned is random and nobody else's) and names the
/// session at the broker by the pair, so no other identity can reach it (`broker_id.rs`).
/// Returns the claim that holds the broker id for the session.
fn bind_client_id(
    connect: &Connect,
    identity: &Identity,
    assigned: bool,
    peer: &Peer,
    env: &Env,
) -> Result<super::registry::Claim, Refusal> {
    let id = connect.client_id.as_str();
    if !assigned {
        let policy = env.policy();
        let decision = policy.check_client_id(&identity.name, id);
        if let Some(shadow_set) = policy.shadow() {
            shadow::client_id(env, peer, shadow_set, &identity.name, id, &decision);
        }
        if !decision.is_allowed() {
            return Err(Refusal::Policy(PolicyRefusal::ClientIdNotBound(
                decision.rule,
            )));
        }
    }
    let broker_id = super::broker_id::encode(&identity.name, id).map_err(|_| {
        Refusal::Peer(PeerFault::ClientId(
            "identity and client id together longer than an MQTT string",
        ))
    })?;
    let facts = super::registry::Facts {
        identity: identity.name.clone(),
        client_id: id.to_owned(),
        addr: peer.addr,
        listener: peer.listener.clone(),
        kind: peer.kind,
        version: connect.protocol,
    };
    Ok(env.claim(broker_id, facts))
}

/// Refuses a banned client id, user name or source (MQTT 5 CONNACK 0x8A Banned).
fn check_bans(
    env: &Env,
    peer: &Peer,
    username: Option<&str>,
    client_id: &str,
) -> Result<(), Refusal> {
    env.check_bans(peer.addr.ip(), username, client_id)
        .map_err(|rule| PolicyRefusal::Banned(rule).into())
}

async fn read_first<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    deadline: Duration,
) -> Result<Bytes, Refusal> {
    // One deadline for the whole CONNECT, not per read: a slow drip cannot extend it.
    // [MQTT-3.1.0-1] The first packet from the client must be CONNECT.
    match tokio::time::timeout(deadline, reader.next_expecting(PacketType::Connect)).await {
        Err(_) => Err(Refusal::Peer(PeerFault::ConnectTimeout)),
        Ok(Err(ReadError::Frame(e))) => Err(Refusal::Peer(PeerFault::ConnectFrame(e))),
        Ok(Err(_)) | Ok(Ok(None)) => Err(Refusal::Peer(PeerFault::FirstNotConnect)),
        Ok(Ok(Some(frame))) => Ok(frame),
    }
}

/// Checks the client identifier; returns the id moat assigned when the client sent none.
fn check_client_id(connect: &Connect) -> Result<Option<String>, Refusal> {
    let id = connect.client_id.as_str();
    if id.is_empty() {
        return match connect.protocol {
            // MQTT 3.1 requires 1 to 23 characters.
            ProtocolVersion::V3_1 => Err(Refusal::Peer(PeerFault::ClientId(
                "empty client id in MQTT 3.1",
            ))),
            // [MQTT-3.1.3-8] An empty id with CleanSession=0 is refused with 0x02.
            ProtocolVersion::V3_1_1 if !connect.clean_start => Err(Refusal::Peer(
                PeerFault::ClientId("empty client id without clean session [MQTT-3.1.3-8]"),
            )),
            // [MQTT-3.1.3-6] The server assigns a unique id (reported in CONNACK for 5.0).
            _ => Ok(Some(assign_client_id())),
        };
    }
    // rumqttd silently drops clients whose id contains these, leaving the CONNECT unanswered;
    // they are also the characters that turn `{client_id}` into a wildcard.
    if id.contains(['+', '#', '/', '$']) {
        return Err(Refusal::Peer(PeerFault::ClientId(
            "client id contains + # / or $",
        )));
    }
    if connect.protocol == ProtocolVersion::V3_1 && id.len() > 23 {
        return Err(Refusal::Peer(PeerFault::ClientId(
            "MQTT 3.1 client id longer than 23 bytes",
        )));
    }
    Ok(None)
}

fn assign_client_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    // SystemRandom only fails when the OS has no randomness; a counter still keeps ids unique.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("moat-{n:024x}");
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("moat-{hex}")
}

async fn authenticate(connect: &Connect, peer: &Peer, env: &Env) -> Result<Identity, Refusal> {
    let policy = env.policy_snapshot();
    let opts = env.settings().authn;
    let username = connect.username.as_ref().map(|u| u.as_str());
    let creds = Credentials {
        username,
        password: connect.password.as_deref(),
        cert_cn: peer.cert_cn.as_deref(),
    };
    let step = policy.begin_authentication(&creds, &opts);
    let shadow_step = policy
        .shadow()
        .map(|s| ShadowAuthn::begin(s, &creds, &opts, &step));
    let decision = match step {
        AuthnStep::Decided(decision) => decision,
        // argon2 is slow and memory-hard on purpose: the bounded pool verifies (src/authn/).
        AuthnStep::Verify(check) => {
            let source = source_key(peer.addr.ip(), policy.connection_limits().ipv6_prefix);
            let password = connect.password.clone().unwrap_or_default();
            let checked = env
                .passwords()
                .check(&policy, source, username, password, check)
                .await
                .map_err(|busy| {
                    Stats::bump(&env.stats().password_busy);
                    Refusal::PasswordBusy(busy)
                })?;
            if checked.cached {
                Stats::bump(&env.stats().password_cache_hits);
            }
            checked.decision
        }
    };
    if let Some(shadow_step) = shadow_step {
        let client_id = connect.client_id.as_str();
        shadow::authentication(env, peer, username, client_id, shadow_step, &decision);
    }
    match decision {
        AuthnDecision::Allow { identity, rule } => {
            tracing::debug!(identity = %Escaped(&identity.name), %rule, "authenticated");
            Ok(identity)
        }
        AuthnDecision::Deny { reason, rule } => Err(match reason {
            AuthnFailure::BadCredentials => Refusal::Policy(PolicyRefusal::BadCredentials(rule)),
            AuthnFailure::NotAuthorized => Refusal::Policy(PolicyRefusal::NotAuthorized(rule)),
        }),
    }
}

/// The keep alive moat enforces: the client's, capped by the operator's maximum; a client that
/// asks for none (0) gets the maximum, so no connection can idle forever; one that asks for less
/// than the minimum gets the minimum (MQTT 5 clients are told through Server Keep Alive).
fn effective_keep_alive(requested: u16, max: u16, min: u16) -> u16 {
    if requested == 0 || requested > max {
        max
    } else {
        requested.max(min).min(max)
    }
}

/// The CONNECT moat sends upstream: the client's, with the client id namespaced by identity,
/// the identity as user name, moat's broker password instead of the client's, moat's own keep
/// alive, 3.1 spoken as 3.1.1, and no topic aliases from the broker (moat resolves aliases
/// itself).
fn upstream_connect(connect: &Connect, identity: &Identity, broker_id: &str, env: &Env) -> Connect {
    let mut up = connect.clone();
    up.client_id = broker_id.into();
    if up.protocol == ProtocolVersion::V3_1 {
        up.protocol = ProtocolVersion::V3_1_1;
    }
    let credentials = env.broker().credentials.load();
    up.username = Some(credentials.username(&identity.name).into());
    up.password = credentials
        .password()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()));
    up.keep_alive = upstream::keep_alive(env.broker());
    if up.protocol == ProtocolVersion::V5 {
        up.properties.topic_alias_maximum = None;
        up.properties.maximum_packet_size =
            u32::try_from(env.settings().max_packet_size.saturating_mul(2)).ok();
    }
    up
}

/// The Receive Maximum moat advertises to an MQTT 5 client: its own, or the broker's if lower
/// (moat forwards the client's PUBLISHes one for one, so the broker's limit holds too).
pub(crate) fn receive_maximum(broker: &mqtt::ConnAck) -> u16 {
    broker
        .properties
        .receive_maximum
        .map_or(RECEIVE_MAXIMUM, |b| b.min(RECEIVE_MAXIMUM))
}

/// How the machine of a session that passed the CONNECT phase starts.
fn setup(admitted: &Admitted, env: &Env) -> Setup {
    let version = admitted.connect.protocol;
    Setup {
        version,
        subject: admitted.subject.clone(),
        topic_alias_maximum: match version {
            ProtocolVersion::V5 => TOPIC_ALIAS_MAXIMUM,
            _ => 0,
        },
        terms: session_terms(admitted, env),
        limits: admitted.limits.clone(),
        keep_alive: admitted.keep_alive,
        ping_every: upstream::ping_every(env.broker()),
    }
}

/// The limits the session enforces after CONNACK (see `state::Terms`).
fn session_terms(admitted: &Admitted, env: &Env) -> Terms {
    let v5 = admitted.connect.protocol == ProtocolVersion::V5;
    let props = &admitted.connect.properties;
    Terms {
        receive_maximum: v5.then(|| receive_maximum(&admitted.upstream.connack)),
        client_max_packet_size: props
            .maximum_packet_size
            .filter(|_| v5)
            .and_then(|m| usize::try_from(m).ok()),
        session_expiry_zero: v5 && props.session_expiry.unwrap_or(0) == 0,
        resumed: admitted.upstream.connack.session_present,
        embedded_broker: env.settings().embedded_broker,
    }
}

/// Builds the CONNACK the client gets from the broker's.
fn client_connack(admitted: &Admitted, env: &Env) -> mqtt::ConnAck {
    let mut ack = admitted.upstream.connack.clone();
    match admitted.connect.protocol {
        // MQTT 3.1 has no Session Present flag.
        ProtocolVersion::V3_1 => ack.session_present = false,
        ProtocolVersion::V3_1_1 => {}
        ProtocolVersion::V5 => {
            let props = &mut ack.properties;
            props.topic_alias_maximum = Some(TOPIC_ALIAS_MAXIMUM);
            props.receive_maximum = Some(receive_maximum(&admitted.upstream.connack));
            props.maximum_packet_size = u32::try_from(env.settings().max_packet_size).ok();
            if admitted.keep_alive != admitted.connect.keep_alive {
                props.server_keep_alive = Some(admitted.keep_alive);
            }
            // Receive Maximum: the client's QoS 1/2 inflight limit, and never above the broker's.
            let broker_max = props.receive_maximum.unwrap_or(u16::MAX);
            props.receive_maximum = Some(admitted.limits.max_inflight.min(broker_max));
            // Only an id moat assigned; never one the broker names (the namespaced id).
            props.assigned_client_identifier = admitted
                .assigned_client_id
                .as_ref()
                .map(|id| id.as_str().into());
        }
    }
    ack
}

mod shadow;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests;
