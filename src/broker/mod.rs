//! The broker segment: where authorized traffic goes.
//!
//! A session only needs a [`BrokerTarget`]: one loopback (or internal) address per MQTT
//! version, the credentials moat presents upstream, and a health flag. Whether that target is
//! the embedded rumqttd ([`embedded`]) or an external broker is decided once at start-up.

pub mod embedded;
pub(crate) mod link;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::mqtt::ProtocolVersion;

/// Where a session opens its upstream connection, and how it proves it is moat.
#[derive(Clone, Debug)]
pub struct BrokerTarget {
    /// Upstream for MQTT 3.1 and 3.1.1 clients (3.1 is translated to 3.1.1).
    pub v3: SocketAddr,
    /// Upstream for MQTT 5.0 clients (rumqttd serves 5.0 on its own listener).
    pub v5: SocketAddr,
    /// Password moat puts in every upstream CONNECT; the username is the client's identity.
    /// `None` for external brokers that trust the network segment.
    pub password: Option<Arc<str>>,
    /// Cleared when the embedded broker dies, so new clients get "server unavailable".
    pub health: Arc<Health>,
}

impl BrokerTarget {
    /// An external broker reached over the isolated segment.
    pub fn external(v3: SocketAddr, v5: SocketAddr) -> Self {
        BrokerTarget {
            v3,
            v5,
            password: None,
            health: Arc::new(Health::default()),
        }
    }

    /// The address that speaks this client's protocol version.
    pub fn addr_for(&self, version: ProtocolVersion) -> SocketAddr {
        match version {
            ProtocolVersion::V5 => self.v5,
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => self.v3,
        }
    }
}

/// Whether the broker behind moat is believed to be alive.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
        }
    }
}

// === impl Health ===

impl Health {
    /// True while the broker is believed to be serving.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks the broker dead: moat fails closed from now on.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
    }
}
