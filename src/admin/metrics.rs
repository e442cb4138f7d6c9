//! `GET /metrics`: moat's counters in OpenMetrics text, through `prometheus-client`.
//!
//! Why it looks like this: the counting itself stays in [`crate::stats::Stats`] (relaxed
//! atomics bumped where events happen, label handles resolved once per listener), so the
//! per-message path never takes a lock or looks a label up. This module only *reads* them at
//! scrape time, through a `prometheus-client` [`Collector`], together with the gauges that are
//! cheaper to read than to keep (open connections per listener, active bans, certificate
//! expiry, process memory and descriptors). Every metric is documented in docs/METRICS.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

mod encode;

use encode::{family, gauge, load, Count, Level};

use crate::admission::{Gate, RefusalReason};
use crate::mqtt::ReasonCode;
use crate::stats::{ListenerStats, Stats, TLS_PEER_GONE, WS_UPGRADE_REFUSED};
use crate::transport::{HandshakeRefusal, TlsState};

/// The registry `/metrics` encodes, and what it reads at scrape time.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Written just before each encode: whether the broker answered.
    broker_up: Arc<AtomicBool>,
}

// === impl Metrics ===

impl Metrics {
    /// A registry reading the server's counters and handles.
    pub(crate) fn new(stats: Arc<Stats>, gate: Arc<Gate>, tls: Arc<TlsState>) -> Self {
        let broker_up = Arc::new(AtomicBool::new(true));
        let mut registry = Registry::with_prefix("moat");
        registry.register_collector(Box::new(super::shadow::ShadowCollector(stats.clone())));
        registry.register_collector(Box::new(MoatCollector {
            stats,
            gate,
            tls,
            broker_up: broker_up.clone(),
        }));
        Metrics {
            registry,
            broker_up,
        }
    }

    /// Every metric as OpenMetrics text; `broker_up` is what readiness found just now.
    pub(crate) fn encode(&self, broker_up: bool) -> Result<String, std::fmt::Error> {
        self.broker_up.store(broker_up, Ordering::Relaxed);
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads everything at scrape time.
struct MoatCollector {
    stats: Arc<Stats>,
    gate: Arc<Gate>,
    tls: Arc<TlsState>,
    broker_up: Arc<AtomicBool>,
}

/// `0x87` for a reason code byte.
fn hex(code: usize) -> String {
    format!("0x{code:02x}")
}

/// A readable name for an MQTT 5 reason code (`NotAuthorized`).
fn reason_name(code: usize) -> String {
    u8::try_from(code)
        .ok()
        .and_then(|c| ReasonCode::try_from(c).ok())
        .map_or_else(|| "unknown".to_owned(), |r| format!("{r:?}"))
}

fn tls_cause(i: usize) -> &'static str {
    match i {
        TLS_PEER_GONE => "peer gone",
        WS_UPGRADE_REFUSED => "websocket upgrade refused",
        _ => HandshakeRefusal::ALL.get(i).map_or("other", |c| c.as_str()),
    }
}

impl std::fmt::Debug for MoatCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MoatCollector")
    }
}

impl Collector for MoatCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.connections(&mut e)?;
        self.transport_and_connect(&mut e)?;
        self.traffic(&mut e)?;
        self.admission(&mut e)?;
        self.broker_and_reloads(&mut e)?;
        self.process(&mut e)
    }
}

// === impl MoatCollector ===

impl MoatCollector {
    fn listeners(&self) -> Vec<Arc<ListenerStats>> {
        self.stats
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn connections(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let listeners = self.listeners();
        family(
            e,
            "connections_accepted",
            "Connections accepted by a listener (QUIC: attempts), before admission.",
            MetricType::Counter,
            listeners.iter().map(|l| {
                let labels = [("listener", &*l.name), ("transport", l.transport)];
                (labels, Count(load(&l.accepted)))
            }),
        )?;
        family(
            e,
            "connections_refused",
            "Connections refused at admission, by reason (before any TLS work).",
            MetricType::Counter,
            listeners.iter().flat_map(|l| {
                RefusalReason::ALL.iter().map(move |r| {
                    let labels = [
                        ("listener", &*l.name),
                        ("transport", l.transport),
                        ("reason", r.key()),
                    ];
                    (labels, Count(l.refused.get(*r as usize)))
                })
            }),
        )?;
        let open = self.gate.open_by_listener();
        family(
            e,
            "connections_open",
            "Connections open now (holding an admission slot).",
            MetricType::Gauge,
            listeners.iter().map(|l| {
                let n = open
                    .iter()
                    .find(|(name, _)| **name == *l.name)
                    .map_or(0, |o| o.1);
                let labels = [("listener", &*l.name), ("transport", l.transport)];
                (labels, gauge(n))
            }),
        )?;
        family(
            e,
            "sessions_active",
            "MQTT sessions proxied now (past CONNACK).",
            MetricType::Gauge,
            [([], gauge(load(&self.stats.active_sessions)))],
        )
    }

    fn transport_and_connect(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        family(
            e,
            "tls_handshakes",
            "TLS and QUIC handshakes that finished.",
            MetricType::Counter,
            [([], Count(load(&s.tls_handshakes)))],
        )?;
        family(
            e,
            "tls_handshake_failures",
            "Failed transport handshakes (TLS, QUIC, WebSocket upgrade) by cause.",
            MetricType::Counter,
            s.tls_failures
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(i, n)| ([("cause", tls_cause(i))], Count(n))),
        )?;
        let codes: Vec<(String, String, u64)> = s
            .connect_codes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(code, n)| (hex(code), reason_name(code), n))
            .collect();
        let closed = load(&s.connect_closed);
        family(
            e,
            "connect_outcomes",
            "CONNECT outcomes by the MQTT 5 reason code answered (0x00: accepted; 3.x answers \
             are counted by the code they were translated from; code none: closed without CONNACK).",
            MetricType::Counter,
            codes
                .iter()
                .map(|(code, name, n)| ([("code", code.as_str()), ("reason", name.as_str())], Count(*n)))
                .chain(std::iter::once((
                    [("code", "none"), ("reason", "closed without CONNACK")],
                    Count(closed),
                ))),
        )?;
        family(
            e,
            "connects_banned",
            "CONNECTs refused because the client id, user name or source is banned.",
            MetricType::Counter,
            [([], Count(load(&s.connects_banned)))],
        )
    }

    fn traffic(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        family(
            e,
            "messages",
            "MQTT packets after CONNACK: in = read from clients, out = read from the broker for clients.",
            MetricType::Counter,
            [
                ([("direction", "in")], Count(load(&s.messages_in))),
                ([("direction", "out")], Count(load(&s.messages_out))),
            ],
        )?;
        family(
            e,
            "bytes",
            "Bytes of those MQTT packets, by direction.",
            MetricType::Counter,
            [
                ([("direction", "in")], Count(load(&s.bytes_in))),
                ([("direction", "out")], Count(load(&s.bytes_out))),
            ],
        )?;
        let denials = s.acl_denials.read();
        family(
            e,
            "acl_denials",
            "Packets refused by the ACL, by action and by the rule that decided (file:line).",
            MetricType::Counter,
            denials
                .iter()
                .map(|(action, rule, n)| ([("action", *action), ("rule", &**rule)], Count(*n))),
        )?;
        family(
            e,
            "throttled",
            "Times a session was held back (not read) to keep it within its rate.",
            MetricType::Counter,
            [([], Count(load(&s.throttled)))],
        )?;
        family(
            e,
            "limit_disconnects",
            "Sessions closed for going above a per-client limit.",
            MetricType::Counter,
            [([], Count(load(&s.limit_disconnects)))],
        )
    }

    fn admission(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        family(
            e,
            "bans_active",
            "Automatic bans in force now (operator bans: `moat ctl bans`; static bans are in the policy).",
            MetricType::Gauge,
            [([], gauge(self.gate.active_bans().len()))],
        )?;
        family(
            e,
            "bans_set",
            "Automatic and operator bans set since start.",
            MetricType::Counter,
            [([], Count(self.gate.counters().bans_set))],
        )?;
        family(
            e,
            "password_verifications",
            "Password hashes verified (argon2id or mosquitto; decoys included).",
            MetricType::Counter,
            [([], Count(load(&s.password_verifications)))],
        )?;
        family(
            e,
            "password_cache_hits",
            "Logins answered by the success cache instead of a verification.",
            MetricType::Counter,
            [([], Count(load(&s.password_cache_hits)))],
        )?;
        family(
            e,
            "password_busy",
            "CONNECTs refused with server unavailable for lack of verification capacity.",
            MetricType::Counter,
            [([], Count(load(&s.password_busy)))],
        )
    }

    fn broker_and_reloads(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        family(
            e,
            "broker_up",
            "1 when the broker is reachable (embedded: running; upstream: a TCP connect probe).",
            MetricType::Gauge,
            [([], gauge(i64::from(self.broker_up.load(Ordering::Relaxed))))],
        )?;
        family(
            e,
            "upstream_connects",
            "Broker connections opened for authenticated clients.",
            MetricType::Counter,
            [([], Count(load(&s.upstream_connects)))],
        )?;
        let (sum, count, buckets) = s.upstream_latency.read();
        let mut metric = e.encode_descriptor(
            "upstream_connect_seconds",
            "Time to open the broker connection (TCP connect and the broker's CONNACK).",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        // (what, outcome, index into Stats::reloads).
        let index = || {
            [
                ("policy", "ok", 0),
                ("policy", "refused", 1),
                ("tls", "ok", 2),
                ("tls", "refused", 3),
                ("config", "ok", 4),
                ("config", "refused", 5),
                ("admin_token", "ok", 6),
                ("admin_token", "refused", 7),
                ("upstream_files", "ok", 8),
                ("upstream_files", "refused", 9),
            ]
            .into_iter()
        };
        family(
            e,
            "reloads",
            "Reloads of moat.yaml, the policy, TLS, admin token and upstream broker files, by outcome (refused: the running state was kept).",
            MetricType::Counter,
            index().map(|(what, outcome, i)| {
                (
                    [("what", what), ("outcome", outcome)],
                    Count(s.reloads.get(i)),
                )
            }),
        )?;
        family(
            e,
            "reload_last_timestamp_seconds",
            "Unix time of the last reload, by what and outcome (0: never).",
            MetricType::Gauge,
            index().map(|(what, outcome, i)| {
                let at = s
                    .last_reload
                    .get(i)
                    .map_or(0, |t| t.load(Ordering::Relaxed));
                ([("what", what), ("outcome", outcome)], Level(at))
            }),
        )?;
        let expiry = self.tls.expiry();
        family(
            e,
            "cert_expiry_timestamp_seconds",
            "notAfter (Unix time) of the server certificate and of the earliest client CA certificate in force.",
            MetricType::Gauge,
            [("server", expiry.server), ("client_ca", expiry.client_ca)]
                .into_iter()
                .filter_map(|(cert, at)| at.map(|at| ([("cert", cert)], Level(at)))),
        )
    }

    fn process(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = crate::admission::resident_bytes() {
            family(
                e,
                "process_resident_memory_bytes",
                "Resident memory of the moat process (VmRSS), read at scrape time.",
                MetricType::Gauge,
                [([], gauge(rss))],
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            family(
                e,
                "process_open_fds",
                "Open file descriptors of the moat process, read at scrape time.",
                MetricType::Gauge,
                [([], gauge(fds.count()))],
            )?;
        }
        Ok(())
    }
}
