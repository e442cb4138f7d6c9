//! The gate: admission of a new connection on its bare address, and the ban hooks the session
//! calls at CONNECT. See the module docs of `admission` for the order of checks.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::bans::{BanInfo, BanKey, BanTable, Windows};
use super::caps::{Admitted, CapFull, Caps, Maxima};
use super::log::RefusalLog;
use super::manual::{BanError, ManualBan, ManualBans};
use super::memory;
use super::rate::{ConnRate, RateExceeded};
use crate::policy::{source_key, AutoBanRule, Policy, RuleRef};

/// How often the housekeeping task runs: bans are lifted and memory sampled this often.
const TICK: Duration = Duration::from_secs(1);

/// Every this many ticks, refusal counts are logged and rate and event tables are cleaned.
const SWEEP_TICKS: u32 = 10;

/// Why a connection was refused at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The address is not in the allow list, or is in a deny list.
    Network,
    /// The source is banned (static or automatic).
    Banned,
    /// The process is above its memory mark.
    Overload,
    /// The source opens connections faster than its rate.
    SourceRate,
    /// All sources together open connections faster than the global rate.
    GlobalRate,
    /// The source has as many connections open as it may.
    SourceCap,
    /// The listener has as many connections open as it may.
    ListenerCap,
    /// moat has as many connections open as it may.
    TotalCap,
}

// === impl RefusalReason ===

impl RefusalReason {
    /// Every reason, in declaration order (`reason as usize` is its index).
    pub const ALL: [RefusalReason; 8] = [
        Self::Network,
        Self::Banned,
        Self::Overload,
        Self::SourceRate,
        Self::GlobalRate,
        Self::SourceCap,
        Self::ListenerCap,
        Self::TotalCap,
    ];

    /// The value of the `reason` label in metrics.
    pub fn key(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Banned => "banned",
            Self::Overload => "overload",
            Self::SourceRate => "source_rate",
            Self::GlobalRate => "global_rate",
            Self::SourceCap => "source_cap",
            Self::ListenerCap => "listener_cap",
            Self::TotalCap => "total_cap",
        }
    }

    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Banned => "banned",
            Self::Overload => "overload (memory)",
            Self::SourceRate => "connection rate per source",
            Self::GlobalRate => "global connection rate",
            Self::SourceCap => "connections per source",
            Self::ListenerCap => "connections per listener",
            Self::TotalCap => "total connections",
        }
    }
}

/// A refused connection: why, and which rule said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: RefusalReason,
    /// The rule that refused it.
    pub rule: RuleRef,
}

/// Admission counters.
#[derive(Debug, Default)]
pub struct Counters {
    admitted: AtomicU64,
    network: AtomicU64,
    banned: AtomicU64,
    rate: AtomicU64,
    capacity: AtomicU64,
    overload: AtomicU64,
    bans_set: AtomicU64,
}

/// A copy of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountersSnapshot {
    /// Connections admitted.
    pub admitted: u64,
    /// Refused by `network:` rules.
    pub refused_network: u64,
    /// Refused because the source is banned.
    pub refused_banned: u64,
    /// Refused by a connection rate.
    pub refused_rate: u64,
    /// Refused by a concurrent cap.
    pub refused_capacity: u64,
    /// Refused by memory shedding.
    pub refused_overload: u64,
    /// Automatic bans set.
    pub bans_set: u64,
}

// === impl CountersSnapshot ===

impl CountersSnapshot {
    /// Every refusal, whatever the reason.
    pub fn refused(&self) -> u64 {
        self.refused_network
            + self.refused_banned
            + self.refused_rate
            + self.refused_capacity
            + self.refused_overload
    }
}

/// See the module docs of `admission`.
pub struct Gate {
    /// The policy in force (shared with the sessions; a reload swaps it).
    policy: Arc<ArcSwap<Policy>>,
    /// moat.yaml's `limits.max_connections`.
    max_connections: usize,
    /// Connection rates.
    rate: ConnRate,
    /// Concurrent caps.
    caps: Arc<Caps>,
    /// Active automatic bans.
    bans: BanTable,
    /// Bans an operator set (`moat ctl ban`).
    manual: ManualBans,
    /// Failed authentications per source.
    auth_failures: Windows,
    /// Session ends per client id.
    flaps: Windows,
    /// Aggregated refusal log.
    log: RefusalLog,
    /// Last sampled resident memory in bytes (0: unknown).
    rss: AtomicU64,
    /// Counters.
    counters: Counters,
}

// === impl Gate ===

impl Gate {
    /// A gate reading `policy`, capping connections at `max_connections` in total.
    pub fn new(policy: Arc<ArcSwap<Policy>>, max_connections: usize) -> Self {
        let rate = ConnRate::new(policy.load().connection_limits());
        Gate {
            policy,
            max_connections,
            rate,
            caps: Arc::new(Caps::default()),
            bans: BanTable::default(),
            manual: ManualBans::default(),
            auth_failures: Windows::default(),
            flaps: Windows::default(),
            log: RefusalLog::default(),
            rss: AtomicU64::new(memory::resident_bytes().unwrap_or(0)),
            counters: Counters::default(),
        }
    }

    /// Admits or refuses a new connection from `addr` on `listener`, before any transport work.
    /// On `Err` the caller closes the socket at once; the refusal is already counted and logged.
    pub fn admit(&self, addr: SocketAddr, listener: &str) -> Result<Admitted, Refused> {
        let ip = addr.ip().to_canonical();
        let policy = self.policy.load();
        let limits = policy.connection_limits();
        let source = source_key(ip, limits.ipv6_prefix);
        let verdict = self.judge(&policy, ip, source, listener);
        self.count(verdict, addr, source, listener)
    }

    /// Admits a connection from a trusted balancer or reverse proxy (`addr`) whose client is
    /// not known yet: it is about to send a PROXY header or an `X-Forwarded-For`. Only memory
    /// shedding and the total and listener caps apply, so the balancer is never banned,
    /// rate-limited or capped as one source for all its clients; the slot it gets is a relay
    /// slot, which [`Gate::readmit`] replaces once the client's address is known.
    pub fn admit_relay(&self, addr: SocketAddr, listener: &str) -> Result<Admitted, Refused> {
        let ip = addr.ip().to_canonical();
        let policy = self.policy.load();
        let limits = policy.connection_limits();
        let source = source_key(ip, limits.ipv6_prefix);
        let refuse = |reason, rule| Refused { reason, rule };
        let verdict = match limits.shed_at_memory {
            Some(mark) if self.rss.load(Ordering::Relaxed) > mark => {
                Err(refuse(RefusalReason::Overload, limits.rule.clone()))
            }
            _ => {
                let max = self.maxima(limits, listener);
                self.caps
                    .acquire_relay(listener, max)
                    .map_err(|full| self.cap_refusal(full, limits))
            }
        };
        match verdict {
            Ok(relay) => Ok(relay),
            Err(refused) => self.count(Err(refused), addr, source, listener),
        }
    }

    /// Admission of the client a relay slot was for, on the address the balancer named: every
    /// check of [`Gate::admit`] (network rules, bans, rates, caps per source). The relay slot is
    /// given back first, so the connection never holds two.
    pub fn readmit(
        &self,
        relay: Admitted,
        client: SocketAddr,
        listener: &str,
    ) -> Result<Admitted, Refused> {
        drop(relay);
        self.admit(client, listener)
    }

    /// Counts an admission verdict and logs a refusal.
    fn count(
        &self,
        verdict: Result<Admitted, Refused>,
        addr: SocketAddr,
        source: IpAddr,
        listener: &str,
    ) -> Result<Admitted, Refused> {
        match verdict {
            Ok(admitted) => {
                bump(&self.counters.admitted);
                Ok(admitted)
            }
            Err(refused) => {
                bump(match refused.reason {
                    RefusalReason::Network => &self.counters.network,
                    RefusalReason::Banned => &self.counters.banned,
                    RefusalReason::Overload => &self.counters.overload,
                    RefusalReason::SourceRate | RefusalReason::GlobalRate => &self.counters.rate,
                    RefusalReason::SourceCap
                    | RefusalReason::ListenerCap
                    | RefusalReason::TotalCap => &self.counters.capacity,
                });
                let reason = refused.reason.as_str();
                self.log
                    .note(addr, source, listener, "connect", reason, &refused.rule);
                Err(refused)
            }
        }
    }

    fn judge(
        &self,
        policy: &Policy,
        ip: IpAddr,
        source: IpAddr,
        listener: &str,
    ) -> Result<Admitted, Refused> {
        let refuse = |reason, rule| Refused { reason, rule };
        let decision = policy.admit_addr(ip, listener);
        if !decision.is_allowed() {
            return Err(refuse(RefusalReason::Network, decision.rule));
        }
        if let Some(ban) = policy.static_ban_ip(ip, SystemTime::now()) {
            return Err(refuse(RefusalReason::Banned, ban.rule.clone()));
        }
        let now = Instant::now();
        if let Some(rule) = self.bans.banned(&BanKey::Source(source), now) {
            return Err(refuse(RefusalReason::Banned, rule));
        }
        if let Some(rule) = self.manual.find(Some(ip), None, None, now) {
            return Err(refuse(RefusalReason::Banned, rule));
        }
        let limits = policy.connection_limits();
        if let Some(mark) = limits.shed_at_memory {
            if self.rss.load(Ordering::Relaxed) > mark {
                return Err(refuse(RefusalReason::Overload, limits.rule.clone()));
            }
        }
        self.rate.check(source, limits).map_err(|e| match e {
            RateExceeded::Source => refuse(RefusalReason::SourceRate, limits.rule.clone()),
            RateExceeded::Global => refuse(RefusalReason::GlobalRate, limits.rule.clone()),
        })?;
        let max = self.maxima(limits, listener);
        self.caps
            .acquire(source, listener, max)
            .map_err(|full| self.cap_refusal(full, limits))
    }

    fn maxima(&self, limits: &crate::policy::ConnectionLimits, listener: &str) -> Maxima {
        let total = limits
            .max_total
            .and_then(|t| usize::try_from(t).ok())
            .map_or(self.max_connections, |t| t.min(self.max_connections));
        Maxima {
            total,
            listener: limits.per_listener.get(listener).copied(),
            source: limits.max_per_source,
        }
    }

    fn cap_refusal(&self, full: CapFull, limits: &crate::policy::ConnectionLimits) -> Refused {
        let reason = match full {
            CapFull::Source => RefusalReason::SourceCap,
            CapFull::Listener => RefusalReason::ListenerCap,
            CapFull::Total => RefusalReason::TotalCap,
        };
        let rule = match full {
            CapFull::Total if limits.max_total.is_none() => {
                RuleRef::builtin("moat.yaml limits.max_connections")
            }
            _ => limits.rule.clone(),
        };
        Refused { reason, rule }
    }

    /// A TLS or QUIC handshake from `addr` was refused (`cause`, decided by the setting
    /// `rule`): logged to the audit target like admission refusals, once per source and cause
    /// per interval with a count.
    pub fn handshake_refused(
        &self,
        addr: SocketAddr,
        listener: &str,
        cause: &'static str,
        rule: &'static str,
    ) {
        self.transport_refused(addr, listener, "tls", cause, rule);
    }

    /// A connection on a PROXY protocol listener was refused before TLS (`cause`: an untrusted
    /// peer, a missing, malformed, oversized or slow header; `rule`: the setting that decided):
    /// logged to the audit target like admission refusals, aggregated per source and cause.
    pub fn proxy_refused(
        &self,
        addr: SocketAddr,
        listener: &str,
        cause: &'static str,
        rule: &'static str,
    ) {
        self.transport_refused(addr, listener, "proxy", cause, rule);
    }

    fn transport_refused(
        &self,
        addr: SocketAddr,
        listener: &str,
        action: &'static str,
        cause: &'static str,
        rule: &'static str,
    ) {
        let ip = addr.ip().to_canonical();
        let source = source_key(ip, self.policy.load().connection_limits().ipv6_prefix);
        self.log.note(
            addr,
            source,
            listener,
            action,
            cause,
            &RuleRef::builtin(rule),
        );
    }

    /// At CONNECT: refuses a client whose user name, client id or source is banned (MQTT 5
    /// CONNACK 0x8A). Called before authentication, and again with the authenticated identity.
    pub fn check_identity(
        &self,
        addr: IpAddr,
        username: Option<&str>,
        client_id: &str,
    ) -> Result<(), RuleRef> {
        let policy = self.policy.load();
        if let Some(ban) = policy.static_ban_identity(username, client_id, SystemTime::now()) {
            return Err(ban.rule.clone());
        }
        let ip = addr.to_canonical();
        if let Some(ban) = policy.static_ban_ip(ip, SystemTime::now()) {
            return Err(ban.rule.clone());
        }
        let now = Instant::now();
        let source = source_key(ip, policy.connection_limits().ipv6_prefix);
        let keys = [
            Some(BanKey::Source(source)),
            username.map(|u| BanKey::Username(u.to_owned())),
            (!client_id.is_empty()).then(|| BanKey::ClientId(client_id.to_owned())),
        ];
        for key in keys.into_iter().flatten() {
            if let Some(rule) = self.bans.banned(&key, now) {
                return Err(rule);
            }
        }
        let client_id = (!client_id.is_empty()).then_some(client_id);
        match self.manual.find(Some(ip), username, client_id, now) {
            Some(rule) => Err(rule),
            None => Ok(()),
        }
    }

    /// For a live session: the ban set by the policy or an operator that now covers its
    /// identity, client id or source, if any. Automatic bans are left out on purpose: they
    /// refuse new connections, and a flood of bad logins from behind a shared NAT must not end
    /// the good sessions from the same address.
    pub fn check_live(&self, addr: IpAddr, identity: &str, client_id: &str) -> Option<RuleRef> {
        let policy = self.policy.load();
        let now = SystemTime::now();
        let ip = addr.to_canonical();
        if let Some(ban) = policy
            .static_ban_identity(Some(identity), client_id, now)
            .or_else(|| policy.static_ban_ip(ip, now))
        {
            return Some(ban.rule.clone());
        }
        let client_id = (!client_id.is_empty()).then_some(client_id);
        self.manual
            .find(Some(ip), Some(identity), client_id, Instant::now())
    }

    /// Sets an operator ban (see `admission/manual.rs`); the caller wakes live sessions.
    pub(crate) fn ban(
        &self,
        target: crate::policy::BanTarget,
        ban_for: Duration,
        reason: &str,
        by: &str,
    ) -> Result<ManualBan, BanError> {
        let ban = self
            .manual
            .add(target, ban_for, reason, by, Instant::now())?;
        bump(&self.counters.bans_set);
        tracing::warn!(target: "moat::audit", ban = %ban.target, id = ban.id, by, reason = ban.reason, seconds = ban_for.as_secs_f64(), rule = %ban.rule, "admin ban set");
        Ok(ban)
    }

    /// Lifts the operator bans `manual` picks and the automatic bans `auto` picks; returns
    /// what was lifted, for the answer and the audit line.
    pub(crate) fn lift(
        &self,
        manual: impl Fn(&ManualBan) -> bool,
        auto: impl Fn(&BanKey) -> bool,
    ) -> Vec<String> {
        let mut lifted: Vec<String> = self
            .manual
            .lift(manual)
            .into_iter()
            .map(|b| format!("admin ban #{} ({})", b.id, b.target))
            .collect();
        lifted.extend(self.bans.lift(auto).into_iter().map(|k| k.to_string()));
        lifted
    }

    /// The operator bans in force now.
    pub(crate) fn manual_bans(&self) -> Vec<ManualBan> {
        self.manual.list(Instant::now())
    }

    /// A CONNECT from `addr` failed authentication; enough of them within the window ban the
    /// source (and, as configured, the user name and client id it tried).
    pub fn auth_failed(&self, addr: IpAddr, username: Option<&str>, client_id: &str) {
        let policy = self.policy.load();
        let Some(rule) = &policy.auto_ban().failed_auth else {
            return;
        };
        let source = source_key(addr, policy.connection_limits().ipv6_prefix);
        let now = Instant::now();
        if self
            .auth_failures
            .hit(BanKey::Source(source), rule.count, rule.within, now)
        {
            self.ban_all(
                rule,
                source,
                username,
                client_id,
                "failed authentication",
                now,
            );
        }
    }

    /// A session of `client_id` from `addr` ended; too many ends within the window are
    /// flapping and ban the client id (and, as configured, its source).
    pub fn session_ended(&self, addr: IpAddr, username: Option<&str>, client_id: &str) {
        let policy = self.policy.load();
        let Some(rule) = &policy.auto_ban().flapping else {
            return;
        };
        let source = source_key(addr, policy.connection_limits().ipv6_prefix);
        let now = Instant::now();
        let key = BanKey::ClientId(client_id.to_owned());
        if self.flaps.hit(key, rule.count, rule.within, now) {
            self.ban_all(rule, source, username, client_id, "flapping", now);
        }
    }

    fn ban_all(
        &self,
        rule: &AutoBanRule,
        source: IpAddr,
        username: Option<&str>,
        client_id: &str,
        reason: &'static str,
        now: Instant,
    ) {
        let mut keys = Vec::with_capacity(3);
        if rule.ban_source {
            keys.push(BanKey::Source(source));
        }
        if let (true, Some(u)) = (rule.ban_username, username) {
            keys.push(BanKey::Username(u.to_owned()));
        }
        if rule.ban_client_id && !client_id.is_empty() {
            keys.push(BanKey::ClientId(client_id.to_owned()));
        }
        for key in keys {
            bump(&self.counters.bans_set);
            self.bans.ban(key, rule.ban_for, reason, &rule.rule, now);
        }
    }

    /// The automatic bans in force now (the static ones are in the policy).
    pub fn active_bans(&self) -> Vec<BanInfo> {
        self.bans.list(Instant::now())
    }

    /// Counters so far.
    pub fn counters(&self) -> CountersSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        CountersSnapshot {
            admitted: r(&c.admitted),
            refused_network: r(&c.network),
            refused_banned: r(&c.banned),
            refused_rate: r(&c.rate),
            refused_capacity: r(&c.capacity),
            refused_overload: r(&c.overload),
            bans_set: r(&c.bans_set),
        }
    }

    /// Connections currently holding an [`Admitted`] slot.
    pub fn open_connections(&self) -> usize {
        self.caps.total()
    }

    /// Connections holding a slot, per listener (read at scrape time).
    pub fn open_by_listener(&self) -> Vec<(Arc<str>, u32)> {
        self.caps.by_listener()
    }

    /// Sources tracked by the connection-rate limiter (bounded; shrinks on each sweep).
    pub fn tracked_sources(&self) -> usize {
        self.rate.tracked()
    }

    /// The gate's one background task: lifts ended bans and samples memory every tick; logs
    /// aggregated refusals and cleans the rate and event tables every sweep. Spawned by the
    /// server at start; ends when `stop` resolves.
    pub async fn housekeep(&self, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            n = n.wrapping_add(1);
            self.tick(n.is_multiple_of(SWEEP_TICKS));
        }
    }

    /// One housekeeping round; `sweep` adds the slower cleaning.
    fn tick(&self, sweep: bool) {
        let now = Instant::now();
        self.bans.expire(now);
        self.manual.expire(now);
        if let Some(rss) = memory::resident_bytes() {
            self.rss.store(rss, Ordering::Relaxed);
        }
        if sweep {
            self.log.flush();
            self.rate.clean();
            let policy = self.policy.load();
            let auto = policy.auto_ban();
            let window = |r: &Option<AutoBanRule>| r.as_ref().map_or(Duration::ZERO, |r| r.within);
            self.auth_failures.clean(window(&auto.failed_auth), now);
            self.flaps.clean(window(&auto.flapping), now);
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    #[test]
    fn refusal_reasons_all_is_in_declaration_order() {
        for (i, reason) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
    }

    use super::*;
    use crate::policy::{compile, PolicySource};

    fn gate(yaml: &str) -> Gate {
        let policy = compile(&[PolicySource {
            path: "p.yaml".into(),
            text: yaml.to_owned(),
        }])
        .unwrap();
        Gate::new(Arc::new(ArcSwap::from_pointee(policy)), 1000)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn network_then_caps_then_release() {
        let g = gate(
            "network: { allow: [127.0.0.0/8], deny: [127.0.0.9] }\nlimits:\n  connections: { max_per_ip: 1 }\n",
        );
        let a = g.admit(addr("127.0.0.1:5"), "m").unwrap();
        let e = g.admit(addr("127.0.0.1:6"), "m").unwrap_err();
        assert_eq!(e.reason, RefusalReason::SourceCap);
        assert_eq!(
            g.admit(addr("127.0.0.9:5"), "m").unwrap_err().reason,
            RefusalReason::Network
        );
        assert_eq!(
            g.admit(addr("10.0.0.1:5"), "m").unwrap_err().reason,
            RefusalReason::Network
        );
        drop(a);
        let _b = g.admit(addr("127.0.0.1:7"), "m").unwrap();
        let c = g.counters();
        assert_eq!(
            (c.admitted, c.refused_network, c.refused_capacity),
            (2, 2, 1)
        );
    }

    #[test]
    fn a_relay_is_not_judged_as_a_source_its_client_is() {
        let g = gate(
            "network: { allow: [127.0.0.0/8], deny: [127.0.0.9] }\nlimits:\n  connections: { max_per_ip: 1 }\n",
        );
        // The balancer 10.0.0.1 is outside the allow list and opens more than one connection.
        let balancer = addr("10.0.0.1:5");
        let r1 = g.admit_relay(balancer, "m").unwrap();
        let r2 = g.admit_relay(balancer, "m").unwrap();
        assert!(r1.is_relay());
        let a = g.readmit(r1, addr("127.0.0.1:1"), "m").unwrap();
        assert!(!a.is_relay());
        // Its second client is denied by its own address; the same client again is capped.
        let e = g.readmit(r2, addr("127.0.0.9:1"), "m").unwrap_err();
        assert_eq!(e.reason, RefusalReason::Network);
        let r3 = g.admit_relay(balancer, "m").unwrap();
        let e = g.readmit(r3, addr("127.0.0.1:2"), "m").unwrap_err();
        assert_eq!(e.reason, RefusalReason::SourceCap);
        assert_eq!(g.open_connections(), 1);
        assert_eq!(g.counters().admitted, 1);
    }

    #[test]
    fn auth_failures_ban_the_source_and_identity() {
        let g = gate(
            "network: { allow: [\"::/0\"] }\nauto_ban:\n  failed_auth: { count: 3, within: 1m, ban_for: 1h, ban: [source, username, client_id] }\n",
        );
        let ip: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        for _ in 0..2 {
            g.auth_failed(ip, Some("alice"), "c1");
        }
        assert!(g.check_identity(ip, Some("alice"), "c1").is_ok());
        g.auth_failed(ip, Some("alice"), "c1");
        // The whole /64 is banned, before TLS and at CONNECT.
        let other = addr("[2001:db8:1:2::99]:1");
        assert_eq!(
            g.admit(other, "m").unwrap_err().reason,
            RefusalReason::Banned
        );
        let elsewhere: IpAddr = "2001:db8:9::1".parse().unwrap();
        assert!(g.check_identity(elsewhere, Some("alice"), "x").is_err());
        assert!(g.check_identity(elsewhere, Some("bob"), "c1").is_err());
        assert!(g.check_identity(elsewhere, Some("bob"), "c2").is_ok());
        assert_eq!(g.active_bans().len(), 3);
        assert_eq!(g.counters().bans_set, 3);
    }
}
