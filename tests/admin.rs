//! The admin listener: health and readiness, authentication off loopback, and `/metrics`
//! counters moving while real clients connect, publish, get refused and get banned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;

use common::{Opts, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The admin section every harness here gets: loopback, port 0.
const ADMIN_LOOPBACK: &str = "admin: { listen: \"127.0.0.1:0\" }\n";

/// One HTTP/1.1 request on a fresh connection: status code and body.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: moat\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    request(tcp, path, None).await
}

fn admin_addr(h: &common::Harness) -> SocketAddr {
    h.running
        .admin_addr()
        .expect("admin listener")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_on_a_running_moat() {
    let h = common::start(Opts {
        extra: ADMIN_LOOPBACK.into(),
        ..Opts::default()
    })
    .await;
    let admin = admin_addr(&h);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(get(admin, "/nothing-here").await.0, 404);
}
