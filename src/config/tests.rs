//! moat.yaml parsing: defaults, units, locations of errors, refusals.

// Tests may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

const MINIMAL: &str = "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:8883\" }\n";

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

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let cfg = parse_ok(MINIMAL);
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.tls, TlsSettings::default_for_dir(Path::new("")));
    assert_eq!(cfg.tls.client_certs, ClientCerts::None);
    assert!(cfg.tls.cert_identity);
    assert_eq!(cfg.broker, BrokerSettings::default());
    assert_eq!(cfg.policies, vec![PathBuf::from("policies/")]);
    assert_eq!(cfg.timeouts.tls_handshake, Duration::from_secs(10));
    assert_eq!(cfg.timeouts.connect, Duration::from_secs(10));
    assert_eq!(cfg.timeouts.upstream_connect, Duration::from_secs(5));
    assert_eq!(cfg.timeouts.shutdown_grace, Duration::from_secs(5));
    assert_eq!(cfg.limits.max_packet_size, 256 * 1024);
    assert_eq!(cfg.limits.max_connections, 10_000);
    assert!(!cfg.limits.max_connections_explicit);
    assert_eq!(cfg.limits.max_keepalive, 3600);
    assert!(!cfg.dev_certs, "certificate generation must be asked for");
    assert_eq!(cfg.log.format, LogFormat::Text);
}

#[test]
fn shipped_moat_yaml_equals_default_for_dir() {
    let text = include_str!("../../moat.yaml");
    let dir = Path::new("/srv/moat");
    let cfg = parse(text, &dir.join("moat.yaml")).unwrap();
    assert_eq!(cfg, Config::default_for_dir(dir));
}

#[test]
fn shipped_production_example_is_valid() {
    let text = include_str!("../../examples/production.yaml");
    let cfg = parse(text, Path::new("/etc/moat/moat.yaml")).unwrap();
    assert_eq!(cfg.listeners[0].bind, addr("0.0.0.0:8883"));
    assert_eq!(cfg.tls.client_certs, ClientCerts::Required);
    assert_eq!(
        cfg.tls.crls,
        vec![PathBuf::from("/etc/moat/tls/clients.crl")]
    );
    assert_eq!(cfg.policies, vec![PathBuf::from("/etc/moat/policies/")]);
    assert!(!cfg.dev_certs);
    assert_eq!(cfg.log.format, LogFormat::Json);
}

#[test]
fn relative_paths_join_the_config_folder_and_absolute_paths_stay() {
    let text =
        with("tls: { cert: a/server.crt, key: /abs/server.key }\npolicies: [p.yaml, /etc/x/]\n");
    let cfg = parse(text.as_str(), Path::new("/etc/moat/moat.yaml")).unwrap();
    assert_eq!(cfg.tls.cert, PathBuf::from("/etc/moat/a/server.crt"));
    assert_eq!(cfg.tls.key, PathBuf::from("/abs/server.key"));
    assert_eq!(
        cfg.policies,
        vec![PathBuf::from("/etc/moat/p.yaml"), PathBuf::from("/etc/x/")]
    );
}

#[test]
fn units_in_timeouts_and_limits() {
    let cfg = parse_ok(&with(
        "timeouts: { tls_handshake: 1.5s, connect: 500ms, upstream_connect: 1m, shutdown_grace: 0s }\n\
         limits: { max_packet_size: 1MiB, max_connections: 5, max_keepalive: 60s }\n",
    ));
    assert_eq!(cfg.timeouts.tls_handshake, Duration::from_millis(1500));
    assert_eq!(cfg.timeouts.connect, Duration::from_millis(500));
    assert_eq!(cfg.timeouts.upstream_connect, Duration::from_secs(60));
    assert_eq!(cfg.timeouts.shutdown_grace, Duration::ZERO);
    assert_eq!(cfg.limits.max_packet_size, 1024 * 1024);
    assert_eq!(cfg.limits.max_connections, 5);
    assert!(cfg.limits.max_connections_explicit);
    assert_eq!(cfg.limits.max_keepalive, 60);
}

#[test]
fn bad_units_are_refused_with_their_location() {
    let err = parse_err(&with("timeouts:\n  connect: 10\n"));
    assert!(
        err.starts_with("moat.yaml:4:12: invalid duration '10' for timeouts.connect"),
        "{err}"
    );
    let err = parse_err(&with("timeouts: { connect: soon }\n"));
    assert!(
        err.starts_with("moat.yaml:3:22: invalid duration 'soon'"),
        "{err}"
    );
    let err = parse_err(&with("timeouts: { connect: 0s }\n"));
    assert!(
        err.contains("timeouts.connect is '0s': expected more than 0s"),
        "{err}"
    );
    let err = parse_err(&with("timeouts: { connect: 2h }\n"));
    assert!(err.contains("at most 1h"), "{err}");
    let err = parse_err(&with("limits:\n  max_packet_size: garbage\n"));
    assert!(
        err.starts_with("moat.yaml:4:20: invalid size 'garbage'"),
        "{err}"
    );
    let err = parse_err(&with("limits: { max_packet_size: 64B }\n"));
    assert!(err.contains("from 128B to 16MiB"), "{err}");
    let err = parse_err(&with("limits: { max_packet_size: 32MiB }\n"));
    assert!(err.contains("'32MiB' (33554432 bytes)"), "{err}");
    let err = parse_err(&with("limits: { max_keepalive: 1.5s }\n"));
    assert!(err.contains("whole seconds"), "{err}");
    let err = parse_err(&with("limits: { max_keepalive: 70000s }\n"));
    assert!(err.contains("65535s"), "{err}");
    let err = parse_err(&with("limits: { max_connections: 0 }\n"));
    assert!(
        err.contains("limits.max_connections is 0: expected from 1"),
        "{err}"
    );
    let err = parse_err(&with("limits: { max_connections: -1 }\n"));
    assert!(err.starts_with("moat.yaml:3:"), "{err}");
}

#[test]
fn unknown_key_names_line_column_and_the_expected_keys() {
    let text = "listeners:\n  - name: mqtts\n    kind: tls\n    bnd: \"127.0.0.1:8883\"\n";
    assert_eq!(
        parse_err(text),
        "moat.yaml:4:5: unknown field 'bnd', expected one of 'name', 'kind', 'bind', 'alpn_routing', 'insecure_plaintext', 'ws', 'quic', 'client_certs', 'proxy_protocol', 'trusted_proxies'"
    );
    let err = parse_err(&with("tls: { cert: a, client_cert: required }\n"));
    assert!(
        err.starts_with("moat.yaml:3:17: unknown field 'client_cert'"),
        "{err}"
    );
    let err = parse_err(&with("listen: []\n"));
    assert!(
        err.starts_with("moat.yaml:3:1: unknown field 'listen'"),
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let err = parse_err(&with("tls:\n  cert: a.crt\n  cert: b.crt\n"));
    assert!(
        err.starts_with("moat.yaml:5:3: duplicate key 'cert'"),
        "{err}"
    );
    let err = parse_err(&with("dev_certs: true\ndev_certs: false\n"));
    assert!(err.contains("duplicate key 'dev_certs'"), "{err}");
}

#[test]
fn yaml_1_1_booleans_are_refused() {
    let err = parse_err(&with("dev_certs: yes\n"));
    assert!(err.starts_with("moat.yaml:3:12: "), "{err}");
}

#[test]
fn empty_and_listenerless_files_are_refused() {
    assert_eq!(
        parse_err(""),
        "moat.yaml: the file is empty: expected a mapping with at least 'listeners'"
    );
    assert_eq!(
        parse_err("# nothing\n"),
        "moat.yaml: the file is empty: expected a mapping with at least 'listeners'"
    );
    assert!(parse_err("listeners: []\n").starts_with("moat.yaml:1:12: 'listeners' is empty"));
    assert!(parse_err("dev_certs: true\n").contains("missing field 'listeners'"));
}

#[test]
fn listener_names_are_unique_and_plain() {
    let err = parse_err(&with(
        "  - { name: mqtts, kind: tls, bind: \"127.0.0.1:8884\" }\n",
    ));
    assert_eq!(
        err,
        "moat.yaml:3:13: duplicate listener name 'mqtts' (first used on line 2): names must be unique"
    );
    let err = parse_err("listeners: [{ name: \"a b\", kind: tls, bind: \"127.0.0.1:1\" }]\n");
    assert!(err.contains("invalid listener name 'a b'"), "{err}");
}

#[test]
fn listener_kinds_and_addresses() {
    let err = parse_err("listeners: [{ name: w, kind: http, bind: \"0.0.0.0:443\" }]\n");
    assert_eq!(
        err,
        "moat.yaml:1:30: unknown value 'http', expected one of 'tls', 'wss', 'ws', 'quic'"
    );
    let err = parse_err("listeners: [{ name: m, kind: tls, bind: \"localhost:8883\" }]\n");
    assert!(
        err.contains("invalid address 'localhost:8883' for listeners[].bind"),
        "{err}"
    );
    let cfg = parse_ok("listeners: [{ name: m, kind: tls, bind: \"[::]:8883\" }]\n");
    assert_eq!(cfg.listeners[0].bind, addr("[::]:8883"));
}

#[test]
fn embedded_broker_must_stay_on_loopback() {
    let err = parse_err(&with("broker:\n  embedded: { bind: \"0.0.0.0:1883\" }\n"));
    assert!(
        err.starts_with("moat.yaml:4:21: embedded broker address '0.0.0.0:1883'"),
        "{err}"
    );
    assert!(err.contains("not a loopback address"), "{err}");
    let err = parse_err(&with(
        "broker: { embedded: { bind_v5: \"10.0.0.1:1884\" } }\n",
    ));
    assert!(err.contains("broker.embedded.bind_v5"), "{err}");
    let cfg = parse_ok(&with(
        "broker: { embedded: { bind: \"[::1]:1883\", bind_v5: \"[::ffff:127.0.0.1]:1884\" } }\n",
    ));
    assert!(
        matches!(cfg.broker, BrokerSettings::Embedded { bind, .. } if bind == addr("[::1]:1883"))
    );
    let err = parse_err(&with(
        "broker: { embedded: { bind: \"127.0.0.1:1883\", bind_v5: \"127.0.0.1:1883\" } }\n",
    ));
    assert!(err.contains("one port per MQTT version"), "{err}");
}

#[test]
fn embedded_broker_link_is_memory_unless_loopback_is_asked_for() {
    let link = |cfg: Config| match cfg.broker {
        BrokerSettings::Embedded { link, .. } => link,
        other => panic!("expected the embedded broker, got {other:?}"),
    };
    assert_eq!(link(parse_ok(MINIMAL)), EmbeddedLink::Memory);
    let cfg = parse_ok(&with("broker: { embedded: { link: loopback } }\n"));
    assert_eq!(link(cfg), EmbeddedLink::Loopback);
    let cfg = parse_ok(&with("broker: { embedded: { link: memory } }\n"));
    assert_eq!(link(cfg), EmbeddedLink::Memory);
    let err = parse_err(&with("broker: { embedded: { link: unix } }\n"));
    assert!(err.starts_with("moat.yaml:"), "{err}");
    assert!(err.contains("memory") && err.contains("loopback"), "{err}");
}

fn upstream(cfg: &Config) -> &UpstreamSettings {
    match &cfg.broker {
        BrokerSettings::Upstream(up) => up,
        other => panic!("expected an upstream, got {other:?}"),
    }
}

fn host(host: &str, port: u16) -> UpstreamAddr {
    UpstreamAddr {
        host: host.into(),
        port,
    }
}

#[test]
fn broker_is_embedded_or_upstream() {
    // The per-version form of earlier releases still reads the same.
    let cfg = parse_ok(&with("broker: { upstream: { v3: \"10.0.0.5:1883\" } }\n"));
    let v3 = vec![host("10.0.0.5", 1883)];
    assert_eq!(upstream(&cfg).v3, v3);
    assert_eq!(upstream(&cfg).v5, v3);
    assert_eq!(upstream(&cfg).credentials, UpstreamCredentials::Identity);
    assert_eq!(upstream(&cfg).tls, None);
    let cfg = parse_ok(&with(
        "broker: { upstream: { v3: \"10.0.0.5:1883\", v5: \"[fd00::5]:1884\" } }\n",
    ));
    assert_eq!(upstream(&cfg).v3, v3);
    assert_eq!(upstream(&cfg).v5, vec![host("fd00::5", 1884)]);
    let err = parse_err(&with("broker: {}\n"));
    assert!(
        err.contains("exactly one of 'embedded' or 'upstream', found neither"),
        "{err}"
    );
    let err = parse_err(&with(
        "broker: { embedded: {}, upstream: { v3: \"10.0.0.5:1\" } }\n",
    ));
    assert!(err.contains("found both"), "{err}");
    for bad in [
        "broker_internal:1883",
        "10.0.0.5:0",
        "0.0.0.0:1883",
        "10.0.0.5",
        "broker.internal",
        "::1:1883",
        "broker.internal:99999",
    ] {
        let err = parse_err(&with(&format!(
            "broker: {{ upstream: {{ v3: \"{bad}\" }} }}\n"
        )));
        assert!(
            err.contains(&format!(
                "invalid broker address '{bad}' for broker.upstream.v3"
            )),
            "{err}"
        );
    }
}

#[test]
fn upstream_takes_names_lists_tls_and_credentials() {
    let cfg = parse_ok(&with("broker: { upstream: \"Broker.Internal:8883\" }\n"));
    assert_eq!(upstream(&cfg).v3, vec![host("broker.internal", 8883)]);
    let cfg = parse_ok(&with(
        "broker: { upstream: [\"localhost:1883\", \"10.0.0.6:1883\"] }\n",
    ));
    let both = vec![host("localhost", 1883), host("10.0.0.6", 1883)];
    assert_eq!(upstream(&cfg).v3, both);
    assert_eq!(upstream(&cfg).v5, both);
    assert_eq!(upstream(&cfg).strategy, UpstreamStrategy::Failover);
    let cfg = parse_ok(&with(
        "broker:\n  upstream:\n    addresses: [\"a.example:8883\", \"b.example:8883\"]\n    strategy: round_robin\n    backoff: 2s\n    tls: { ca: broker-ca.crt, server_name: mqtt.example, cert: moat.crt, key: moat.key }\n    credentials: { username: edge, password_file: secrets/broker.pw }\n",
    ));
    let up = upstream(&cfg);
    assert_eq!(up.strategy, UpstreamStrategy::RoundRobin);
    assert_eq!(up.backoff, Duration::from_secs(2));
    let tls = up.tls.as_ref().unwrap();
    assert_eq!(tls.ca, PathBuf::from("broker-ca.crt"));
    assert_eq!(tls.server_name.as_deref(), Some("mqtt.example"));
    assert_eq!(
        tls.client_cert,
        Some((PathBuf::from("moat.crt"), PathBuf::from("moat.key")))
    );
    assert_eq!(
        up.credentials,
        UpstreamCredentials::Fixed {
            username: "edge".into(),
            password_file: PathBuf::from("secrets/broker.pw"),
        }
    );
    let cfg = parse_ok(&with(
        "broker: { upstream: { addresses: [\"a.example:1883\"], credentials: { identity_as_username: true, password_file: pw } } }\n",
    ));
    assert_eq!(
        upstream(&cfg).credentials,
        UpstreamCredentials::IdentityWithPassword {
            password_file: PathBuf::from("pw")
        }
    );
    for (bad, message) in [
        ("[]", "the address list is empty"),
        ("[\"a.example:1\", \"a.example:1\"]", "the same address is listed twice"),
        ("{ addresses: [\"a.example:1\"], v3: \"b.example:1\" }", "not both"),
        ("{ strategy: failover }", "no broker address"),
        ("{ addresses: \"a.example:1\", strategy: random }", "failover or round_robin"),
        ("{ addresses: \"a.example:1\", tls: { ca: ca.crt, cert: c.crt } }", "both 'cert' and 'key'"),
        ("{ addresses: \"a.example:1\", credentials: { username: u } }", "needs a 'password_file'"),
        ("{ addresses: \"a.example:1\", credentials: { username: u, password: p } }", "only these keys"),
        ("{ addresses: \"a.example:1\", credentials: { username: u, identity_as_username: true, password_file: p } }", "not both"),
        ("{ addresses: \"a.example:1\", credentials: {} }", "identity_as_username"),
    ] {
        let err = parse_err(&with(&format!("broker: {{ upstream: {bad} }}\n")));
        assert!(err.contains(message), "{bad}: {err}");
    }
}

#[test]
fn client_certificate_settings_must_be_consistent() {
    let err = parse_err(&with("tls: { client_certs: required }\n"));
    assert!(
        err.starts_with(
            "moat.yaml:3:22: tls.client_certs is 'required' but tls.client_ca is not set"
        ),
        "{err}"
    );
    let err = parse_err(&with("tls: { client_ca: ca.crt }\n"));
    assert!(
        err.contains("tls.client_ca is set but tls.client_certs is 'none'"),
        "{err}"
    );
    let err = parse_err(&with("tls: { crls: [x.crl] }\n"));
    assert!(err.contains("tls.crls is set"), "{err}");
    let err = parse_err(&with("tls: { client_certs: sometimes }\n"));
    assert!(
        err.contains("unknown value 'sometimes', expected one of 'none', 'optional', 'required'"),
        "{err}"
    );
    let cfg = parse_ok(&with(
        "tls: { client_certs: required, client_ca: ca.crt, min_version: 1.3 }\n",
    ));
    assert_eq!(cfg.tls.min_version, TlsVersion::V1_3);
    assert_eq!(cfg.tls.client_ca, Some(PathBuf::from("ca.crt")));
    let err = parse_err(&with("tls: { min_version: \"1.1\" }\n"));
    assert!(err.contains("unsupported TLS version '1.1'"), "{err}");
    let err = parse_err(&with("tls: { cert: \"\" }\n"));
    assert!(err.contains("tls.cert is an empty path"), "{err}");
}

#[test]
fn expired_crls_warn_by_default_and_may_refuse() {
    let tls = "tls: { client_certs: required, client_ca: ca.crt, crls: [c.crl]";
    let cfg = parse_ok(&with(&format!("{tls} }}\n")));
    assert_eq!(cfg.tls.crl_expired, CrlExpired::Warn);
    let cfg = parse_ok(&with(&format!("{tls}, crl_expired: refuse }}\n")));
    assert_eq!(cfg.tls.crl_expired, CrlExpired::Refuse);
    let err = parse_err(&with(&format!("{tls}, crl_expired: ignore }}\n")));
    assert!(
        err.contains("unknown value 'ignore', expected one of 'warn', 'refuse'"),
        "{err}"
    );
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        parse_ok(&with("log: { format: json }\n")).log.format,
        LogFormat::Json
    );
    let err = parse_err(&with("log: { format: xml }\n"));
    assert!(
        err.contains("unknown value 'xml', expected one of 'text', 'json'"),
        "{err}"
    );
}

#[test]
fn log_level_is_a_filter_checked_at_load_with_its_place() {
    assert_eq!(parse_ok(MINIMAL).log.level, "info");
    let cfg = parse_ok(&with("log: { level: \"warn,moat=debug\" }\n"));
    assert_eq!(cfg.log.level, "warn,moat=debug");
    assert!(cfg.log.filter().is_ok());
    let line = MINIMAL.lines().count() + 1;
    for (level, says) in [
        ("info,moat=verbose", "invalid log.level 'info,moat=verbose'"),
        ("", "it is empty"),
        ("moat[=debug", "invalid log.level"),
    ] {
        let err = parse_err(&with(&format!("log: {{ level: \"{level}\" }}\n")));
        assert!(err.starts_with(&format!("moat.yaml:{line}:15: ")), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// Nine levels of nine aliases each: 387 million nodes if expanded.
fn billion_laughs(prefix: &str) -> String {
    let mut text = format!("{prefix}&a0 [x, x, x, x, x, x, x, x, x]");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            ", &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
        ));
    }
    text.push_str("]\n");
    text
}

#[test]
fn alias_bombs_fail_fast() {
    let top_level = billion_laughs("bomb: [");
    let in_listeners = billion_laughs("listeners: [");
    let in_policies = format!("{MINIMAL}{}", billion_laughs("policies: ["));
    for text in [top_level, in_listeners, in_policies] {
        let start = Instant::now();
        let err = parse(&text, Path::new("moat.yaml")).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.to_string().starts_with("moat.yaml:"), "{err}");
    }
}

#[test]
fn odd_inputs_never_panic() {
    let inputs = [
        "\0",
        "[",
        "{",
        "- - -",
        "listeners: {",
        "listeners: [[[[[]]]]]",
        "*x",
        "&a [*a]",
        "listeners: !!binary aGk=",
        "%YAML 9.9\n---\n",
        "---\n...\n---\n",
        "\u{feff}listeners: []",
        "listeners:\n\t- x",
        "? [a]\n: b",
        "listeners: [{name: m, kind: tls, bind: \"127.0.0.1:99999\"}]",
        "listeners: [{name: m, kind: tls, bind: \"\u{202e}\"}]",
    ];
    for input in inputs {
        let _ = parse(input, Path::new("moat.yaml"));
    }
    let deep = format!("listeners: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(&deep, Path::new("moat.yaml")).is_err());
}

#[test]
fn found_values_are_escaped_in_messages() {
    let err = parse_err("listeners: [{ name: \"a\\e[31mred\", kind: tls, bind: \"x\" }]\n");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("\\u{1b}"), "{err}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse(&text, Path::new("moat.yaml"));
        }

        #[test]
        fn parse_on_yaml_like_text(text in "(listeners|name|kind|tls|bind|broker|embedded|limits|timeouts|[-:{}\\[\\], \n#&*!|>'\"a-z0-9.])*") {
            let _ = parse(&text, Path::new("moat.yaml"));
        }
    }
}

#[test]
fn password_settings_have_documented_defaults_and_bounds() {
    let defaults = parse_ok(MINIMAL).passwords;
    assert_eq!(defaults.queue_wait, Duration::from_secs(2));
    assert_eq!(defaults.cache, Duration::from_secs(60));
    assert_eq!(defaults.cache_entries, 10_000);
    let cfg = parse_ok(&with(
        "passwords: { queue_wait: 500ms, cache: 0s, cache_entries: 50 }\n",
    ));
    assert_eq!(cfg.passwords.queue_wait, Duration::from_millis(500));
    assert_eq!(cfg.passwords.cache, Duration::ZERO);
    assert_eq!(cfg.passwords.cache_entries, 50);
    let err = parse_err(&with("passwords: { queue_wait: 0s }\n"));
    assert!(err.contains("passwords.queue_wait is '0s'"), "{err}");
    let err = parse_err(&with("passwords: { cache_entries: 0 }\n"));
    assert!(err.contains("passwords.cache_entries"), "{err}");
    let err = parse_err(&with("passwords: { cache_ttl: 5s }\n"));
    assert!(err.contains("cache_ttl"), "{err}");
}

#[test]
fn admin_is_off_unless_configured_and_loopback_needs_no_credential() {
    assert_eq!(parse_ok(MINIMAL).admin, None);
    let cfg = parse_ok(&with("admin: { listen: \"127.0.0.1:9100\" }\n"));
    assert_eq!(
        cfg.admin,
        Some(AdminSettings::loopback(addr("127.0.0.1:9100")))
    );
    let cfg = parse_ok(&with("admin: { unix: run/admin.sock }\n"));
    let admin = cfg.admin.unwrap();
    assert_eq!(admin.bind, AdminBind::Unix(PathBuf::from("run/admin.sock")));
}

#[test]
fn admin_off_loopback_needs_tls_and_a_token_file() {
    let err = parse_err(&with("admin:\n  listen: \"0.0.0.0:9100\"\n"));
    assert!(err.starts_with("moat.yaml:4:11: "), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("needs TLS and a bearer token"), "{err}");
    let err = parse_err(&with(
        "admin:\n  listen: \"10.0.0.2:9100\"\n  tls: { cert: a.crt, key: a.key }\n",
    ));
    assert!(err.contains("needs a bearer token:"), "{err}");
    let err = parse_err(&with(
        "admin:\n  listen: \"10.0.0.2:9100\"\n  token_file: token\n",
    ));
    assert!(err.contains("needs TLS:"), "{err}");
    let cfg = parse_ok(&with(
        "admin:\n  listen: \"10.0.0.2:9100\"\n  tls: { cert: a.crt, key: a.key }\n  token_file: token\n",
    ));
    let admin = cfg.admin.unwrap();
    assert_eq!(admin.token_file, Some(PathBuf::from("token")));
    assert_eq!(
        admin.tls,
        Some(AdminTls {
            cert: PathBuf::from("a.crt"),
            key: PathBuf::from("a.key")
        })
    );
}

#[test]
fn admin_never_shares_a_front_door_address() {
    let err = parse_err(&with("admin: { listen: \"127.0.0.1:8883\" }\n"));
    assert!(err.contains("is the address of listener 'mqtts'"), "{err}");
    // An unspecified address overlaps every address of that port.
    let err = parse_err(&with(
        "admin:\n  listen: \"0.0.0.0:8883\"\n  tls: { cert: a.crt, key: a.key }\n  token_file: t\n",
    ));
    assert!(err.contains("mqtts"), "{err}");
}

#[test]
fn admin_needs_exactly_one_address() {
    let err = parse_err(&with("admin: { max_connections: 4 }\n"));
    assert!(err.contains("exactly one of 'listen'"), "{err}");
    let err = parse_err(&with("admin: { listen: \"127.0.0.1:1\", unix: a.sock }\n"));
    assert!(err.contains("found both"), "{err}");
    let err = parse_err(&with("admin: { unix: a.sock, tls: { cert: a, key: b } }\n"));
    assert!(err.contains("Unix socket"), "{err}");
    let err = parse_err(&with(
        "admin: { listen: \"127.0.0.1:1\", max_connections: 0 }\n",
    ));
    assert!(err.contains("admin.max_connections"), "{err}");
}

#[test]
fn drain_settings_parse_and_refuse_a_bad_server_reference_with_its_line() {
    assert_eq!(parse_ok(MINIMAL).drain, DrainSettings::default());
    let cfg = parse_ok(&with(
        "drain:\n  period: 5s\n  server_reference: \"moat-b:8883\"\n",
    ));
    assert_eq!(cfg.drain.period, Duration::from_secs(5));
    assert_eq!(cfg.drain.server_reference.as_deref(), Some("moat-b:8883"));
    assert_eq!(
        parse_ok(&with("drain: { period: 0s }\n")).drain.period,
        Duration::ZERO
    );
    let err = parse_err(&with("drain:\n  server_reference: \"\"\n"));
    assert!(err.starts_with("moat.yaml:4:"), "{err}");
    assert!(err.contains("drain.server_reference"), "{err}");
    let err = parse_err(&with("drain: { period: 2h }\n"));
    assert!(err.contains("drain.period"), "{err}");
}

#[test]
fn the_embedded_broker_is_sized_to_the_connection_cap_unless_set_larger() {
    // Before: sized for 10,000 whatever the cap, reserving tables for connections moat would
    // never admit (`limits.max_connections: 100`).
    let cfg = parse_ok(&with("limits: { max_connections: 100 }\n"));
    assert_eq!(cfg.broker.embedded_capacity(100), Some(100));
    let cfg = parse_ok(&with(
        "broker: { embedded: { bind: \"127.0.0.1:1883\", max_connections: 500 } }\n",
    ));
    assert_eq!(cfg.broker.embedded_capacity(100), Some(500));
    // Never below the cap.
    assert_eq!(cfg.broker.embedded_capacity(1000), Some(1000));
    let cfg = parse_ok(&with("broker: { upstream: { v3: \"10.0.0.5:1883\" } }\n"));
    assert_eq!(cfg.broker.embedded_capacity(100), None);
}
