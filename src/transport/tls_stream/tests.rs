//! Both implementations of the TLS seam (`unbuffered`, `buffered`) against tokio-rustls clients
//! over in-memory pipes, with the same tests: handshake, both directions, records larger than one
//! and vectored writes joined into one, both ways of closing, refused input, key updates; and,
//! for the unbuffered stream, the promise that an idle stream holds no buffer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::IoSlice;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::client::TlsStream as ClientTls;
use tokio_rustls::TlsConnector;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{buffered, unbuffered};
use crate::certs;
use crate::transport::tls::provider;

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A server and a client configuration that trust each other, for the given versions.
fn configs(
    versions: &[&'static SupportedProtocolVersion],
    server_alpn: &[&[u8]],
    client_alpn: &[&[u8]],
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ca = certs::generate_ca("tls_stream test CA", 1).unwrap();
    let leaf = certs::generate_server(&ca, &["localhost".to_owned()], &[], 1).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    server.alpn_protocols = server_alpn.iter().map(|p| p.to_vec()).collect();
    server.max_early_data_size = 0;
    server.send_tls13_tickets = 0;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert.as_bytes()).unwrap())
        .unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = client_alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(server), Arc::new(client))
}

/// Everything the server wrote to the pipe, to count records.
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Vec<u8>>>);

/// The server's end of the pipe, recording what it writes.
struct Tap {
    io: DuplexStream,
    wire: Wire,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.wire.0.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Wire {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// Record lengths (header excluded) of what was written from `from` on.
    fn records_since(&self, from: usize) -> Vec<usize> {
        let bytes = self.0.lock().unwrap()[from..].to_vec();
        let mut at = 0;
        let mut records = Vec::new();
        while at + 5 <= bytes.len() {
            let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]));
            records.push(len);
            at += 5 + len;
        }
        assert_eq!(at, bytes.len(), "whole records only");
        records
    }
}

/// What a test may look at inside a stream: the unbuffered one tells what it holds.
trait Inspect {
    /// Capacity of every buffer the stream holds, if it can tell.
    fn held(&self) -> Option<usize>;
    /// Ciphertext waiting for the rest of its record, if the stream can tell.
    fn waiting(&self) -> Option<usize>;
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Inspect for unbuffered::ServerTls<IO> {
    fn held(&self) -> Option<usize> {
        Some(self.held_bytes())
    }
    fn waiting(&self) -> Option<usize> {
        Some(self.waiting_bytes())
    }
}

impl<IO> Inspect for buffered::ServerTls<IO> {
    fn held(&self) -> Option<usize> {
        None
    }
    fn waiting(&self) -> Option<usize> {
        None
    }
}

/// Copies `from` to `to` a few bytes at a time, letting the reader run between pieces.
async fn dribble(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut piece = [0u8; 7];
    while let Ok(n @ 1..) = from.read(&mut piece).await {
        if to.write_all(&piece[..n]).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let _ = to.shutdown().await;
}

/// Reads one TLS record (header and body) off a raw pipe.
async fn raw_record(from: &mut DuplexStream) -> Vec<u8> {
    let mut record = vec![0u8; 5];
    from.read_exact(&mut record).await.unwrap();
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(5 + len, 0);
    from.read_exact(&mut record[5..]).await.unwrap();
    record
}

/// The behaviour tests, once per implementation of the seam.
macro_rules! seam_tests {
    ($name:ident, $imp:ident) => {
        mod $name {
            use super::super::$imp::ServerTls;
            use super::*;

            struct Pair {
                server: ServerTls<Tap>,
                client: ClientTls<DuplexStream>,
                sni: Option<String>,
                wire: Wire,
            }

            async fn pair_with(
                server: Arc<ServerConfig>,
                client: Arc<ClientConfig>,
            ) -> io::Result<Pair> {
                let (near, far) = tokio::io::duplex(64 * 1024);
                let wire = Wire::default();
                let tap = Tap {
                    io: far,
                    wire: wire.clone(),
                };
                let name = ServerName::try_from("localhost").unwrap();
                let (accepted, connected) = tokio::join!(
                    ServerTls::accept(server, tap),
                    TlsConnector::from(client).connect(name, near)
                );
                let (server, sni) = accepted?;
                Ok(Pair {
                    server,
                    client: connected?,
                    sni,
                    wire,
                })
            }

            async fn pair(versions: &[&'static SupportedProtocolVersion]) -> Pair {
                let (server, client) = configs(versions, &[b"mqtt"], &[b"mqtt"]);
                pair_with(server, client).await.unwrap()
            }

            fn assert_idle(server: &impl Inspect) {
                if let Some(held) = server.held() {
                    assert_eq!(held, 0, "rx, plain and tx released");
                }
            }

            async fn echo(p: &mut Pair, bytes: &[u8]) {
                p.client.write_all(bytes).await.unwrap();
                p.client.flush().await.unwrap();
                let mut got = vec![0; bytes.len()];
                p.server.read_exact(&mut got).await.unwrap();
                assert_eq!(got, bytes);
                p.server.write_all(&got).await.unwrap();
                p.server.flush().await.unwrap();
                let mut back = vec![0; bytes.len()];
                p.client.read_exact(&mut back).await.unwrap();
                assert_eq!(back, bytes);
            }

            #[tokio::test]
            async fn handshake_and_echo_both_ways_over_tls13_and_tls12() {
                for versions in [TLS13, TLS12] {
                    let mut p = pair(versions).await;
                    assert_eq!(p.sni.as_deref(), Some("localhost"));
                    assert_eq!(p.server.connection().alpn_protocol(), Some(&b"mqtt"[..]));
                    assert!(p.server.connection().peer_certificates().is_none());
                    echo(&mut p, b"hello").await;
                    echo(&mut p, &[7; 300]).await;
                    assert_idle(&p.server);
                }
            }

            #[tokio::test]
            async fn writes_larger_than_a_record_arrive_whole_both_ways() {
                let mut p = pair(TLS13).await;
                let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                // Client → server, read through a small buffer: the rest of each record waits in `plain`.
                let send = big.clone();
                let (client_side, mut got) = tokio::join!(
                    async {
                        p.client.write_all(&send).await.unwrap();
                        p.client.flush().await.unwrap();
                    },
                    async {
                        let mut got = Vec::new();
                        let mut chunk = [0u8; 256];
                        while got.len() < 100_000 {
                            let n = p.server.read(&mut chunk).await.unwrap();
                            assert!(n > 0);
                            got.extend_from_slice(&chunk[..n]);
                        }
                        got
                    }
                );
                let () = client_side;
                assert_eq!(got, big);
                assert_idle(&p.server);
                // Server → client: one record per 16 KiB written.
                let from = p.wire.len();
                got.clear();
                let ((), ()) = tokio::join!(
                    async {
                        p.server.write_all(&big).await.unwrap();
                        p.server.flush().await.unwrap();
                    },
                    async {
                        got.resize(big.len(), 0);
                        p.client.read_exact(&mut got).await.unwrap();
                    }
                );
                assert_eq!(got, big);
                let records = p.wire.records_since(from);
                assert_eq!(
                    records.len(),
                    100_000usize.div_ceil(unbuffered::MAX_PLAINTEXT)
                );
                assert!(records
                    .iter()
                    .all(|&len| len <= unbuffered::MAX_PLAINTEXT + 256));
                assert_idle(&p.server);
            }

            #[tokio::test]
            async fn a_vectored_write_of_many_frames_is_one_record() {
                let mut p = pair(TLS13).await;
                let frames: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
                let slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
                let total: usize = frames.iter().map(Vec::len).sum();
                let from = p.wire.len();
                assert!(p.server.is_write_vectored());
                let n = p.server.write_vectored(&slices).await.unwrap();
                assert_eq!(n, total, "all of it fits one record");
                p.server.flush().await.unwrap();
                assert_eq!(p.wire.records_since(from).len(), 1);
                let mut got = vec![0; total];
                p.client.read_exact(&mut got).await.unwrap();
                assert_eq!(got, frames.concat());
                assert_idle(&p.server);
            }

            #[tokio::test]
            async fn client_close_notify_is_end_of_stream_and_the_server_may_still_answer() {
                let mut p = pair(TLS13).await;
                p.client.write_all(b"last words").await.unwrap();
                p.client.shutdown().await.unwrap();
                let mut got = Vec::new();
                p.server.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"last words");
                // Half-closed: the server's answer and its own close_notify still reach the client.
                p.server.write_all(b"bye").await.unwrap();
                p.server.shutdown().await.unwrap();
                let mut back = Vec::new();
                p.client.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, b"bye");
                assert!(p.server.write_all(b"more").await.is_err());
            }

            #[tokio::test]
            async fn server_shutdown_sends_close_notify() {
                let mut p = pair(TLS12).await;
                p.server.shutdown().await.unwrap();
                let mut got = Vec::new();
                // tokio-rustls reports UnexpectedEof unless close_notify came first.
                p.client.read_to_end(&mut got).await.unwrap();
                assert!(got.is_empty());
                let err = p.server.write_all(b"x").await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            }

            #[tokio::test]
            async fn tcp_closed_inside_a_record_is_end_of_stream_without_panic() {
                let mut p = pair(TLS13).await;
                let (mut raw, _) = p.client.into_inner();
                // The header of a 64-byte record and three bytes of it, then the connection is gone.
                raw.write_all(&[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3])
                    .await
                    .unwrap();
                drop(raw);
                let mut got = Vec::new();
                assert_eq!(p.server.read_to_end(&mut got).await.unwrap(), 0);
                // Writing and closing afterwards fail or succeed, but do not panic.
                let _ = p.server.write_all(b"anyone?").await;
                let _ = p.server.shutdown().await;
            }

            #[tokio::test]
            async fn tcp_closed_inside_the_handshake_fails_it() {
                let (server, _) = configs(TLS13, &[], &[]);
                let (mut near, far) = tokio::io::duplex(4096);
                // The start of a ClientHello record, then nothing.
                near.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
                    .await
                    .unwrap();
                drop(near);
                let err = ServerTls::accept(server, far).await.err().unwrap();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            }

            #[tokio::test]
            async fn a_record_declaring_more_than_the_tls_maximum_is_refused_with_an_alert() {
                // In the handshake: the alert goes out in plaintext, so its bytes can be checked.
                let (server, _) = configs(TLS13, &[], &[]);
                let (mut near, far) = tokio::io::duplex(4096);
                near.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01])
                    .await
                    .unwrap();
                let err = ServerTls::accept(server, far).await.err().unwrap();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                let mut alert = Vec::new();
                near.read_to_end(&mut alert).await.unwrap();
                // Fatal (2) decode_error (50), before any key exists.
                assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);

                // After the handshake: the read fails and the stream stays failed; nothing grew.
                let p = pair(TLS13).await;
                let Pair {
                    mut server, client, ..
                } = p;
                let (mut raw, _) = client.into_inner();
                raw.write_all(&[0x17, 0x03, 0x03, 0xff, 0xff, 0, 0, 0])
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                let err = server.read(&mut buf).await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                if let Some(held) = server.held() {
                    assert!(held <= unbuffered::MAX_RECORD);
                }
                assert!(server.read(&mut buf).await.is_err());
                assert!(server.write_all(b"x").await.is_err());
                let _ = server.shutdown().await;
            }

            #[tokio::test]
            async fn alpn_mismatch_fails_the_handshake_with_the_alert_rustls_chose() {
                let (server, client) = configs(TLS13, &[b"mqtt"], &[b"h2"]);
                let (near, far) = tokio::io::duplex(64 * 1024);
                let name = ServerName::try_from("localhost").unwrap();
                let (accepted, connected) = tokio::join!(
                    ServerTls::accept(server, far),
                    TlsConnector::from(client).connect(name, near)
                );
                assert!(accepted.is_err());
                let err = connected.err().unwrap();
                assert!(
                    err.to_string()
                        .contains("received fatal alert: NoApplicationProtocol"),
                    "the client heard the alert: {err}"
                );
            }

            #[tokio::test]
            async fn client_key_updates_keep_both_directions_working() {
                let mut p = pair(TLS13).await;
                echo(&mut p, b"before").await;
                for round in 0..3u8 {
                    p.client.get_mut().1.refresh_traffic_keys().unwrap();
                    echo(&mut p, &[round; 1000]).await;
                }
                assert_idle(&p.server);
            }

            #[tokio::test]
            async fn records_that_arrive_a_few_bytes_at_a_time_are_joined_and_then_released() {
                let (server_config, client_config) = configs(TLS13, &[b"mqtt"], &[b"mqtt"]);
                // client ⇄ (a | b) relay (c | d) ⇄ server; client → server goes in 7-byte pieces.
                let (a, b) = tokio::io::duplex(64 * 1024);
                let (c, d) = tokio::io::duplex(64 * 1024);
                let (b_rd, b_wr) = tokio::io::split(b);
                let (mut c_rd, c_wr) = tokio::io::split(c);
                // Both relay tasks end when the pipes close at the end of the test.
                tokio::spawn(dribble(b_rd, c_wr));
                tokio::spawn(async move {
                    let mut b_wr = b_wr;
                    let _ = tokio::io::copy(&mut c_rd, &mut b_wr).await;
                });
                let wire = Wire::default();
                let tap = Tap {
                    io: d,
                    wire: wire.clone(),
                };
                let name = ServerName::try_from("localhost").unwrap();
                let (accepted, connected) = tokio::join!(
                    ServerTls::accept(server_config, tap),
                    TlsConnector::from(client_config).connect(name, a)
                );
                let (server, sni) = accepted.unwrap();
                assert_eq!(
                    sni.as_deref(),
                    Some("localhost"),
                    "SNI from a ClientHello in pieces"
                );
                let mut p = Pair {
                    server,
                    client: connected.unwrap(),
                    sni,
                    wire,
                };
                echo(&mut p, &[42; 700]).await;
                echo(&mut p, &[43; 20_000]).await;
                assert_idle(&p.server);
                assert_idle(&p.server);
            }

            #[tokio::test]
            async fn a_write_while_a_partial_record_waits_in_rx() {
                let (server_config, client_config) = configs(TLS13, &[b"mqtt"], &[b"mqtt"]);
                // client ⇄ (a | b) this test (c | d) ⇄ server: the test forwards the bytes itself.
                let (a, mut b) = tokio::io::duplex(64 * 1024);
                let (mut c, d) = tokio::io::duplex(64 * 1024);
                let name = ServerName::try_from("localhost").unwrap();
                let pump = async {
                    let (mut x, mut y) = ([0u8; 4096], [0u8; 4096]);
                    loop {
                        tokio::select! {
                            n = b.read(&mut x) => c.write_all(&x[..n.unwrap()]).await.unwrap(),
                            n = c.read(&mut y) => b.write_all(&y[..n.unwrap()]).await.unwrap(),
                        }
                    }
                };
                let (accepted, connected) = tokio::select! {
                    r = async {
                        tokio::join!(
                            ServerTls::accept(server_config, d),
                            TlsConnector::from(client_config).connect(name, a)
                        )
                    } => r,
                    () = pump => unreachable!(),
                };
                let (mut server, _) = accepted.unwrap();
                let mut client = connected.unwrap();
                // Two records from the client; the server gets the first and 10 bytes of the second.
                client.write_all(b"first").await.unwrap();
                client.flush().await.unwrap();
                client.write_all(&[7; 300]).await.unwrap();
                client.flush().await.unwrap();
                let first = raw_record(&mut b).await;
                let second = raw_record(&mut b).await;
                c.write_all(&first).await.unwrap();
                c.write_all(&second[..10]).await.unwrap();
                let mut got = [0u8; 5];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"first");
                if let Some(waiting) = server.waiting() {
                    assert_eq!(waiting, 10, "the start of the second record waits");
                }
                // rustls encrypts with that partial record in its input; nothing of it is lost.
                server.write_all(b"meanwhile").await.unwrap();
                server.flush().await.unwrap();
                let answer = raw_record(&mut c).await;
                b.write_all(&answer).await.unwrap();
                let mut heard = [0u8; 9];
                client.read_exact(&mut heard).await.unwrap();
                assert_eq!(&heard, b"meanwhile");
                c.write_all(&second[10..]).await.unwrap();
                let mut rest = [0u8; 300];
                server.read_exact(&mut rest).await.unwrap();
                assert!(rest.iter().all(|&x| x == 7));
                assert_idle(&server);
            }
        }
    };
}

seam_tests!(unbuffered_stream, unbuffered);
seam_tests!(buffered_stream, buffered);
