//! Listener transport options: which kind may carry which block, defaults, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{parse, Config};

fn parse_ok(text: &str) -> Config {
    match parse(text, Path::new("moat.yaml")) {
        Ok(cfg) => cfg,
        Err(err) => panic!("expected a valid config, got {err}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text, Path::new("moat.yaml")) {
        Ok(cfg) => panic!("expected an error, got {cfg:?}"),
        Err(err) => err.to_string(),
    }
}

fn one(listener: &str) -> String {
    format!("listeners:\n  - {listener}\n")
}

#[test]
fn wss_and_quic_get_their_defaults() {
    let cfg = parse_ok(
        "listeners:\n  - { name: w, kind: wss, bind: \"127.0.0.1:8443\" }\n  - { name: q, kind: quic, bind: \"127.0.0.1:14567\" }\nlimits: { max_packet_size: 1KiB }\n",
    );
    let ws = cfg.listeners[0].ws.as_ref().unwrap();
    assert_eq!(ws.path, "/mqtt");
    assert_eq!(
        ws.subprotocols,
        vec![Subprotocol::Mqtt, Subprotocol::MqttV31]
    );
    assert!(ws.allowed_origins.is_empty() && ws.trusted_proxies.is_empty());
    // Frames and messages are bounded by the MQTT packet limit, not tungstenite's 16/64 MiB.
    assert_eq!(ws.max_message_size, 1024 + WS_MESSAGE_SLACK);
    assert_eq!(ws.max_frame_size, 1024 + WS_MESSAGE_SLACK);
    assert_eq!(ws.upgrade_timeout, Duration::from_secs(10));
    assert!(!cfg.listeners[0].alpn_routing);
    assert!(cfg.listeners[0].quic.is_none());
    let quic = cfg.listeners[1].quic.as_ref().unwrap();
    assert_eq!(quic.idle_timeout, Duration::from_secs(60));
    assert!(cfg.listeners[1].ws.is_none());
}

#[test]
fn ws_options_are_parsed() {
    let cfg = parse_ok(&one(
        "{ name: w, kind: wss, bind: \"0.0.0.0:443\", alpn_routing: true, ws: { path: /ws, subprotocols: [mqtt], allowed_origins: [\"HTTPS://App.Example.com:8443\"], trusted_proxies: [10.0.0.0/8, \"::1\"], max_frame_size: 4KiB, max_message_size: 64KiB, upgrade_timeout: 3s } }",
    ));
    let l = &cfg.listeners[0];
    assert!(l.alpn_routing);
    let ws = l.ws.as_ref().unwrap();
    assert_eq!(ws.path, "/ws");
    assert_eq!(ws.subprotocols, vec![Subprotocol::Mqtt]);
    assert_eq!(ws.allowed_origins, vec!["https://app.example.com:8443"]);
    assert_eq!(ws.trusted_proxies.len(), 2);
    assert_eq!((ws.max_frame_size, ws.max_message_size), (4096, 65536));
    assert_eq!(ws.upgrade_timeout, Duration::from_secs(3));
}

#[test]
fn plain_ws_must_be_enabled_explicitly() {
    let err = parse_err(&one("{ name: w, kind: ws, bind: \"127.0.0.1:8080\" }"));
    assert!(
        err.starts_with("moat.yaml:2:22: listener 'w' is 'ws'"),
        "{err}"
    );
    assert!(err.contains("insecure_plaintext: true"), "{err}");
    let err = parse_err(&one(
        "{ name: w, kind: ws, bind: \"127.0.0.1:8080\", insecure_plaintext: false }",
    ));
    assert!(err.contains("insecure_plaintext: true"), "{err}");
    let cfg = parse_ok(&one(
        "{ name: w, kind: ws, bind: \"127.0.0.1:8080\", insecure_plaintext: true }",
    ));
    assert!(cfg.listeners[0].ws.is_some());
    let err = parse_err(&one(
        "{ name: t, kind: tls, bind: \"127.0.0.1:8883\", insecure_plaintext: true }",
    ));
    assert!(
        err.contains("'insecure_plaintext' is not valid on a 'tls' listener"),
        "{err}"
    );
}

#[test]
fn options_on_the_wrong_kind_are_refused() {
    let err = parse_err(&one(
        "{ name: t, kind: tls, bind: \"127.0.0.1:1\", ws: { path: /x } }",
    ));
    assert!(
        err.contains("'ws' is not valid on a 'tls' listener"),
        "{err}"
    );
    // ... unless the TLS listener routes by ALPN, which makes it speak WebSocket too.
    let cfg = parse_ok(&one(
        "{ name: t, kind: tls, bind: \"127.0.0.1:1\", alpn_routing: true, ws: { path: /x } }",
    ));
    assert_eq!(cfg.listeners[0].ws.as_ref().unwrap().path, "/x");
    let err = parse_err(&one(
        "{ name: q, kind: quic, bind: \"127.0.0.1:1\", alpn_routing: true }",
    ));
    assert!(
        err.contains("'alpn_routing' is not valid on a 'quic' listener"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: q, kind: wss, bind: \"127.0.0.1:1\", quic: {} }",
    ));
    assert!(
        err.contains("'quic' is not valid on a 'wss' listener"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: q, kind: quic, bind: \"127.0.0.1:1\", ws: {} }",
    ));
    assert!(
        err.contains("'ws' is not valid on a 'quic' listener"),
        "{err}"
    );
}

#[test]
fn bad_ws_values_are_refused_with_their_location() {
    let w = |ws: &str| {
        one(&format!(
            "{{ name: w, kind: wss, bind: \"127.0.0.1:1\", ws: {ws} }}"
        ))
    };
    let err = parse_err(&w("{ path: mqtt }"));
    assert!(
        err.starts_with("moat.yaml:2:60: invalid ws.path 'mqtt'"),
        "{err}"
    );
    let err = parse_err(&w("{ path: \"/a?b\" }"));
    assert!(err.contains("invalid ws.path"), "{err}");
    let err = parse_err(&w("{ subprotocols: [] }"));
    assert!(err.contains("ws.subprotocols is empty"), "{err}");
    let err = parse_err(&w("{ subprotocols: [mqtt, http] }"));
    assert!(
        err.contains("unknown WebSocket subprotocol 'http'"),
        "{err}"
    );
    for origin in ["\"*\"", "app.example.com", "\"https://a.example/path\""] {
        let err = parse_err(&w(&format!("{{ allowed_origins: [{origin}] }}")));
        assert!(err.contains("invalid origin"), "{origin}: {err}");
    }
    let err = parse_err(&w("{ trusted_proxies: [10.0.0.0/33] }"));
    assert!(
        err.contains("invalid address block '10.0.0.0/33' for ws.trusted_proxies[]"),
        "{err}"
    );
    let err = parse_err(&w("{ max_frame_size: 64KiB, max_message_size: 4KiB }"));
    assert!(err.contains("at most ws.max_message_size"), "{err}");
    let err = parse_err(&w("{ max_message_size: 64MiB }"));
    assert!(err.contains("from 128B to 16MiB"), "{err}");
    let err = parse_err(&w("{ upgrade_timeout: 0s }"));
    assert!(err.contains("ws.upgrade_timeout is '0s'"), "{err}");
    let err = parse_err(&w("{ pth: /mqtt }"));
    assert!(err.contains("unknown field 'pth'"), "{err}");
}

#[test]
fn quic_values() {
    let q = |quic: &str| {
        one(&format!(
            "{{ name: q, kind: quic, bind: \"127.0.0.1:1\", quic: {quic} }}"
        ))
    };
    let cfg = parse_ok(&q(
        "{ idle_timeout: 30s, deny_sources: [192.0.2.0/24, \"127.0.0.1\"] }",
    ));
    let quic = cfg.listeners[0].quic.as_ref().unwrap();
    assert_eq!(quic.idle_timeout, Duration::from_secs(30));
    assert_eq!(quic.deny_sources.len(), 2);
    let err = parse_err(&q("{ idle_timeout: 2h }"));
    assert!(err.contains("quic.idle_timeout"), "{err}");
    let err = parse_err(&q("{ deny_sources: [nope] }"));
    assert!(err.contains("quic.deny_sources[]"), "{err}");
}

#[test]
fn origins_are_normalised_like_browsers_send_them() {
    assert_eq!(
        normalise_origin("https://A.example"),
        Some("https://a.example".into())
    );
    assert_eq!(
        normalise_origin("http://[::1]:8080"),
        Some("http://[::1]:8080".into())
    );
    assert_eq!(normalise_origin("null"), None);
    assert_eq!(normalise_origin("https://a.example/"), None);
    assert_eq!(normalise_origin("https://"), None);
}

#[test]
fn client_certs_per_listener_override_the_tls_section() {
    let tls = "tls: { client_ca: ca.crt, client_certs: required }\n";
    let cfg = parse_ok(&format!(
        "{}{tls}",
        one("{ name: w, kind: wss, bind: \"127.0.0.1:1\", client_certs: none }")
    ));
    let l = &cfg.listeners[0];
    assert_eq!(l.client_certs, Some(ClientCerts::None));
    assert_eq!(l.tls(&cfg.tls).client_certs, ClientCerts::None);
    assert_eq!(cfg.tls.client_certs, ClientCerts::Required);
    // Certificates cannot be asked for without the CA that signs them.
    let err = parse_err(&one(
        "{ name: q, kind: quic, bind: \"127.0.0.1:1\", client_certs: optional }",
    ));
    assert!(err.contains("tls.client_ca is not set"), "{err}");
    let err = parse_err(&one(
        "{ name: w, kind: ws, bind: \"127.0.0.1:1\", insecure_plaintext: true, client_certs: none }",
    ));
    assert!(
        err.contains("'client_certs' is not valid on a 'ws' listener"),
        "{err}"
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies_and_a_tcp_listener() {
    let cfg = parse_ok(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", proxy_protocol: v2, trusted_proxies: [10.0.0.0/8, \"::1\"] }",
    ));
    let proxy = cfg.listeners[0].proxy.as_ref().unwrap();
    assert_eq!(proxy.version, ProxyProtocol::V2);
    assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
    assert!(proxy.trusts("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!proxy.trusts("192.0.2.1".parse().unwrap()));
    let cfg = parse_ok(&one(
        "{ name: w, kind: wss, bind: \"0.0.0.0:443\", proxy_protocol: any, trusted_proxies: [10.0.0.1] }",
    ));
    assert_eq!(
        cfg.listeners[0].proxy.as_ref().unwrap().version,
        ProxyProtocol::Any
    );
    assert!(
        parse_ok(&one("{ name: m, kind: tls, bind: \"0.0.0.0:8883\" }")).listeners[0]
            .proxy
            .is_none()
    );

    let err = parse_err(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", proxy_protocol: v1 }",
    ));
    assert!(
        err.contains("'proxy_protocol' but no 'trusted_proxies'"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", proxy_protocol: v1, trusted_proxies: [] }",
    ));
    assert!(
        err.contains("'proxy_protocol' but no 'trusted_proxies'"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", trusted_proxies: [10.0.0.1] }",
    ));
    assert!(
        err.contains("'trusted_proxies' but no 'proxy_protocol'"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", proxy_protocol: v3, trusted_proxies: [10.0.0.1] }",
    ));
    assert!(err.contains("v3"), "{err}");
    let err = parse_err(&one(
        "{ name: lb, kind: tls, bind: \"0.0.0.0:8883\", proxy_protocol: v2, trusted_proxies: [10.0.0.0/33] }",
    ));
    assert!(
        err.contains("invalid address block '10.0.0.0/33' for trusted_proxies[]"),
        "{err}"
    );
    let err = parse_err(&one(
        "{ name: q, kind: quic, bind: \"0.0.0.0:14567\", proxy_protocol: v2, trusted_proxies: [10.0.0.1] }",
    ));
    assert!(
        err.contains("'proxy_protocol' is not valid on a 'quic' listener"),
        "{err}"
    );
}
