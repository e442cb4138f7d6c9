//! The WebSocket fuzz input, shared by the `ws` target and `tests/fuzz_corpus.rs` (which
//! replays the committed corpus in `cargo test`).
//!
//! An input is one flags byte, then everything the peer sends: by default after a valid
//! upgrade request and moat's answer to it (so the bytes are WebSocket frames), with [`RAW`]
//! from the first byte of the HTTP request on, all at once. moat's side is what a listener runs: `transport::ws::upgrade` (the request
//! judged against the listener's settings, tungstenite's limits set from them), then `WsBytes`
//! read like a socket until the end, optionally writing back what it read as a session would
//! (vectored writes, joined into one message),
//! then shut down. Both ends run over an in-memory duplex in a current-thread runtime whose
//! clock is paused: a wait that no byte can end (a deadlock) turns into the watchdog's panic at
//! once instead of a hang.
//!
//! Checked beyond "never panics": moat reads no more MQTT bytes than the peer sent, writes back
//! at most a bounded multiple of them, and the exchange ends once the peer has sent everything.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use moat::config::WsSettings;
use moat::transport::ws::upgrade;
use moat::transport::{Peer, TransportKind};

/// Small frame and message limits (64 / 200 bytes) instead of the defaults for 64 KiB packets.
pub const SMALL: u8 = 1;
/// The input is the whole byte stream, HTTP request included.
pub const RAW: u8 = 2;
/// An origin allowlist and a trusted proxy; the canned request carries both headers.
pub const GUARDED: u8 = 4;
/// moat writes back every chunk it reads.
pub const ECHO: u8 = 8;
/// The connection proved a client certificate.
pub const CERT: u8 = 16;

/// The upgrade request sent before the input unless [`RAW`].
pub const REQUEST: &str = "GET /mqtt HTTP/1.1\r\nHost: moat\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n";
/// Headers added to the canned request with [`GUARDED`].
pub const GUARDED_HEADERS: &str = "Origin: https://app.example\r\nX-Forwarded-For: 203.0.113.9\r\n";

/// What moat's HTTP answer and close frame may add to what it writes back.
const ANSWER_SLACK: usize = 1024;

/// Longest one exchange may take on the paused clock: far above the upgrade deadline.
const WATCHDOG: Duration = Duration::from_secs(3600);

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

/// Runs one input: how many MQTT bytes moat read, or `None` when the upgrade was refused.
pub fn run(data: &[u8]) -> Option<usize> {
    let (&flags, rest) = data.split_first()?;
    let mut sent = Vec::with_capacity(REQUEST.len() + rest.len() + 64);
    if flags & RAW == 0 {
        sent.extend_from_slice(REQUEST.as_bytes());
        if flags & GUARDED != 0 {
            sent.extend_from_slice(GUARDED_HEADERS.as_bytes());
        }
        sent.extend_from_slice(b"\r\n");
    }
    sent.extend_from_slice(rest);
    // Without RAW the frames wait for moat's answer; with it, everything goes at once.
    let request = match flags & RAW {
        0 => sent.len() - rest.len(),
        _ => sent.len(),
    };
    RUNTIME.with(|rt| {
        rt.block_on(async {
            tokio::time::timeout(WATCHDOG, exchange(flags, &sent, request))
                .await
                .expect("the WebSocket exchange ends once the peer has sent everything")
        })
    })
}

/// Writes `data` back as the session writes a batch: vectored (here in two slices), so the
/// path that joins several packets into one message is fuzzed too.
async fn echo<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(rest.len() / 2);
        let n = w
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        rest = rest.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// One connection: the peer sends `sent`, its first `request` bytes as the upgrade request
/// (then, as a client must [RFC 6455 §4.1], it waits for the answer before sending frames).
async fn exchange(flags: u8, sent: &[u8], request: usize) -> Option<usize> {
    let mut settings = WsSettings::defaults(64 * 1024);
    if flags & SMALL != 0 {
        settings.max_frame_size = 64;
        settings.max_message_size = 200;
    }
    let mut addr: SocketAddr = ([198, 51, 100, 7], 40000).into();
    if flags & GUARDED != 0 {
        settings.allowed_origins = vec!["https://app.example".to_owned()];
        settings.trusted_proxies = vec!["192.0.2.0/24".parse().expect("a network")];
        addr = ([192, 0, 2, 1], 40000).into();
    }
    let peer = Peer {
        addr,
        listener: Arc::from("wss"),
        kind: TransportKind::Tls,
        sni: None,
        alpn: None,
        cert_cn: (flags & CERT != 0).then(|| "dev".to_owned()),
        cert: None,
        via: None,
    };
    let (moat_io, peer_io) = tokio::io::duplex(16 * 1024);
    let (mut peer_rd, mut peer_wr) = tokio::io::split(peer_io);
    let (request, frames) = sent.split_at(request);
    let (upgraded_tx, upgraded_rx) = tokio::sync::oneshot::channel();
    let send = async {
        let _ = peer_wr.write_all(request).await;
        if !frames.is_empty() && upgraded_rx.await == Ok(true) {
            let _ = peer_wr.write_all(frames).await;
        }
        let _ = peer_wr.shutdown().await;
    };
    // Reads everything moat writes, all along (moat must never wait on a peer that reads), and
    // tells the sender whether the answer to the request was 101.
    let receive = async {
        let mut upgraded_tx = Some(upgraded_tx);
        let mut head = Vec::new();
        let mut got = 0usize;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = peer_rd.read(&mut buf).await {
            got += n;
            if let Some(tx) = upgraded_tx.take() {
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > ANSWER_SLACK {
                    let _ = tx.send(head.starts_with(b"HTTP/1.1 101 "));
                } else {
                    upgraded_tx = Some(tx);
                }
            }
        }
        got
    };
    let serve = async move {
        // Admission on the client's address runs inside the upgrade (moat's relay slots); here
        // it admits everyone, so the frames after it are fuzzed too.
        let mut admit = |_client: std::net::SocketAddr| Some(());
        let upgraded = upgrade(
            moat_io,
            peer,
            &settings,
            TransportKind::Wss,
            Some(&mut admit),
        );
        let Ok((mut ws, _peer, _admitted)) = upgraded.await else {
            return None;
        };
        let mut mqtt = 0usize;
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = ws.read(&mut buf).await {
            mqtt += n;
            if flags & ECHO != 0
                && echo(&mut ws, buf.get(..n).unwrap_or_default())
                    .await
                    .is_err()
            {
                break;
            }
        }
        let _ = ws.shutdown().await;
        Some(mqtt)
    };
    let ((), written, mqtt) = tokio::join!(send, receive, serve);
    let read = mqtt.unwrap_or(0);
    assert!(
        read <= sent.len(),
        "moat read {read} MQTT bytes from {} bytes sent",
        sent.len()
    );
    assert!(
        written <= 2 * sent.len() + ANSWER_SLACK,
        "moat wrote {written} bytes back for {} bytes sent",
        sent.len()
    );
    mqtt
}
