//! Declared lengths are checked before anything is allocated: 200 TLS connections each
//! declaring a 256 MiB packet leave the process's memory where it was.
//!
//! Alone in its test binary because it reads the whole process's RSS: beside the other TLS
//! tests, a harness starting in parallel (its embedded broker, its TLS state) counted as growth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Opts;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn huge_declared_lengths_do_not_grow_memory() {
    let h = common::start(Opts::default()).await;
    let rss = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // Warm up allocator and TLS once, then measure 200 connections each declaring 256 MiB.
    let mut warm = h.tls(None).await;
    let _ = common::exchange(&mut warm, &[0x10, 0xff, 0xff, 0xff, 0x7f]).await;
    let before = rss();
    let mut open = Vec::new();
    for _ in 0..200 {
        let mut s = h.tls(None).await;
        s.write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0x00])
            .await
            .unwrap();
        s.flush().await.unwrap();
        open.push(s);
    }
    for s in &mut open {
        let (_, closed) = common::read_until_close(s, common::WAIT).await;
        assert!(closed);
    }
    let grown = rss().saturating_sub(before);
    // 200 × 256 MiB would be 50 GiB; allow a few MiB of TLS state and allocator slack.
    assert!(grown < 32 * 1024 * 1024, "RSS grew by {grown} bytes");
}
