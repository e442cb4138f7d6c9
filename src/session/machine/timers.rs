//! The session's clocks, pure: the client's keep alive, moat's PINGREQ schedule toward the
//! broker, and the throttle's "do not read the client before t".
//!
//! What it owns: three deadlines and the rules that move them; the machine asks for the
//! nearest ([`Timers::next`]) and says when time has passed ([`Timers::expire`]). Why it is
//! separate: time is the machine's input like packets are, so every timer rule is tested with
//! an explicit `now` (`machine/tests.rs`), no runtime and no sleeps. What it must not do: read
//! the clock, or know about sockets (the driver's write timeout is the driver's).
//!
//! The keep-alive clock runs from the later of the client's last packet and the end of a
//! throttle: while moat itself refuses to read, the client's packets wait unread in the
//! socket, and a client that keeps its keep alive must not be closed for moat's own pause.

use std::time::{Duration, Instant};

/// The session's deadlines.
#[derive(Debug)]
pub(crate) struct Timers {
    /// 1.5 × the keep alive moat enforces on the client; `None` for none.
    idle: Option<Duration>,
    /// When the client's last packet was read.
    last_client: Instant,
    /// When moat owes the broker its next PINGREQ (`None`: it pings no broker).
    next_ping: Option<Instant>,
    /// How often that is.
    ping_every: Option<Duration>,
    /// The throttle: the client is not read before this.
    read_after: Option<Instant>,
}

/// What passed time asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing (a deadline that moved, or the end of a throttle).
    Nothing,
    /// A PINGREQ is due to the broker.
    Ping,
    /// The client was silent for 1.5 × its keep alive [MQTT-3.1.2-24].
    KeepAlive,
}

// === impl Timers ===

impl Timers {
    /// The clocks of a session that starts at `now` with `keep_alive` seconds enforced on the
    /// client (0: none) and a PINGREQ to the broker every `ping_every` (`None`: never).
    pub(crate) fn new(now: Instant, keep_alive: u16, ping_every: Option<Duration>) -> Timers {
        Timers {
            // [MQTT-3.1.2-24] Close after one and a half keep alive periods without a packet.
            idle: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            last_client: now,
            next_ping: ping_every.map(|every| now + every),
            ping_every,
            read_after: None,
        }
    }

    /// A packet from the client was read at `now`.
    pub(crate) fn client_packet(&mut self, now: Instant) {
        self.last_client = self.last_client.max(now);
    }

    /// The client may not be read for `wait` from `now` (it owes its rate that long).
    pub(crate) fn throttle(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.read_after = Some(self.read_after.map_or(until, |t| t.max(until)));
    }

    /// Whether the client may be read at `now`.
    pub(crate) fn client_readable(&self, now: Instant) -> bool {
        self.read_after.is_none_or(|t| now >= t)
    }

    /// When the client is closed if it stays silent.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        let since = match self.read_after {
            Some(t) => t.max(self.last_client),
            None => self.last_client,
        };
        self.idle.map(|idle| since + idle)
    }

    /// The nearest deadline, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        [self.idle_deadline(), self.read_after, self.next_ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time has reached `now`: what is due. A due PINGREQ moves the schedule on; an ended
    /// throttle is forgotten (its end still counts for the keep alive through `last_client`).
    pub(crate) fn expire(&mut self, now: Instant) -> Expired {
        if self.idle_deadline().is_some_and(|t| now >= t) {
            return Expired::KeepAlive;
        }
        if let Some(t) = self.read_after.filter(|t| now >= *t) {
            self.last_client = self.last_client.max(t);
            self.read_after = None;
        }
        if self.next_ping.is_some_and(|t| now >= t) {
            self.next_ping = self.ping_every.map(|every| now + every);
            return Expired::Ping;
        }
        Expired::Nothing
    }
}
