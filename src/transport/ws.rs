//! WebSocket upgrade (tokio-tungstenite, server side) over an accepted TCP or TLS stream.
//!
//! The HTTP upgrade is the only HTTP moat speaks, and it is judged before any MQTT byte is read:
//! the configured path or 404; a subprotocol moat speaks (`mqtt`, optionally `mqttv3.1`) or 400
//! ([MQTT-6.0.0-3], [MQTT-6.0.0-4]: the answer names exactly one); the Origin allowlist or 403
//! (fails closed); `X-Forwarded-For` only from a trusted proxy. The whole upgrade runs under
//! `ws.upgrade_timeout`, and tungstenite caps the request at 64 KiB. Frame and message sizes are
//! bounded by the listener's settings, far below tungstenite's defaults (16 MiB / 64 MiB).
//!
//! No policy here: the session decides who the client is. The one identity question the upgrade
//! answers is catalogue §D.60: a browser page (it sends `Origin`) must not ride on a client
//! certificate the browser presented for the victim, unless its origin is allowed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::forwarded;
use super::ws_stream::WsBytes;
use super::{Peer, TransportKind};
use crate::config::{normalise_origin, Subprotocol, WsSettings};

/// Bytes tungstenite reads from the socket at a time.
const READ_BUFFER: usize = 8 * 1024;
/// Most bytes queued for a slow WebSocket reader before writes wait.
const MAX_WRITE_BUFFER: usize = 512 * 1024;

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The client did not finish the upgrade request in time.
    #[error("WebSocket upgrade timed out after {0:?}")]
    Timeout(Duration),
    /// The request was well-formed but not acceptable; the client got this HTTP status.
    #[error("WebSocket upgrade refused with {status}: {reason}")]
    Refused {
        /// HTTP status sent.
        status: u16,
        /// Why.
        reason: &'static str,
    },
    /// Not a WebSocket upgrade at all, or the connection failed during it.
    #[error("WebSocket upgrade failed: {0}")]
    Handshake(String),
}

/// What the upgrade callback decided; `A`: what admission on the client's address gave.
enum Verdict<A> {
    Accepted {
        forwarded: Option<std::net::IpAddr>,
        admitted: Option<A>,
    },
    Refused {
        status: u16,
        reason: &'static str,
    },
}

/// Admission on the client's address, run once the request names it: `None` refuses (403).
pub type Admit<'a, A> = &'a mut (dyn FnMut(SocketAddr) -> Option<A> + Send);

/// Judges the upgrade request; runs once, inside tungstenite's handshake.
struct Judge<'a, 'b, A> {
    settings: &'a WsSettings,
    peer: &'a Peer,
    verdict: &'a mut Option<Verdict<A>>,
    admit: Option<Admit<'b, A>>,
}

// === impl Judge ===

impl<A> Callback for Judge<'_, '_, A> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let judged = judge(self.settings, self.peer, request).and_then(|(protocol, forwarded)| {
            // Last: the request is acceptable, so its client address is the one to admit.
            let admitted = match self.admit {
                None => None,
                Some(admit) => {
                    let client = forwarded.map_or(self.peer.addr, |ip| {
                        super::peer_addr(SocketAddr::new(ip, 0))
                    });
                    let admitted = admit(client);
                    if admitted.is_none() {
                        return Err((StatusCode::FORBIDDEN, "client address refused by admission"));
                    }
                    admitted
                }
            };
            Ok((protocol, forwarded, admitted))
        });
        match judged {
            Ok((protocol, forwarded, admitted)) => {
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static(protocol.as_str()),
                );
                *self.verdict = Some(Verdict::Accepted {
                    forwarded,
                    admitted,
                });
                Ok(response)
            }
            Err((status, reason)) => {
                *self.verdict = Some(Verdict::Refused {
                    status: status.as_u16(),
                    reason,
                });
                let mut refusal = ErrorResponse::new(Some(format!("{reason}\n")));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    }
}

type Judgement = Result<(Subprotocol, Option<std::net::IpAddr>), (StatusCode, &'static str)>;

/// The decision on one upgrade request: the subprotocol to answer and the forwarded client
/// address, or the HTTP status and reason to refuse with.
fn judge(settings: &WsSettings, peer: &Peer, request: &Request) -> Judgement {
    if request.uri().path() != settings.path {
        return Err((StatusCode::NOT_FOUND, "no WebSocket endpoint at this path"));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // [MQTT-6.0.0-3] the client includes "mqtt"; [MQTT-6.0.0-4] the server selects one it offered.
    let Some(protocol) = settings
        .subprotocols
        .iter()
        .copied()
        .find(|p| offered.contains(&p.as_str()))
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            "MQTT-6.0.0-3: the client must offer the WebSocket subprotocol 'mqtt'",
        ));
    };
    let mut origins = request.headers().get_all("origin").iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => None,
        (Some(o), None) => Some(
            o.to_str()
                .ok()
                .and_then(normalise_origin)
                .unwrap_or_default(),
        ),
        (Some(_), Some(_)) => return Err((StatusCode::BAD_REQUEST, "more than one Origin")),
    };
    match (&origin, settings.allowed_origins.is_empty()) {
        (Some(o), false) if settings.allowed_origins.contains(o) => {}
        (_, false) => return Err((StatusCode::FORBIDDEN, "origin not allowed")),
        // §D.60: a page in a browser must not publish as the certificate the browser presented.
        (Some(_), true) if peer.cert_cn.is_some() => {
            return Err((
                StatusCode::FORBIDDEN,
                "a browser origin with a client certificate needs ws.allowed_origins",
            ))
        }
        (_, true) => {}
    }
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    let client = forwarded::client_address(peer.addr.ip(), &forwarded, &settings.trusted_proxies)
        .map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "unusable X-Forwarded-For from a trusted proxy",
        )
    })?;
    Ok((protocol, client))
}

/// Runs the upgrade on `stream` under the listener's deadline. On success the peer's kind is
/// `kind` and, behind a trusted proxy, its address is the forwarded client's. With `admit`,
/// an acceptable request is admitted on that address before the answer goes out (`None` from
/// it is a 403), and its result is returned.
pub async fn upgrade<S, A>(
    stream: S,
    mut peer: Peer,
    settings: &WsSettings,
    kind: TransportKind,
    admit: Option<Admit<'_, A>>,
) -> Result<(WsBytes<S>, Peer, Option<A>), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_frame_size(Some(settings.max_frame_size))
        .max_message_size(Some(settings.max_message_size))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let mut verdict = None;
    let judge = Judge {
        settings,
        peer: &peer,
        verdict: &mut verdict,
        admit,
    };
    let deadline = settings.upgrade_timeout;
    let upgraded = tokio::time::timeout(
        deadline,
        tokio_tungstenite::accept_hdr_async_with_config(stream, judge, Some(config)),
    )
    .await
    .map_err(|_| WsError::Timeout(deadline))?;
    let (ws, admitted) = match (upgraded, verdict) {
        (
            Ok(ws),
            Some(Verdict::Accepted {
                forwarded,
                admitted,
            }),
        ) => {
            if let Some(ip) = forwarded {
                peer.via = Some(peer.addr);
                peer.addr = super::peer_addr(SocketAddr::new(ip, 0));
            }
            (ws, admitted)
        }
        (_, Some(Verdict::Refused { status, reason })) => {
            return Err(WsError::Refused { status, reason })
        }
        (Err(e), _) => return Err(WsError::Handshake(e.to_string())),
        (Ok(_), None) => return Err(WsError::Handshake("upgrade without a verdict".into())),
    };
    peer.kind = kind;
    Ok((WsBytes::new(ws), peer, admitted))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::config::WsSettings;

    fn peer(cert: bool) -> Peer {
        Peer {
            addr: "192.0.2.1:5000".parse().unwrap(),
            listener: Arc::from("wss"),
            kind: TransportKind::Tls,
            sni: None,
            alpn: None,
            cert_cn: cert.then(|| "dev".to_owned()),
            cert: None,
            via: None,
        }
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn status(j: Judgement) -> Option<u16> {
        j.err().map(|(s, _)| s.as_u16())
    }

    #[test]
    fn path_and_subprotocol_mqtt_6_0_0_3_and_mqtt_6_0_0_4() {
        let s = WsSettings::defaults(1024);
        let ok = judge(
            &s,
            &peer(false),
            &request("/mqtt", &[("sec-websocket-protocol", "mqtt")]),
        );
        assert_eq!(ok.unwrap().0, Subprotocol::Mqtt);
        let r = request("/other", &[("sec-websocket-protocol", "mqtt")]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(404));
        let r = request("/mqtt", &[]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(400));
        // One offered value is selected, the server's preference first.
        let r = request(
            "/mqtt",
            &[("sec-websocket-protocol", "evil, mqttv3.1, mqtt")],
        );
        assert_eq!(judge(&s, &peer(false), &r).unwrap().0, Subprotocol::Mqtt);
        let r = request("/mqtt", &[("sec-websocket-protocol", "mqttv3.1")]);
        assert_eq!(judge(&s, &peer(false), &r).unwrap().0, Subprotocol::MqttV31);
        let strict = WsSettings {
            subprotocols: vec![Subprotocol::Mqtt],
            ..WsSettings::defaults(1024)
        };
        assert_eq!(status(judge(&strict, &peer(false), &r)), Some(400));
    }

    #[test]
    fn origin_allowlist_fails_closed() {
        let s = WsSettings {
            allowed_origins: vec!["https://app.example.com".into()],
            ..WsSettings::defaults(1024)
        };
        let proto = ("sec-websocket-protocol", "mqtt");
        let r = request("/mqtt", &[proto, ("origin", "https://APP.example.com")]);
        assert!(judge(&s, &peer(true), &r).is_ok());
        let r = request("/mqtt", &[proto, ("origin", "https://evil.example")]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(403));
        let r = request("/mqtt", &[proto]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(403));
        let r = request("/mqtt", &[proto, ("origin", "null")]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(403));
    }

    #[test]
    fn browser_with_a_client_certificate_needs_an_allowlist() {
        let s = WsSettings::defaults(1024);
        let proto = ("sec-websocket-protocol", "mqtt");
        let r = request("/mqtt", &[proto, ("origin", "https://evil.example")]);
        assert_eq!(status(judge(&s, &peer(true), &r)), Some(403));
        // Without a certificate the page has nothing of the victim's to ride on.
        assert!(judge(&s, &peer(false), &r).is_ok());
        // Non-browser clients send no Origin.
        assert!(judge(&s, &peer(true), &request("/mqtt", &[proto])).is_ok());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proto = ("sec-websocket-protocol", "mqtt");
        let xff = ("x-forwarded-for", "203.0.113.7");
        let s = WsSettings::defaults(1024);
        let r = request("/mqtt", &[proto, xff]);
        assert_eq!(judge(&s, &peer(false), &r).unwrap().1, None);
        let s = WsSettings {
            trusted_proxies: vec!["192.0.2.0/24".parse().unwrap()],
            ..WsSettings::defaults(1024)
        };
        let got = judge(&s, &peer(false), &r).unwrap().1;
        assert_eq!(got, Some("203.0.113.7".parse().unwrap()));
        let r = request("/mqtt", &[proto, ("x-forwarded-for", "bogus")]);
        assert_eq!(status(judge(&s, &peer(false), &r)), Some(400));
    }
}
