//! WebSocket test clients: tokio-tungstenite (client side) over our own TLS or TCP stream, so
//! tests can send exactly the frames they want (text, fragments, batches).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

/// A WSS client connection.
pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// The rustls client config a WSS client uses: the test CA, ALPN `http/1.1`.
pub fn wss_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut config = (*super::client_config(ca_pem, None)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Opens `wss://localhost:PORT{path}` offering `protocols` (none: no header) plus `headers`.
pub async fn wss_connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Result<Wss, tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    wss_over(tcp, addr, tls, path, protocols, headers).await
}

/// [`wss_connect`] over a TCP connection the test opened itself (from another source
/// address, or after writing a PROXY protocol header).
pub async fn wss_over(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Result<Wss, tungstenite::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(tls).connect(name, tcp).await?;
    let mut request = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    for (k, v) in headers {
        let name: tungstenite::http::HeaderName = k.parse().unwrap();
        request.headers_mut().append(name, v.parse().unwrap());
    }
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tls))
        .await
        .expect("upgrade timed out")?;
    if !protocols.is_empty() {
        let chosen = response.headers().get("sec-websocket-protocol");
        assert!(chosen.is_some(), "server chose no subprotocol");
    }
    Ok(ws)
}

/// The HTTP status of a refused upgrade.
pub fn refused_status(result: Result<Wss, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

/// Sends one binary message.
pub async fn send(ws: &mut Wss, bytes: &[u8]) {
    ws.send(Message::Binary(Bytes::copy_from_slice(bytes)))
        .await
        .unwrap();
}

/// Reads binary payloads until `n` bytes arrived (concatenated), failing on anything else.
pub async fn read_bytes(ws: &mut Wss, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected binary data, got {other:?} after {got:?}"),
        }
    }
    got
}

/// Waits for the server to close; returns its close code (None: closed without a frame) and
/// any binary bytes that arrived before the close.
pub async fn read_until_close(ws: &mut Wss) -> (Option<CloseCode>, Vec<u8>) {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("server never closed")
        {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Close(frame))) => return (frame.map(|f| f.code), got),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (None, got),
        }
    }
}
