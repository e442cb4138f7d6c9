//! Policy test cases: expected decisions written next to the rules, run by `moat check`.
//!
//! What it owns: [`PolicyCase`] (a subject, an action on a topic, the expected verdict, where it
//! is written) and running them against the compiled policy. Why: operators change policies
//! under pressure; a folder that carries its own expectations fails `moat check` (and so a
//! deploy) before a change that opens or closes the wrong door goes live. Pure.

use super::{AclDecision, Action, PublishFacts, Subject};
use crate::config::SourceLocation;
use crate::policy::decision::Verdict;
use crate::policy::Policy;

/// One expected decision (`tests:` in a policy file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyCase {
    /// Where the case is written.
    pub at: SourceLocation,
    /// Who asks.
    pub subject: Subject,
    /// What for.
    pub action: Action,
    /// Topic name (publish, receive) or filter (subscribe).
    pub topic: String,
    /// Publish QoS.
    pub qos: u8,
    /// Publish RETAIN flag.
    pub retain: bool,
    /// The verdict the operator expects.
    pub expect: Verdict,
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseOutcome<'a> {
    /// The case.
    pub case: &'a PolicyCase,
    /// What the policy decided.
    pub got: AclDecision,
}

// === impl CaseOutcome ===

impl CaseOutcome<'_> {
    /// Whether the policy decided as expected.
    pub fn passed(&self) -> bool {
        self.got.decision.verdict == self.case.expect
    }
}

// === impl Policy (cases) ===

impl Policy {
    /// Decides one request as the session would (explain and test cases share this).
    pub fn explain(
        &self,
        subject: &Subject,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> AclDecision {
        match action {
            Action::Publish => self.authorize_publish(
                subject,
                &PublishFacts {
                    topic,
                    qos,
                    retain,
                    empty_payload: false,
                },
            ),
            Action::Subscribe => self.authorize_subscribe(subject, topic),
            Action::Receive => self.authorize_receive(subject, topic),
        }
    }

    /// The policy's own test cases, in file order.
    pub fn cases(&self) -> &[PolicyCase] {
        &self.cases
    }

    /// Runs every test case.
    pub fn run_cases(&self) -> Vec<CaseOutcome<'_>> {
        self.cases
            .iter()
            .map(|case| CaseOutcome {
                case,
                got: self.explain(
                    &case.subject,
                    case.action,
                    &case.topic,
                    case.qos,
                    case.retain,
                ),
            })
            .collect()
    }
}
