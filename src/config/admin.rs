//! `admin:`: where the admin listener (metrics, health, runtime control) listens and how it
//! is protected.
//!
//! Why it is separate: the rules are few but strict, and they are about exposure, not about
//! MQTT. Off when the section is absent. On loopback or a Unix socket nobody else can reach it,
//! so no credential is needed; anywhere else it must serve TLS and demand a bearer token read
//! from a file, and it may never share an address with a front door. Pure: paths are joined,
//! not opened (the token file is read at start).

use std::net::SocketAddr;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::Check;
use super::error::{quoted, ConfigError, ConfigErrorKind as Kind, Position};
use super::{AdminBind, AdminSettings, AdminTls, Listener};

/// Admin connections served at once when moat.yaml does not say.
const DEFAULT_ADMIN_CONNECTIONS: usize = 16;
/// Most admin connections moat.yaml may allow: the admin port is for a few scrapers and
/// operators, never a crowd.
const MAX_ADMIN_CONNECTIONS: u64 = 1024;

/// `admin:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// TCP `IP:PORT`: loopback needs no credential; any other address needs `tls` and
    /// `token_file`.
    #[schemars(with = "Option<String>")]
    listen: Option<Spanned<String>>,
    /// A Unix socket path (mode 0660).
    #[schemars(with = "Option<String>")]
    unix: Option<Spanned<String>>,
    /// Server certificate and key of the admin listener (its own, not the front doors').
    #[schemars(with = "Option<RawAdminTls>")]
    tls: Option<Spanned<RawAdminTls>>,
    /// A file holding the bearer token (one line, at least 16 characters).
    #[schemars(with = "Option<String>")]
    token_file: Option<Spanned<String>>,
    /// Admin connections served at once (1 to 1024, default 16).
    #[schemars(with = "Option<u64>")]
    max_connections: Option<Spanned<u64>>,
}

/// `admin.tls:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdminTls {
    /// Certificate chain (PEM).
    #[schemars(with = "String")]
    cert: Spanned<String>,
    /// Private key (PEM).
    #[schemars(with = "String")]
    key: Spanned<String>,
}

// === impl Check (admin:) ===

impl Check<'_> {
    /// Validates `admin:` against the front doors it must never share an address with.
    pub(super) fn admin(
        &self,
        raw: &Spanned<RawAdmin>,
        listeners: &[Listener],
    ) -> Result<AdminSettings, ConfigError> {
        let admin = &raw.value;
        let bind = match (&admin.listen, &admin.unix) {
            (Some(listen), None) => AdminBind::Tcp(self.admin_addr(listen, listeners)?),
            (None, Some(unix)) => AdminBind::Unix(self.path(unix, "admin.unix")?),
            (None, None) => return Err(self.err_at(raw, Kind::AdminChoice { found: "neither" })),
            (Some(_), Some(_)) => return Err(self.err_at(raw, Kind::AdminChoice { found: "both" })),
        };
        let tls = match &admin.tls {
            None => None,
            Some(tls) => Some(AdminTls {
                cert: self.path(&tls.value.cert, "admin.tls.cert")?,
                key: self.path(&tls.value.key, "admin.tls.key")?,
            }),
        };
        if let (AdminBind::Unix(_), Some(tls)) = (&bind, &admin.tls) {
            return Err(self.err_at(tls, Kind::AdminTlsOnUnix));
        }
        let token_file = match &admin.token_file {
            None => None,
            Some(file) => Some(self.path(file, "admin.token_file")?),
        };
        if let (AdminBind::Tcp(addr), Some(listen)) = (&bind, &admin.listen) {
            if !addr.ip().to_canonical().is_loopback() && (tls.is_none() || token_file.is_none()) {
                let missing = match (&tls, &token_file) {
                    (None, None) => "TLS and a bearer token",
                    (None, Some(_)) => "TLS",
                    _ => "a bearer token",
                };
                let found = quoted(&listen.value);
                return Err(self.err_at(listen, Kind::AdminExposed { found, missing }));
            }
        }
        let max_connections = match &admin.max_connections {
            None => DEFAULT_ADMIN_CONNECTIONS,
            Some(max) => match usize::try_from(max.value) {
                Ok(n) if (1..=MAX_ADMIN_CONNECTIONS).contains(&max.value) => n,
                _ => {
                    return Err(self.err_at(
                        max,
                        Kind::OutOfRange {
                            field: "admin.max_connections",
                            found: max.value.to_string(),
                            expected: "from 1 to 1024",
                        },
                    ))
                }
            },
        };
        Ok(AdminSettings {
            bind,
            tls,
            token_file,
            max_connections,
        })
    }

    /// The admin TCP address: never one a front door listens on (port 0 picks a free port, so
    /// it cannot clash).
    fn admin_addr(
        &self,
        raw: &Spanned<String>,
        listeners: &[Listener],
    ) -> Result<SocketAddr, ConfigError> {
        let addr = self.socket_addr(raw, "admin.listen")?;
        let clash = listeners.iter().find(|l| {
            l.bind.port() == addr.port()
                && addr.port() != 0
                && (l.bind.ip() == addr.ip()
                    || l.bind.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some(listener) = clash {
            let found = quoted(&raw.value);
            let name = quoted(&listener.name);
            return Err(self.err(
                Position::of_spanned(raw),
                Kind::AdminOnFrontDoor { found, name },
            ));
        }
        Ok(addr)
    }
}
