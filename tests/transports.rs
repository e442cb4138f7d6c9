//! One engine behind every front door: the same refused CONNECTs get the same bytes back over
//! TLS, WSS and QUIC, open no upstream connection, and leak nothing pipelined behind them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::quic::QuicMqtt;
use common::ws as wsc;
use common::{packets, Harness, Opts};

/// Sends `bytes` over a fresh connection of `transport` and returns everything until the server
/// closes, plus whether it did close.
async fn exchange(
    h: &Harness,
    transport: &str,
    endpoint: &quinn::Endpoint,
    bytes: &[u8],
) -> (Vec<u8>, bool) {
    match transport {
        "tls" => {
            let mut s = h.tls(None).await;
            common::exchange(&mut s, bytes).await
        }
        "wss" => {
            let mut ws = wsc::wss_connect(
                h.addr_of("wss"),
                wsc::wss_tls(&h.pki.ca.cert),
                "/mqtt",
                &["mqtt"],
                &[],
            )
            .await
            .unwrap();
            wsc::send(&mut ws, bytes).await;
            let (_, got) = wsc::read_until_close(&mut ws).await;
            (got, true)
        }
        "quic" => {
            let mut m = QuicMqtt::open(endpoint, h.addr_of("quic"), h).await;
            m.write(bytes).await;
            m.read_until_close().await
        }
        other => unreachable!("{other}"),
    }
}

#[tokio::test]
async fn refused_connects_answer_the_same_on_tls_wss_and_quic() {
    let h = common::start(Opts {
        listeners: "  - { name: wss, kind: wss, bind: \"127.0.0.1:0\" }\n  - { name: quic, kind: quic, bind: \"127.0.0.1:0\" }\n".into(),
        ..Opts::default()
    })
    .await;
    let mut watch = h.broker_watch().await;
    let endpoint = common::quic::endpoint();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // 3.1.1: 0x04 bad user name or password, 0x05 not authorized.
        (
            "v4 wrong password",
            packets::connect_v4("c1", Some("alice"), Some("nope")),
            vec![0x20, 2, 0, 0x04],
        ),
        (
            "v4 unknown user",
            packets::connect_v4("c1", Some("mallory"), Some("pw")),
            vec![0x20, 2, 0, 0x04],
        ),
        (
            "v4 anonymous",
            packets::connect_v4("c1", None, None),
            vec![0x20, 2, 0, 0x05],
        ),
        // 5.0: 0x86 bad user name or password, 0x87 not authorized.
        (
            "v5 wrong password",
            packets::connect_v5("c1", Some("alice"), Some("nope")),
            vec![0x20, 3, 0, 0x86, 0],
        ),
        (
            "v5 unknown user",
            packets::connect_v5("c1", Some("mallory"), Some("pw")),
            vec![0x20, 3, 0, 0x86, 0],
        ),
        (
            "v5 anonymous",
            packets::connect_v5("c1", None, None),
            vec![0x20, 3, 0, 0x87, 0],
        ),
        // Not a CONNECT first: closed without an answer.
        ("publish first", packets::publish_qos0("x", b"y"), vec![]),
    ];
    for transport in ["tls", "wss", "quic"] {
        for (name, connect, expected) in &cases {
            let before = h.upstream_connects();
            // A pipelined publish behind the refused CONNECT must never be forwarded.
            let mut bytes = connect.clone();
            bytes.extend(packets::publish_qos0("leak/after-refused-connect", b"x"));
            let (got, closed) = exchange(&h, transport, &endpoint, &bytes).await;
            assert_eq!(&got, expected, "{transport}: {name}");
            assert!(closed, "{transport}: {name}: connection left open");
            assert_eq!(
                h.upstream_connects(),
                before,
                "{transport}: {name}: upstream opened"
            );
        }
    }
    assert_eq!(
        common::broker_saw_before_marker(&h, &mut watch).await,
        vec![]
    );
}
