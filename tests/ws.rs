//! MQTT over WebSocket (WSS, plain WS, ALPN routing) against the real listener and embedded
//! broker: the upgrade's refusals, frame handling (MQTT-6.0.0-1/-2/-3), limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use bytes::Bytes;
use common::ws::{self as wsc, Wss};
use common::{packets, Harness, Opts};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];

async fn start(ws_options: &str) -> Harness {
    common::start(Opts {
        listeners: format!("  - {{ name: wss, kind: wss, bind: \"127.0.0.1:0\"{ws_options} }}\n"),
        ..Opts::default()
    })
    .await
}

async fn wss(h: &Harness) -> Wss {
    wsc::wss_connect(
        h.addr_of("wss"),
        wsc::wss_tls(&h.pki.ca.cert),
        "/mqtt",
        &["mqtt"],
        &[],
    )
    .await
    .unwrap()
}

async fn connect_alice(ws: &mut Wss, id: &str) {
    wsc::send(
        ws,
        &packets::connect_v4(id, Some("alice"), Some("alice-pw")),
    )
    .await;
    assert_eq!(wsc::read_bytes(ws, 4).await, CONNACK_OK);
}

#[tokio::test]
async fn packets_split_across_frames_and_batched_in_one_frame_mqtt_6_0_0_2() {
    let h = start("").await;
    let mut watch = h.broker_watch().await;
    let mut ws = wss(&h).await;
    // CONNECT cut into three binary messages.
    let connect = packets::connect_v4("split", Some("alice"), Some("alice-pw"));
    for part in [&connect[..3], &connect[3..10], &connect[10..]] {
        wsc::send(&mut ws, part).await;
    }
    assert_eq!(wsc::read_bytes(&mut ws, 4).await, CONNACK_OK);
    // One PUBLISH as one fragmented message (binary FIN=0, continuation, a ping in between,
    // continuation FIN=1): RFC 6455 §5.4 reassembly.
    let publish = packets::publish_qos0("ws/fragmented", b"in three frames");
    let frames = [
        Frame::message(
            Bytes::copy_from_slice(&publish[..4]),
            OpCode::Data(Data::Binary),
            false,
        ),
        Frame::message(
            Bytes::copy_from_slice(&publish[4..9]),
            OpCode::Data(Data::Continue),
            false,
        ),
        Frame::ping(Bytes::from_static(b"p")),
        Frame::message(
            Bytes::copy_from_slice(&publish[9..]),
            OpCode::Data(Data::Continue),
            true,
        ),
    ];
    for frame in frames {
        ws.send(Message::Frame(frame)).await.unwrap();
    }
    // Two PUBLISHes and a PINGREQ in one binary message.
    let mut batch = packets::publish_qos0("ws/batched", b"one");
    batch.extend(packets::publish_qos0("ws/batched", b"two"));
    batch.extend(PINGREQ);
    wsc::send(&mut ws, &batch).await;
    assert_eq!(wsc::read_bytes(&mut ws, 2).await, PINGRESP);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(
            watch
                .next()
                .await
                .expect("publish never reached the broker"),
        );
    }
    assert_eq!(
        seen,
        vec![
            ("ws/fragmented".to_string(), b"in three frames".to_vec()),
            ("ws/batched".to_string(), b"one".to_vec()),
            ("ws/batched".to_string(), b"two".to_vec()),
        ]
    );
}

#[tokio::test]
async fn text_frame_closes_with_1003_and_reaches_nothing_mqtt_6_0_0_1() {
    let h = start("").await;
    let mut watch = h.broker_watch().await;
    let before = h.upstream_connects();
    let mut ws = wss(&h).await;
    // Catalogue §D.55: CONNECT bytes in a text frame; this one happens to be valid UTF-8.
    let connect = packets::connect_v4("text", None, None);
    ws.send(Message::text(String::from_utf8(connect).unwrap()))
        .await
        .unwrap();
    let (code, got) = wsc::read_until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Unsupported));
    assert!(got.is_empty(), "answered a text frame: {got:?}");
    // This one is not (the credential flags byte): same answer.
    let mut ws = wss(&h).await;
    let connect = packets::connect_v4("text", Some("alice"), Some("alice-pw"));
    let frame = Frame::message(Bytes::from(connect), OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let (code, got) = wsc::read_until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Unsupported));
    assert!(got.is_empty(), "answered a text frame: {got:?}");
    assert_eq!(h.upstream_connects(), before);
    // A text frame after a good CONNECT ends the session too, and nothing in it is forwarded.
    let mut ws = wss(&h).await;
    connect_alice(&mut ws, "text-later").await;
    let publish = packets::publish_qos0("leak/text", b"x");
    let frame = Frame::message(Bytes::from(publish), OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let (code, _) = wsc::read_until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Unsupported));
    assert_eq!(
        common::broker_saw_before_marker(&h, &mut watch).await,
        vec![]
    );
}

#[tokio::test]
async fn wrong_path_missing_subprotocol_and_plain_http_are_refused_mqtt_6_0_0_3() {
    let h = start("").await;
    let addr = h.addr_of("wss");
    let tls = wsc::wss_tls(&h.pki.ca.cert);
    let status =
        wsc::refused_status(wsc::wss_connect(addr, tls.clone(), "/other", &["mqtt"], &[]).await);
    assert_eq!(status, 404);
    let status = wsc::refused_status(wsc::wss_connect(addr, tls.clone(), "/mqtt", &[], &[]).await);
    assert_eq!(status, 400);
    let status = wsc::refused_status(
        wsc::wss_connect(addr, tls.clone(), "/mqtt", &["evil", "wamp"], &[]).await,
    );
    assert_eq!(status, 400);
    // Both names MQTT clients use are accepted; exactly one is answered [MQTT-6.0.0-4].
    wsc::wss_connect(addr, tls.clone(), "/mqtt", &["mqttv3.1"], &[])
        .await
        .unwrap();
    wsc::wss_connect(addr, tls.clone(), "/mqtt", &["evil", "mqtt"], &[])
        .await
        .unwrap();
    // Plain HTTP without an upgrade (catalogue §D.59): refused, the listener keeps serving.
    let mut s = common::tls_connect(addr, tls.clone()).await.unwrap();
    let (got, closed) =
        common::exchange(&mut s, b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(closed, "plain GET left the connection open");
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got}");
    let mut ws = wss(&h).await;
    connect_alice(&mut ws, "after-refusals").await;
    assert_eq!(h.upstream_connects(), 1);
}

#[tokio::test]
async fn cross_protocol_alpn_is_refused_on_wss_and_mqtts() {
    let h = start("").await;
    let addr = h.addr_of("wss");
    // Catalogue §F.83: `mqtt` or `h2` to the WSS listener → no_application_protocol.
    for alpn in [&b"mqtt"[..], b"h2"] {
        let mut config = (*h.client_config(None)).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let result = common::tls_connect(addr, std::sync::Arc::new(config)).await;
        assert!(result.is_err(), "ALPN {alpn:?} accepted on wss");
    }
    // And the other way round: HTTP on the MQTT-over-TLS listener.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut config = (*h.client_config(None)).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let result = common::tls_connect(h.addr, std::sync::Arc::new(config)).await;
        assert!(result.is_err(), "ALPN {alpn:?} accepted on mqtts");
    }
    // No ALPN at all is a WebSocket client that does not send it.
    let no_alpn = h.client_config(None);
    wsc::wss_connect(addr, no_alpn, "/mqtt", &["mqtt"], &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn alpn_routing_serves_mqtt_and_websocket_on_one_port() {
    let h = common::start(Opts {
        listeners: "  - { name: wss, kind: wss, bind: \"127.0.0.1:0\", alpn_routing: true }\n"
            .into(),
        ..Opts::default()
    })
    .await;
    let addr = h.addr_of("wss");
    // ALPN `mqtt` → raw MQTT over TLS.
    let mut config = (*h.client_config(None)).clone();
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    let mut raw = common::tls_connect(addr, std::sync::Arc::new(config))
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    raw.write_all(&packets::connect_v4("raw", Some("alice"), Some("alice-pw")))
        .await
        .unwrap();
    assert_eq!(common::read_exact(&mut raw, 4).await, CONNACK_OK);
    // `http/1.1` → WebSocket.
    let mut ws = wsc::wss_connect(addr, wsc::wss_tls(&h.pki.ca.cert), "/mqtt", &["mqtt"], &[])
        .await
        .unwrap();
    connect_alice(&mut ws, "routed-ws").await;
    // No ALPN → WebSocket too (browsers and libraries that send none).
    let mut ws = wsc::wss_connect(addr, h.client_config(None), "/mqtt", &["mqtt"], &[])
        .await
        .unwrap();
    connect_alice(&mut ws, "routed-none").await;
    // `h2` → refused.
    let mut config = (*h.client_config(None)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    assert!(common::tls_connect(addr, std::sync::Arc::new(config))
        .await
        .is_err());
}

#[tokio::test]
async fn origin_allowlist_fails_closed() {
    let h = start(", ws: { allowed_origins: [\"https://console.example.com\"] }").await;
    let addr = h.addr_of("wss");
    let tls = wsc::wss_tls(&h.pki.ca.cert);
    let ok = [("origin", "https://console.example.com")];
    let mut ws = wsc::wss_connect(addr, tls.clone(), "/mqtt", &["mqtt"], &ok)
        .await
        .unwrap();
    connect_alice(&mut ws, "origin-ok").await;
    let evil = [("origin", "https://evil.example")];
    let status =
        wsc::refused_status(wsc::wss_connect(addr, tls.clone(), "/mqtt", &["mqtt"], &evil).await);
    assert_eq!(status, 403);
    let status = wsc::refused_status(wsc::wss_connect(addr, tls, "/mqtt", &["mqtt"], &[]).await);
    assert_eq!(status, 403);
}

#[tokio::test]
async fn browser_origin_with_client_certificate_needs_an_allowlist() {
    // Catalogue §D.60: a hostile page riding on the certificate the browser presents.
    let h = start("").await;
    let addr = h.addr_of("wss");
    let cert = h.pki.client("device-7");
    let mut config = (*h.client_config(Some(&cert))).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = std::sync::Arc::new(config);
    let evil = [("origin", "https://evil.example")];
    let status =
        wsc::refused_status(wsc::wss_connect(addr, tls.clone(), "/mqtt", &["mqtt"], &evil).await);
    assert_eq!(status, 403);
    // The same certificate without a browser origin (a device) is served.
    let mut ws = wsc::wss_connect(addr, tls, "/mqtt", &["mqtt"], &[])
        .await
        .unwrap();
    wsc::send(&mut ws, &packets::connect_v4("device-7", None, None)).await;
    assert_eq!(wsc::read_bytes(&mut ws, 4).await, CONNACK_OK);
}

#[tokio::test]
async fn oversized_messages_and_empty_message_floods_are_closed() {
    let h = start(", ws: { max_message_size: 1KiB }").await;
    // Catalogue §D.58: a message above the limit → 1009, before it is buffered whole.
    let mut ws = wss(&h).await;
    connect_alice(&mut ws, "big").await;
    wsc::send(&mut ws, &packets::publish_qos0("big", &[b'x'; 4096])).await;
    let (code, _) = wsc::read_until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Size));
    // Catalogue §D.57: empty binary messages in a tight loop never become MQTT.
    let mut ws = wss(&h).await;
    connect_alice(&mut ws, "empty").await;
    for _ in 0..1100 {
        if ws.feed(Message::Binary(Bytes::new())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let (code, _) = wsc::read_until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Policy));
}

#[tokio::test]
async fn slow_upgrade_is_cut_at_the_upgrade_timeout() {
    let h = start(", ws: { upgrade_timeout: 300ms }").await;
    // TLS done, then a request that never ends (catalogue §D.58, slow upgrade).
    let mut s = common::tls_connect(h.addr_of("wss"), wsc::wss_tls(&h.pki.ca.cert))
        .await
        .unwrap();
    let (got, closed) = common::exchange(&mut s, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n").await;
    assert!(closed && got.is_empty(), "slow upgrade not cut: {got:?}");
    assert_eq!(h.upstream_connects(), 0);
}

#[tokio::test]
async fn plain_ws_listener_serves_when_enabled() {
    let h = common::start(Opts {
        listeners: "  - { name: ws, kind: ws, bind: \"127.0.0.1:0\", insecure_plaintext: true }\n"
            .into(),
        ..Opts::default()
    })
    .await;
    let addr = h.addr_of("ws");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{}/mqtt",
            addr.port()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    ws.send(Message::Binary(Bytes::from(packets::connect_v4(
        "plain",
        Some("alice"),
        Some("alice-pw"),
    ))))
    .await
    .unwrap();
    use futures_util::StreamExt;
    let reply = tokio::time::timeout(common::WAIT, ws.next()).await.unwrap();
    assert_eq!(
        reply.unwrap().unwrap(),
        Message::Binary(Bytes::from_static(&CONNACK_OK))
    );
}

#[tokio::test]
async fn upgrade_header_bomb_is_cut_without_buffering_it() {
    use tokio::io::AsyncWriteExt;
    let h = start("").await;
    // Catalogue §D.58: one endless header line. tungstenite stops reading at 64 KiB.
    let mut s = common::tls_connect(h.addr_of("wss"), wsc::wss_tls(&h.pki.ca.cert))
        .await
        .unwrap();
    s.write_all(b"GET /mqtt HTTP/1.1\r\nX-Bomb: ")
        .await
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    for _ in 0..32 {
        if s.write_all(&chunk).await.is_err() || s.flush().await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (got, closed) = common::read_until_close(&mut s, common::WAIT).await;
    assert!(
        closed,
        "header bomb left the connection open after {sent} bytes"
    );
    assert!(!String::from_utf8_lossy(&got).contains("101"), "upgraded");
    // The listener still serves.
    let mut ws = wss(&h).await;
    connect_alice(&mut ws, "after-bomb").await;
}
