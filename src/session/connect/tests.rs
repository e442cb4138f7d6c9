//! The CONNECT phase's clock and keep-alive rules, without real time: the connect deadline on
//! tokio's paused clock over an in-memory stream.

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::*;
use crate::session::error::PeerFault;

#[test]
fn keep_alive_0_gets_the_maximum_and_the_bounds_hold_mqtt_3_1_2_24() {
    // 0 asks for no keep alive: moat enforces its maximum so no connection idles forever.
    assert_eq!(effective_keep_alive(0, 30, 0), 30);
    assert_eq!(effective_keep_alive(60, 30, 0), 30);
    assert_eq!(effective_keep_alive(2, 30, 5), 5);
    assert_eq!(effective_keep_alive(10, 30, 5), 10);
}

#[tokio::test(start_paused = true)]
async fn silence_after_the_handshake_ends_at_the_connect_deadline() {
    let (moat, _client) = tokio::io::duplex(1024);
    let mut reader = FrameReader::new(moat, 1024);
    let start = Instant::now();
    let r = read_first(&mut reader, Duration::from_secs(5)).await;
    assert!(
        matches!(r, Err(Refusal::Peer(PeerFault::ConnectTimeout))),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn one_deadline_for_the_whole_connect_a_drip_does_not_extend_it() {
    let (moat, mut client) = tokio::io::duplex(1024);
    let mut reader = FrameReader::new(moat, 1024);
    let start = Instant::now();
    // A CONNECT header that promises 16 bytes, then a byte every second.
    let drip = async {
        client.write_all(&[0x10, 16]).await.unwrap();
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if client.write_all(&[0]).await.is_err() {
                break;
            }
        }
        client
    };
    let (r, _client) = tokio::join!(read_first(&mut reader, Duration::from_secs(5)), drip);
    assert!(
        matches!(r, Err(Refusal::Peer(PeerFault::ConnectTimeout))),
        "{r:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_first_packet_that_is_not_connect_is_refused_at_its_first_byte_mqtt_3_1_0_1() {
    let (moat, mut client) = tokio::io::duplex(1024);
    let mut reader = FrameReader::new(moat, 1024);
    client.write_all(&[0x30, 0x05]).await.unwrap();
    let r = read_first(&mut reader, Duration::from_secs(5)).await;
    assert!(
        matches!(r, Err(Refusal::Peer(PeerFault::FirstNotConnect))),
        "{r:?}"
    );
}
