//! The admin routes, and the one place they are put together ([`router`]).
//!
//! Why it is separate from `mod.rs`: the listener (sockets, TLS, deadlines) does not change when
//! a route is added. Every route sits behind `auth::require`; a route that changes state must
//! call [`crate::ops::audit::admin_action`].

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use std::sync::Arc;

use super::auth::{self, LiveToken};
use super::{AdminState, MAX_BODY_BYTES};

/// The OpenMetrics text content type Prometheus negotiates.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every admin route, with the token check (when `token` is set) and the body cap in front.
pub(super) fn router(state: AdminState, token: Option<Arc<LiveToken>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::control::routes())
        .merge(super::shadow::routes())
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, auth::require))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// 200 while the process runs and its runtime answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when ready for clients; 503 with the reason otherwise.
async fn readyz(State(state): State<AdminState>) -> Response {
    match state.ready.check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.as_str()),
        )
            .into_response(),
    }
}

/// Every metric, in OpenMetrics text.
async fn metrics(State(state): State<AdminState>) -> Response {
    let broker_up = state.ready.broker_up().await;
    match state.metrics.encode(broker_up) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}
