//! Runtime control, without HTTP: what `moat ctl` and the admin routes ask of a running moat.
//!
//! ```text
//!  moat ctl ──HTTP──► admin routes (admin/control.rs) ──► Control ──► session::Registry (list, kick)
//!                                                             ├──► admission::Gate (bans)
//!                                                             └──► requests ──► cli/run.rs serve loop
//!                                                                              (reload, drain)
//! ```
//!
//! What it owns: [`Control`], the handle the admin listener holds: list and kick sessions
//! (`sessions.rs`), list, set and lift bans (`bans.rs`), and ask the serve loop for a reload or
//! a drain (the loop owns the configuration and the server, so SIGHUP and `moat ctl reload`, or
//! SIGTERM and `moat ctl drain`, run the same code). Every call that changes state writes one
//! audit line naming the caller (the admin client's address), the action and its result. Why
//! it is separate: the HTTP layer only parses and prints; everything here is callable from
//! tests without a socket. What it must not do: hold a lock across an await, or keep a session
//! alive (it holds registry entries only while building an answer).

mod bans;
pub mod drain;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::admission::Gate;
use crate::policy::Policy;
use crate::session::{Registry, StopRequest};

pub use bans::{BanRequest, BanRequestError, BanView, UnbanRequest, Unbanned};
pub use sessions::{QueryError, SessionPage, SessionQuery, SessionView, DEFAULT_PAGE, MAX_PAGE};

/// Longest a `moat ctl reload` waits for the serve loop's answer.
const RELOAD_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What the serve loop is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Reload moat.yaml, the policy and the TLS material; answer with what happened.
    Reload {
        /// The admin client's address, for the log.
        by: String,
        /// Where the report goes.
        answer: oneshot::Sender<ReloadReport>,
    },
    /// Drain, then exit.
    Drain {
        /// The admin client's address, for the log.
        by: String,
    },
}

/// What a reload did (`moat ctl reload`, and the SIGHUP log lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReloadReport {
    /// moat.yaml's settings now in force that changed.
    pub applied: Vec<String>,
    /// moat.yaml's settings that changed but need a restart; the running value stays.
    pub restart_needed: Vec<String>,
    /// Why moat.yaml was refused (file:line:column and the error); the running one stays.
    pub config_error: Option<String>,
    /// The policy reload: its summary, or why it was refused.
    pub policy: String,
    /// The TLS reload: its summary, or why it was refused.
    pub tls: String,
    /// moat.yaml's settings that changed and could apply live but were not used, each with
    /// why (`log.level` while `RUST_LOG` is set).
    #[serde(default)]
    pub ignored: Vec<String>,
    /// The admin token file read again: replaced, unchanged, or why it was refused (the
    /// running token stays); `None` without `admin.token_file`.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// The external broker's password and TLS files read again: reloaded, or why they were
    /// refused (the running ones stay); `None` with the embedded broker.
    #[serde(default)]
    pub upstream_files: Option<String>,
    /// True when nothing was refused.
    pub ok: bool,
}

/// What `moat ctl drain` was told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DrainAnswer {
    /// True when this call started the drain (false: one was already running).
    pub started: bool,
    /// Over how long clients are moved away.
    pub period_secs: u64,
    /// Live sessions when it started.
    pub sessions: usize,
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No live session has that id.
    #[error("no live session {0}")]
    NoSession(u64),
    /// A bad session query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A bad ban or unban request.
    #[error(transparent)]
    Ban(#[from] BanRequestError),
    /// The serve loop did not answer (shutting down).
    #[error("moat is shutting down")]
    Gone,
}

/// See the module docs.
pub struct Control {
    /// The live sessions.
    registry: Arc<Registry>,
    /// Bans and admission.
    gate: Arc<Gate>,
    /// The policy in force (its bans are listed).
    policy: Arc<ArcSwap<Policy>>,
    /// To the serve loop (reload, drain); a few slots: requests are rare and answered at once.
    requests: mpsc::Sender<Request>,
    /// The drain period in force (moat.yaml `drain.period`, reloadable).
    drain_period: ArcSwap<Duration>,
}

// === impl Control ===

impl Control {
    /// A handle on the server's parts; the receiver goes to the serve loop.
    pub(crate) fn new(
        registry: Arc<Registry>,
        gate: Arc<Gate>,
        policy: Arc<ArcSwap<Policy>>,
        drain_period: Duration,
    ) -> (Control, mpsc::Receiver<Request>) {
        let (requests, rx) = mpsc::channel(4);
        let control = Control {
            registry,
            gate,
            policy,
            requests,
            drain_period: ArcSwap::from_pointee(drain_period),
        };
        (control, rx)
    }

    /// One page of live sessions.
    pub fn sessions(&self, query: SessionQuery) -> Result<SessionPage, ControlError> {
        let filter = sessions::Filter::new(query)?;
        let (page, more) = self
            .registry
            .page(filter.after(), filter.limit, |s| filter.matches(s));
        let now = SystemTime::now();
        let next = match more {
            true => page.last().map(|s| s.id),
            false => None,
        };
        Ok(SessionPage {
            sessions: page.iter().map(|s| sessions::view(s, now)).collect(),
            live: self.registry.len(),
            next,
        })
    }

    /// Ends session `id` (MQTT 5: DISCONNECT 0x98 Administrative action; 3.x: close).
    pub fn kick(&self, id: u64, by: &str) -> Result<SessionView, ControlError> {
        let Some(session) = self.registry.get(id) else {
            audit(by, "kick", &format!("session {id}"), "no such session");
            return Err(ControlError::NoSession(id));
        };
        let view = sessions::view(&session, SystemTime::now());
        drop(session);
        let subject = format!(
            "session {id} identity {:?} client id {:?} from {}",
            view.identity, view.client_id, view.source
        );
        match self.registry.stop(&[id], StopRequest::Kick) {
            0 => {
                audit(by, "kick", &subject, "already gone");
                Err(ControlError::NoSession(id))
            }
            _ => {
                audit(by, "kick", &subject, "ok");
                Ok(view)
            }
        }
    }

    /// Every ban in force.
    pub fn bans(&self) -> Vec<BanView> {
        bans::list(&self.gate, &self.policy.load())
    }

    /// Sets an operator ban; live sessions it covers are ended.
    pub fn ban(&self, req: &BanRequest, by: &str) -> Result<BanView, ControlError> {
        let parsed = req.parse();
        let (target, ban_for) = match parsed {
            Ok(p) => p,
            Err(e) => {
                audit(by, "ban", &describe(req), &format!("refused: {e}"));
                return Err(e.into());
            }
        };
        let ban = match self.gate.ban(target, ban_for, &req.reason, by) {
            Ok(b) => b,
            Err(e) => {
                audit(by, "ban", &describe(req), &format!("refused: {e}"));
                return Err(BanRequestError::from(e).into());
            }
        };
        audit(by, "ban", &ban.rule.to_string(), "ok");
        // Live sessions of the banned identity or source look at the bans again.
        self.registry.recheck();
        Ok(bans::view(&ban))
    }

    /// Lifts the operator and automatic bans `req` names; policy bans are reported, not lifted.
    pub fn unban(&self, req: &UnbanRequest, by: &str) -> Result<Unbanned, ControlError> {
        let subject = describe_unban(req);
        let pick = match bans::Unban::new(req) {
            Ok(p) => p,
            Err(e) => {
                audit(by, "unban", &subject, &format!("refused: {e}"));
                return Err(e.into());
            }
        };
        let lifted = self.gate.lift(|b| pick.manual(b), |k| pick.auto(k));
        let policy = pick.policy(&self.policy.load());
        let outcome = format!("lifted {}; policy bans kept {}", lifted.len(), policy.len());
        audit(by, "unban", &subject, &outcome);
        Ok(Unbanned { lifted, policy })
    }

    /// Asks the serve loop to reload moat.yaml, the policy and the TLS material, and waits
    /// for its report.
    pub async fn reload(&self, by: &str) -> Result<ReloadReport, ControlError> {
        let (answer, report) = oneshot::channel();
        let request = Request::Reload {
            by: by.to_owned(),
            answer,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| ControlError::Gone)?;
        let report = tokio::time::timeout(RELOAD_ANSWER_WAIT, report)
            .await
            .map_err(|_| ControlError::Gone)?
            .map_err(|_| ControlError::Gone)?;
        let outcome = match report.ok {
            true => "ok",
            false => "refused in part (see the answer)",
        };
        audit(by, "reload", "moat.yaml, policies, TLS files", outcome);
        Ok(report)
    }

    /// Asks the serve loop to drain (listeners stop, clients are moved away over the drain
    /// period) and then exit.
    pub fn drain(&self, by: &str) -> Result<DrainAnswer, ControlError> {
        let answer = DrainAnswer {
            started: true,
            period_secs: self.drain_period.load().as_secs(),
            sessions: self.registry.len(),
        };
        let request = Request::Drain { by: by.to_owned() };
        let started = match self.requests.try_send(request) {
            Ok(()) => true,
            // A full queue means a request is already pending: a second drain adds nothing.
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                audit(by, "drain", "moat", "refused: shutting down");
                return Err(ControlError::Gone);
            }
        };
        audit(
            by,
            "drain",
            "moat",
            if started { "started" } else { "already asked" },
        );
        Ok(DrainAnswer { started, ..answer })
    }

    /// The drain period in force (moat.yaml `drain.period`).
    pub fn drain_period(&self) -> Duration {
        **self.drain_period.load()
    }

    /// Sets the drain period (a moat.yaml reload).
    pub fn set_drain_period(&self, period: Duration) {
        self.drain_period.store(Arc::new(period));
    }

    /// Every live session looks at the bans again (after a policy reload).
    pub fn recheck_sessions(&self) {
        self.registry.recheck();
    }
}

/// An audit line for a state-changing call.
fn audit(by: &str, action: &str, subject: &str, outcome: &str) {
    crate::ops::audit::admin_action(by, action, subject, outcome);
}

/// What a refused ban asked for, as the audit line's subject: the fields given, in words
/// (`source 203.0.113.7 for 2h`), never Rust's `Some(..)` / `None`.
fn describe(req: &BanRequest) -> String {
    let mut out = targets(
        None,
        req.source.as_deref(),
        req.identity.as_deref(),
        req.client_id.as_deref(),
    );
    out.push_str(&format!(" for {}", req.duration));
    out
}

/// What an unban asked for (`source 10.1.0.0/16`, `id 3`), as the audit line's subject.
fn describe_unban(req: &UnbanRequest) -> String {
    targets(
        req.id,
        req.source.as_deref(),
        req.identity.as_deref(),
        req.client_id.as_deref(),
    )
}

/// The given fields of a ban or unban request; a client id or identity is quoted, as in the
/// ban's own rule (`client id "dev-1"`), so an empty or spaced one stays visible.
fn targets(
    id: Option<u64>,
    source: Option<&str>,
    identity: Option<&str>,
    client_id: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(id) = id {
        parts.push(format!("id {id}"));
    }
    if let Some(s) = source {
        parts.push(format!("source {s}"));
    }
    if let Some(i) = identity {
        parts.push(format!("identity {i:?}"));
    }
    if let Some(c) = client_id {
        parts.push(format!("client id {c:?}"));
    }
    match parts.is_empty() {
        true => "nothing named".to_owned(),
        false => parts.join(" "),
    }
}
