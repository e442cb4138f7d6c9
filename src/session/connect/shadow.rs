//! The shadow set at CONNECT: authentication, the client id binding and the will, compared with what was enforced and
//! reported to the book (`ops/shadow.rs`). Only called when a shadow set is configured.
//!
//! Why it is separate from `connect.rs`: the CONNECT phase enforces; this only watches, and
//! keeping it apart shows that it cannot change the outcome (it takes the enforced decisions by
//! reference and returns nothing).

use crate::ops::shadow::Seen;
use crate::policy::shadow::{compare, ShadowAction, ShadowAuthn};
use crate::policy::{AclDecision, AuthnDecision, Decision, Policy, PublishFacts, Subject};
use crate::session::env::Env;
use crate::transport::Peer;

/// Compares the shadow's authentication (begun next to the enforced one) with `enforced`.
pub(super) fn authentication(
    env: &Env,
    peer: &Peer,
    username: Option<&str>,
    client_id: &str,
    shadow: ShadowAuthn,
    enforced: &AuthnDecision,
) {
    let book = &env.stats().shadow;
    let Some(decided) = shadow.finish(enforced) else {
        book.not_compared();
        return;
    };
    let (enforced, shadow) = (enforced.decision(), decided.decision());
    if let Some(diff) = compare(ShadowAction::Authenticate, &enforced, &shadow) {
        let identity = match decided {
            AuthnDecision::Allow { ref identity, .. } => Some(identity.name.as_str()),
            AuthnDecision::Deny { .. } => username,
        };
        let seen = Seen {
            peer: peer.addr,
            identity,
            client_id: Some(client_id),
            subject: username.unwrap_or("(no user name)"),
        };
        book.record(&diff, seen);
    }
}

/// Compares the shadow's `client_id:` binding of `identity` to `client_id` with the enforced one.
pub(super) fn client_id(
    env: &Env,
    peer: &Peer,
    shadow: &Policy,
    identity: &str,
    client_id: &str,
    enforced: &Decision,
) {
    let d = shadow.check_client_id(identity, client_id);
    if let Some(diff) = compare(ShadowAction::ClientId, enforced, &d) {
        let seen = Seen {
            peer: peer.addr,
            identity: Some(identity),
            client_id: Some(client_id),
            subject: client_id,
        };
        env.stats().shadow.record(&diff, seen);
    }
}

/// Compares the shadow's judgement of the will with the enforced one.
pub(super) fn will(
    env: &Env,
    peer: &Peer,
    shadow: &Policy,
    subject: &Subject,
    facts: &PublishFacts<'_>,
    enforced: &AclDecision,
) {
    let d = shadow.authorize_publish(subject, facts);
    if let Some(diff) = compare(ShadowAction::Publish, &enforced.decision, &d.decision) {
        let seen = Seen {
            peer: peer.addr,
            identity: Some(&subject.name),
            client_id: Some(&subject.client_id),
            subject: facts.topic,
        };
        env.stats().shadow.record(&diff, seen);
    }
}
