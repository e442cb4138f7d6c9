//! A real browser: headless Debian Chromium loads a page served on loopback that uses MQTT.js
//! (the npm package's browser bundle) over WSS to subscribe, publish and show the message; the
//! page POSTs what it shows back to this test's own loopback HTTP server.
//!
//! The browser does not trust the throwaway test CA, so this one test starts Chromium with
//! `--ignore-certificate-errors`; everything else (TLS, ALPN, the upgrade, Origin allowlist,
//! MQTT) is real. `scripts/test` installs `chromium` (Debian) and MQTT.js (`npm ci` in tests/js).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Opts;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Chromium start-up on a loaded 2-core machine is slow; the page itself needs well under 1 s.
const BROWSER_WAIT: Duration = Duration::from_secs(60);
/// Largest request this test server reads (the page's POST is a line of text).
const MAX_BODY: usize = 4096;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Serves `/` (the page), `/mqtt.min.js` (the bundle) and takes `POST /result`.
async fn serve(listener: TcpListener, results: mpsc::Sender<String>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let results = results.clone();
        // Owned by the test's runtime; each request task ends with its response.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(common::WAIT, answer(stream, results)).await;
        });
    }
}

async fn answer(stream: TcpStream, results: mpsc::Sender<String>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0).min(MAX_BODY);
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = if request_line.starts_with("POST /result") {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let _ = results
            .send(String::from_utf8_lossy(&body).into_owned())
            .await;
        ("200 OK", "text/plain", Vec::new())
    } else if path.starts_with("/mqtt.min.js") {
        let bundle = std::fs::read(js_dir().join("node_modules/mqtt/dist/mqtt.min.js"))?;
        ("200 OK", "text/javascript", bundle)
    } else if path == "/" || path.starts_with("/?") {
        let page = std::fs::read(js_dir().join("browser/index.html"))?;
        ("200 OK", "text/html; charset=utf-8", page)
    } else {
        ("404 Not Found", "text/plain", Vec::new())
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

#[tokio::test]
async fn chromium_runs_mqttjs_over_wss_and_shows_the_message() {
    assert!(
        js_dir()
            .join("node_modules/mqtt/dist/mqtt.min.js")
            .is_file(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = http.local_addr().unwrap().port();
    // The page's origin is the only one allowed: the browser path exercises the allowlist.
    // The WSS listener asks for no client certificate: headless Chromium cancels a TLS
    // handshake that requests one (it has no certificate picker), and `tls.client_certs` is
    // `optional` in the harness.
    let h = common::start(Opts {
        listeners: format!(
            "  - {{ name: wss, kind: wss, bind: \"127.0.0.1:0\", client_certs: none, ws: {{ allowed_origins: [\"http://127.0.0.1:{http_port}\"] }} }}\n"
        ),
        ..Opts::default()
    })
    .await;
    let (tx, mut rx) = mpsc::channel(4);
    let server = tokio::spawn(serve(http, tx));
    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "http://127.0.0.1:{http_port}/?port={}&user=alice&pass=alice-pw",
        h.addr_of("wss").port()
    );
    let mut browser = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Only for this test: the browser does not know the throwaway test CA.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium is installed (scripts/test installs the Debian package)");
    let shown = tokio::time::timeout(BROWSER_WAIT, rx.recv())
        .await
        .expect("the page never reported")
        .unwrap();
    let _ = browser.kill().await;
    server.abort();
    assert_eq!(shown, "received browser/echo: hello from the browser");
    assert_eq!(h.upstream_connects(), 1);
}
