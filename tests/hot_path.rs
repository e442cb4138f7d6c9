//! The session's hot path: frames that arrive together leave together and in order (vectored
//! writes), and local answers beyond the reply queue's bound wait instead of being lost. The
//! one keep-alive timer per session (1.5 × keep alive [MQTT-3.1.2-24], moved by every packet)
//! is tested without real time: `session::machine::tests` (explicit `now`) and
//! `session::driver::tests` (tokio's paused clock).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{packets, Opts};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Reads one whole MQTT frame (fixed header included).
async fn read_frame(s: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut frame = common::read_exact(s, 2).await;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = *frame.last().unwrap();
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        frame.extend(common::read_exact(s, 1).await);
    }
    frame.extend(common::read_exact(s, len).await);
    frame
}

async fn connected(h: &common::Harness, connect: &[u8]) -> TlsStream<TcpStream> {
    let mut s = h.tls(None).await;
    s.write_all(connect).await.unwrap();
    let connack = read_frame(&mut s).await;
    assert_eq!(connack[0], 0x20, "CONNACK expected, got {connack:02x?}");
    assert_eq!(connack[3], 0, "refused: {connack:02x?}");
    s
}

#[tokio::test]
async fn pipelined_publishes_in_one_record_all_arrive_in_order() {
    let h = common::start(Opts::default()).await;
    let mut sub = connected(
        &h,
        &packets::connect_v4("sub", Some("alice"), Some("alice-pw")),
    )
    .await;
    let mut subscribe = vec![0x00, 0x01];
    packets::push_str(&mut subscribe, "hp/#");
    subscribe.push(0);
    sub.write_all(&packets::frame(0x82, &subscribe))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut sub).await,
        vec![0x90, 0x03, 0x00, 0x01, 0x00]
    );

    let mut publ = connected(&h, &packets::connect_v4("pub", Some("bob"), Some("bob-pw"))).await;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let p = packets::publish_qos0("hp/t", format!("message {i}").as_bytes());
        batch.extend_from_slice(&p);
        expected.extend_from_slice(&p);
    }
    batch.extend_from_slice(&[0xc0, 0x00]); // PINGREQ behind them, in the same write
    publ.write_all(&batch).await.unwrap();
    assert_eq!(read_frame(&mut publ).await, vec![0xd0, 0x00]);
    let got = common::read_exact(&mut sub, expected.len()).await;
    assert_eq!(got, expected, "all 50 PUBLISHes, byte for byte, in order");
}

#[tokio::test]
async fn pingreqs_beyond_the_reply_queue_are_all_answered() {
    let h = common::start(Opts::default()).await;
    let mut s = connected(
        &h,
        &packets::connect_v4("pings", Some("alice"), Some("alice-pw")),
    )
    .await;
    // Far more local answers than the reply queue holds: the reader waits for room, none is lost.
    let pings: Vec<u8> = std::iter::repeat_n([0xc0u8, 0x00], 300).flatten().collect();
    s.write_all(&pings).await.unwrap();
    let got = common::read_exact(&mut s, 600).await;
    assert!(
        got.chunks(2).all(|c| c == [0xd0, 0x00]),
        "{:02x?}",
        &got[..8]
    );
}
