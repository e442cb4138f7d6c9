//! Listing and kicking live sessions: the filters, the page, and what one session looks like
//! to an operator.
//!
//! What it owns: [`SessionQuery`] (filters by identity, client id, source address or network,
//! listener; a cursor and a page size bounded by [`MAX_PAGE`]), [`SessionView`] (one row) and
//! [`SessionPage`]. Why it is separate: the filters are plain functions over a registry entry,
//! tested without sockets; the HTTP layer only parses and prints them. What it must not do:
//! hold the registry lock longer than one walk, or return an unbounded list.

use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::session::LiveSession;

/// Largest page of sessions one call returns.
pub const MAX_PAGE: usize = 1_000;

/// Page size when the caller names none.
pub const DEFAULT_PAGE: usize = 100;

/// Which sessions to list (every filter given must match).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// Identity name, exactly.
    pub identity: Option<String>,
    /// Client id, exactly.
    pub client_id: Option<String>,
    /// Source address, or a network in CIDR form (`10.0.0.0/8`).
    pub source: Option<String>,
    /// Listener name, exactly.
    pub listener: Option<String>,
    /// Only sessions with ids above this one (the previous page's `next`).
    pub after: Option<u64>,
    /// Page size (at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// One live session, as `moat ctl sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SessionView {
    /// Registry id: what `moat ctl kick` takes.
    pub id: u64,
    /// Identity name.
    pub identity: String,
    /// Client id.
    pub client_id: String,
    /// Client address and port.
    pub source: String,
    /// Listener name.
    pub listener: String,
    /// `tls`, `wss`, `ws` or `quic`.
    pub transport: String,
    /// `3.1`, `3.1.1` or `5`.
    pub protocol: String,
    /// When the session started (RFC 3339, UTC).
    pub connected_since: String,
    /// Seconds since then.
    pub connected_secs: u64,
    /// Packets from the client.
    pub packets_in: u64,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Packets to the client.
    pub packets_out: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
}

/// One page of sessions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SessionPage {
    /// The sessions, in id order.
    pub sessions: Vec<SessionView>,
    /// Live sessions in total (all of them, not only those matching).
    pub live: usize,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<u64>,
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// `source` is neither an address nor a network.
    #[error("source {0:?} is neither an IP address nor a network (CIDR)")]
    Source(String),
    /// `limit` is 0 or above [`MAX_PAGE`].
    #[error("limit must be between 1 and {MAX_PAGE}")]
    Limit,
}

/// A source filter: an address or a network.
pub(crate) fn parse_source(text: &str) -> Result<IpNet, QueryError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| QueryError::Source(text.to_owned()))
}

/// The filters of a query, checked.
pub(crate) struct Filter {
    query: SessionQuery,
    source: Option<IpNet>,
    /// Page size.
    pub(crate) limit: usize,
}

// === impl Filter ===

impl Filter {
    /// Checks `query`.
    pub(crate) fn new(query: SessionQuery) -> Result<Filter, QueryError> {
        let source = query.source.as_deref().map(parse_source).transpose()?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(QueryError::Limit);
        }
        Ok(Filter {
            query,
            source,
            limit,
        })
    }

    /// The cursor.
    pub(crate) fn after(&self) -> u64 {
        self.query.after.unwrap_or(0)
    }

    /// Whether `s` passes every filter.
    pub(crate) fn matches(&self, s: &LiveSession) -> bool {
        let q = &self.query;
        let f = &s.facts;
        q.identity.as_ref().is_none_or(|i| *i == f.identity)
            && q.client_id.as_ref().is_none_or(|c| *c == f.client_id)
            && q.listener.as_ref().is_none_or(|l| **l == *f.listener)
            && self
                .source
                .is_none_or(|net| net.contains(&f.addr.ip().to_canonical()))
    }
}

/// The row for `s` at `now`.
pub(crate) fn view(s: &LiveSession, now: SystemTime) -> SessionView {
    let t = s.traffic();
    let f = &s.facts;
    SessionView {
        id: s.id,
        identity: f.identity.clone(),
        client_id: f.client_id.clone(),
        source: f.addr.to_string(),
        listener: f.listener.to_string(),
        transport: f.kind.as_str().to_owned(),
        protocol: match f.version {
            crate::mqtt::ProtocolVersion::V3_1 => "3.1",
            crate::mqtt::ProtocolVersion::V3_1_1 => "3.1.1",
            crate::mqtt::ProtocolVersion::V5 => "5",
        }
        .to_owned(),
        connected_since: humantime::format_rfc3339_seconds(s.since).to_string(),
        connected_secs: now.duration_since(s.since).map_or(0, |d| d.as_secs()),
        packets_in: t.packets_in,
        bytes_in: t.bytes_in,
        packets_out: t.packets_out,
        bytes_out: t.bytes_out,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_or_networks() {
        assert_eq!(
            parse_source("10.1.2.3").unwrap(),
            "10.1.2.3/32".parse().unwrap()
        );
        assert_eq!(
            parse_source("10.1.2.3/16").unwrap(),
            "10.1.0.0/16".parse().unwrap()
        );
        assert_eq!(
            parse_source("::ffff:10.0.0.1").unwrap(),
            "10.0.0.1/32".parse().unwrap()
        );
        assert!(parse_source("example.com").is_err());
    }

    #[test]
    fn pages_are_bounded() {
        let q = |limit| SessionQuery {
            limit: Some(limit),
            ..SessionQuery::default()
        };
        assert!(Filter::new(q(0)).is_err());
        assert!(Filter::new(q(MAX_PAGE + 1)).is_err());
        assert_eq!(Filter::new(q(MAX_PAGE)).unwrap().limit, MAX_PAGE);
        assert_eq!(
            Filter::new(SessionQuery::default()).unwrap().limit,
            DEFAULT_PAGE
        );
    }
}
