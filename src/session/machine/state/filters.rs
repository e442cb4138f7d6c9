//! Filters moat answers for itself: invalid ones in MQTT 5 SUBSCRIBEs (SUBACK 0x8F), and
//! those the embedded broker cannot serve (SUBACK 0x83 / 0x80); the rest as usual.
//!
//! What it owns: turning a SUBSCRIBE whose only fault is the wildcard syntax of some filters
//! (`a/#/b`, `$share//a`, an empty filter) into the answer MQTT 5 has for it — SUBACK 0x8F
//! "Topic Filter invalid" for those filters, in request order — while the valid filters go
//! through the same policy path as any SUBSCRIBE (catalogue §A.5, §A.11). An invalid filter never
//! reaches the broker (rumqttd never validates filters itself, §G.85).
//! Why it is separate: it wraps `client_subscribe` without changing it, merging its own codes
//! into whatever that decided (forward all, forward some, refuse all).
//! What it must not do: apply to MQTT 3.x, where an invalid filter is a protocol violation that
//! closes the connection [v3:MQTT-4.7.1-1]; or accept anything else the strict decoder refuses.
//!
//! Filters the broker cannot serve: rumqttd 0.20 (`router/routing.rs`, `validate_subscription`)
//! refuses every filter that starts with `$` but not with `$share`, by dropping the whole
//! connection (DISCONNECT 0x80 to moat) instead of answering in the SUBACK. A policy may allow
//! `$SYS/#`; with the embedded broker such a filter is refused by moat in its SUBACK slot, the
//! other filters go on (`state.rs`, `client_subscribe`). An external broker answers for itself.

use std::sync::Arc;

use bytes::Bytes;

use super::{Audit, State, Step};
use crate::mqtt::{self, DecodeError, Packet};
use crate::policy::{Action, Policy};
use crate::session::error::{Denied, InternalFault, PeerFault, Refusal};

/// The rule named in the audit line for an invalid filter.
const INVALID_FILTER_RULE: &str = "protocol: topic filter invalid [MQTT-4.7.1-1]";

/// The rule named in the audit line for a filter the embedded broker cannot serve.
const UNSERVABLE_RULE: &str = "broker: the embedded broker serves no $-filter but $share";

// === impl State (invalid filters) ===

impl State {
    /// Whether the broker can serve `filter` (a well-formed filter the policy allowed).
    pub(super) fn broker_serves(&self, filter: &str) -> bool {
        !(self.flows.embedded_broker() && filter.starts_with('$') && !filter.starts_with("$share"))
    }

    /// Handles a frame the strict decoder refused with `error`: an MQTT 5 SUBSCRIBE whose only
    /// fault is invalid filters gets SUBACK 0x8F for them; anything else stays `error`.
    pub(super) fn subscribe_with_invalid_filters(
        &mut self,
        frame: Bytes,
        error: DecodeError,
        policy: &Arc<Policy>,
    ) -> Result<Step, Refusal> {
        if !self.version.is_v5() || !matches!(error, DecodeError::InvalidTopicFilter { .. }) {
            return Err(PeerFault::Packet(error).into());
        }
        let Some(request) =
            mqtt::decode_subscribe_request(frame, self.version).map_err(PeerFault::Packet)?
        else {
            return Err(PeerFault::Packet(error).into());
        };
        let pkid = request.pkid;
        let invalid_code = Denied::InvalidFilter.code(self.version);
        let mut invalid = Vec::with_capacity(request.entries.len());
        let mut audits = Vec::new();
        let mut kept = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            match entry {
                Ok(filter) => {
                    invalid.push(false);
                    kept.push(filter);
                }
                Err((filter, _why)) => {
                    invalid.push(true);
                    audits.push(invalid_audit(filter.as_str()));
                }
            }
        }
        if kept.is_empty() {
            let ack = Packet::SubAck(mqtt::SubAck {
                pkid,
                properties: Default::default(),
                codes: vec![invalid_code; invalid.len()],
            });
            return Ok(Step::Refuse {
                reply: Some(self.encode(&ack)?),
                forward: None,
                audits,
            });
        }
        let valid = mqtt::Subscribe {
            pkid,
            properties: request.properties,
            filters: kept,
        };
        let reduced = self.encode(&Packet::Subscribe(valid.clone()))?;
        // Whatever the policy decides for the valid filters, the invalid ones get 0x8F in place.
        let merge = |codes: Vec<Option<u8>>| -> Vec<Option<u8>> {
            let mut codes = codes.into_iter();
            invalid
                .iter()
                .map(|&bad| {
                    if bad {
                        Some(invalid_code)
                    } else {
                        codes.next().flatten()
                    }
                })
                .collect()
        };
        match self.client_subscribe(reduced, valid, policy)? {
            // All valid filters go to the broker: its SUBACK is merged with the 0x8F codes.
            Step::Forward(forward) => {
                self.pending_subacks.insert(pkid, merge(Vec::new()));
                Ok(Step::Refuse {
                    reply: None,
                    forward: Some(forward),
                    audits,
                })
            }
            // Some valid filters were refused by policy: widen its plan with the 0x8F codes.
            Step::Refuse {
                reply: None,
                forward: Some(forward),
                audits: mut policy_audits,
            } => {
                let plan = self.pending_subacks.remove(&pkid).unwrap_or_default();
                self.pending_subacks.insert(pkid, merge(plan));
                policy_audits.append(&mut audits);
                Ok(Step::Refuse {
                    reply: None,
                    forward: Some(forward),
                    audits: policy_audits,
                })
            }
            // Policy refused every valid filter and answered locally: add the 0x8F codes.
            Step::Refuse {
                reply: Some(reply),
                forward: None,
                audits: mut policy_audits,
            } => {
                let Ok(Packet::SubAck(mut ack)) = mqtt::decode(reply, self.version) else {
                    return Err(InternalFault::Invariant(
                        "policy answered SUBSCRIBE without SUBACK",
                    )
                    .into());
                };
                let plan = ack.codes.drain(..).map(Some).collect();
                ack.codes = merge(plan)
                    .into_iter()
                    .map(|c| c.unwrap_or(invalid_code))
                    .collect();
                policy_audits.append(&mut audits);
                Ok(Step::Refuse {
                    reply: Some(self.encode(&Packet::SubAck(ack))?),
                    forward: None,
                    audits: policy_audits,
                })
            }
            other => Ok(other),
        }
    }
}

fn invalid_audit(filter: &str) -> Audit {
    Audit {
        action: Action::Subscribe,
        topic: filter.to_owned(),
        reason: "topic filter invalid".to_owned(),
        rule: INVALID_FILTER_RULE.to_owned(),
    }
}

/// The audit line of a filter the embedded broker cannot serve.
pub(super) fn unservable_audit(filter: &str) -> Audit {
    Audit {
        action: Action::Subscribe,
        topic: filter.to_owned(),
        reason: "the embedded broker cannot serve this filter".to_owned(),
        rule: UNSERVABLE_RULE.to_owned(),
    }
}
