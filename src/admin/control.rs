//! The runtime control routes under `/v1/`: JSON over the admin listener, one handler per call
//! of [`crate::control::Control`], which does the work and writes the audit line.
//!
//! | method | path                     | body             | answer                  |
//! |--------|--------------------------|------------------|-------------------------|
//! | GET    | /v1/sessions?filters     |                  | `SessionPage`           |
//! | POST   | /v1/sessions/{id}/kick   |                  | `SessionView`           |
//! | GET    | /v1/bans                 |                  | `{"bans": [BanView]}`   |
//! | POST   | /v1/bans                 | `BanRequest`     | `BanView` (201)         |
//! | POST   | /v1/bans/lift            | `UnbanRequest`   | `Unbanned`              |
//! | POST   | /v1/reload               |                  | `ReloadReport`          |
//! | POST   | /v1/drain                |                  | `DrainAnswer` (202)     |
//!
//! Errors are `{"error": "..."}` with 400 (bad request), 404 (no such session) or 503 (moat
//! is shutting down). Why it is separate from `routes.rs`: those are read-only probes; these
//! change state and name their caller ([`Caller`], set per connection) in the audit line.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::AdminState;
use crate::control::{BanRequest, ControlError, SessionQuery, UnbanRequest};

/// Who is calling: the admin client's address (`IP:PORT`, or `unix` for the socket), for the
/// audit line of a state-changing call.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) String);

/// The control routes (the caller adds auth and the body cap in front).
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}/kick", post(kick))
        .route("/v1/bans", get(bans).post(ban))
        .route("/v1/bans/lift", post(unban))
        .route("/v1/reload", post(reload))
        .route("/v1/drain", post(drain))
}

fn who(caller: Option<Extension<Caller>>) -> String {
    caller.map_or_else(|| "unknown".to_owned(), |Extension(c)| c.0)
}

async fn sessions(State(state): State<AdminState>, Query(q): Query<SessionQuery>) -> Response {
    answer(state.control.sessions(q), StatusCode::OK)
}

async fn kick(
    State(state): State<AdminState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<u64>,
) -> Response {
    answer(state.control.kick(id, &who(caller)), StatusCode::OK)
}

async fn bans(State(state): State<AdminState>) -> Response {
    let bans = state.control.bans();
    Json(serde_json::json!({ "bans": bans })).into_response()
}

async fn ban(
    State(state): State<AdminState>,
    caller: Option<Extension<Caller>>,
    Json(req): Json<BanRequest>,
) -> Response {
    answer(state.control.ban(&req, &who(caller)), StatusCode::CREATED)
}

async fn unban(
    State(state): State<AdminState>,
    caller: Option<Extension<Caller>>,
    Json(req): Json<UnbanRequest>,
) -> Response {
    answer(state.control.unban(&req, &who(caller)), StatusCode::OK)
}

async fn reload(State(state): State<AdminState>, caller: Option<Extension<Caller>>) -> Response {
    answer(state.control.reload(&who(caller)).await, StatusCode::OK)
}

async fn drain(State(state): State<AdminState>, caller: Option<Extension<Caller>>) -> Response {
    answer(state.control.drain(&who(caller)), StatusCode::ACCEPTED)
}

/// The JSON answer, or the error with its status.
fn answer<T: serde::Serialize>(result: Result<T, ControlError>, ok: StatusCode) -> Response {
    match result {
        Ok(value) => (ok, Json(value)).into_response(),
        Err(error) => {
            let status = match error {
                ControlError::NoSession(_) => StatusCode::NOT_FOUND,
                ControlError::Query(_) | ControlError::Ban(_) => StatusCode::BAD_REQUEST,
                ControlError::Gone => StatusCode::SERVICE_UNAVAILABLE,
            };
            let body = serde_json::json!({ "error": error.to_string() });
            (status, Json(body)).into_response()
        }
    }
}
