//! The shadow set's view of each topic decision: judged after the enforced one, on the same
//! request, through the session's own shadow decision cache, and noted when the outcome
//! differs. Never changes what happens.
//!
//! Why it is separate from `state.rs`: enforcement reads straight through there; the whole cost
//! of a shadow set (one `Option` branch when none is configured, a second cached ACL lookup and
//! a verdict comparison when one is) is visible here. The notes go out through
//! [`State::take_differences`] to the machine's events, and the edge counts and logs them
//! (`ops/shadow.rs`).

use std::sync::Arc;

use super::State;
use crate::policy::shadow::{compare, Difference, ShadowAction};
use crate::policy::{AclCache, AclDecision, Action, Policy, PublishFacts};

/// One difference seen by this session, with the topic or filter it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShadowNote {
    /// Both decisions.
    pub(crate) difference: Difference,
    /// The topic or filter.
    pub(crate) topic: String,
}

/// Most notes held between two drains by the machine (a SUBSCRIBE with many filters is the
/// most one packet makes); beyond, they are dropped rather than grow.
const MAX_NOTES: usize = 64;

// === impl State (shadow) ===

impl State {
    /// Judges `facts` against the shadow set too, after the enforced `decision`.
    pub(super) fn shadow_publish(
        &mut self,
        shadow: &Arc<Policy>,
        facts: &PublishFacts<'_>,
        decision: &AclDecision,
    ) {
        let subject = &self.subject;
        let d = self
            .shadow_acl
            .get_or_insert_with(Box::default)
            .publish(shadow, subject, facts);
        self.note(Action::Publish, facts.topic, decision, &d);
    }

    /// Judges a SUBSCRIBE filter against the shadow set too.
    pub(super) fn shadow_subscribe(
        &mut self,
        shadow: &Arc<Policy>,
        filter: &str,
        decision: &AclDecision,
    ) {
        let subject = &self.subject;
        let d = self
            .shadow_acl
            .get_or_insert_with(Box::default)
            .subscribe(shadow, subject, filter);
        self.note(Action::Subscribe, filter, decision, &d);
    }

    /// Judges a delivery against the shadow set too.
    pub(super) fn shadow_receive(
        &mut self,
        shadow: &Arc<Policy>,
        topic: &str,
        decision: &AclDecision,
    ) {
        let subject = &self.subject;
        let d = self
            .shadow_acl
            .get_or_insert_with(Box::<AclCache>::default)
            .receive(shadow, subject, topic);
        self.note(Action::Receive, topic, decision, &d);
    }

    /// The differences noted since the last call.
    pub(crate) fn take_differences(&mut self) -> Vec<ShadowNote> {
        std::mem::take(&mut self.shadow_notes)
    }

    fn note(&mut self, action: Action, topic: &str, enforced: &AclDecision, shadow: &AclDecision) {
        let action = ShadowAction::from(action);
        if let Some(difference) = compare(action, &enforced.decision, &shadow.decision) {
            if self.shadow_notes.len() < MAX_NOTES {
                self.shadow_notes.push(ShadowNote {
                    difference,
                    topic: topic.to_owned(),
                });
            }
        }
    }
}
