//! The HTTP client side of `moat ctl`: one request per connection to the admin listener, over
//! TCP, TLS (`--ca`: that CA is the only trust anchor) or a Unix socket, with a bearer token
//! when one is given, and a deadline on everything (connect, handshake, request, body).
//!
//! HTTP is hyper's one-connection client (`hyper::client::conn::http1`), on the same hyper the
//! admin listener serves with; TLS is rustls with the ring provider, as everywhere in moat.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::http::{header, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest answer read: a page of 1000 sessions is well below it.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// Where the admin listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// `http://host:port` or, with TLS, `https://host:port`.
    Tcp {
        /// Host name or address (also the TLS server name).
        host: String,
        /// Port.
        port: u16,
        /// `https`.
        tls: bool,
    },
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
}

/// A configured client.
pub(super) struct Client {
    target: Target,
    /// `Authorization: Bearer …`.
    token: Option<String>,
    /// TLS configuration for `https`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Deadline for the whole exchange.
    timeout: Duration,
}

/// An answer: status and body.
pub(super) struct Answer {
    /// The HTTP status.
    pub(super) status: StatusCode,
    /// The body.
    pub(super) body: Bytes,
}

// === impl Target ===

impl Target {
    /// Parses `--admin`: `http://HOST:PORT`, `https://HOST:PORT`, or `unix:/PATH`.
    pub(super) fn parse(text: &str) -> anyhow::Result<Target> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                bail!("--admin {text:?}: expected unix:/path/to/socket");
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let uri: Uri = text
            .parse()
            .with_context(|| format!("--admin {text:?}: not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("--admin {text:?}: expected http://, https:// or unix:"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--admin {text:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(9100);
        Ok(Target::Tcp { host, port, tls })
    }
}

// === impl Client ===

impl Client {
    /// A client for `target`; `ca` is required for `https`, `token_file` when the listener
    /// asks for a token.
    pub(super) fn new(
        target: Target,
        token_file: Option<&Path>,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let token = token_file.map(read_token).transpose()?;
        let tls = match (&target, ca) {
            (Target::Tcp { tls: true, .. }, Some(ca)) => Some(tls_config(ca)?),
            (Target::Tcp { tls: true, .. }, None) => {
                bail!("an https admin URL needs --ca (the CA that signed the admin certificate)")
            }
            _ => None,
        };
        Ok(Client {
            target,
            token,
            tls,
            timeout,
        })
    }

    /// Sends one request and reads the answer, all within the deadline.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer from the admin listener within {:?}",
                    self.timeout
                )
            })?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        let authority = match &self.target {
            Target::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Tcp { host, port, .. } => format!("{host}:{port}"),
            Target::Unix(_) => "localhost".to_owned(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority.as_str());
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        match &self.target {
            Target::Unix(path) => {
                let io = tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(|| format!("connecting to {}", path.display()))?;
                send(io, request).await
            }
            Target::Tcp { host, port, .. } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .with_context(|| format!("connecting to {authority}"))?;
                match &self.tls {
                    None => send(tcp, request).await,
                    Some(config) => {
                        let name = ServerName::try_from(host.clone())
                            .with_context(|| format!("{host:?} is not a TLS server name"))?;
                        let tls = tokio_rustls::TlsConnector::from(config.clone())
                            .connect(name, tcp)
                            .await
                            .context("TLS handshake with the admin listener")?;
                        send(tls, request).await
                    }
                }
            }
        }
    }
}

/// One HTTP/1.1 exchange on `io`.
async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> anyhow::Result<Answer>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection's driver, owned by this exchange: it ends when the answer is read and the
    // sender dropped, or with the caller's deadline (the runtime ends with the command).
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer: {e}"))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Answer { status, body })
}

/// The token: the file's text without surrounding whitespace.
fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("--token-file {}", path.display()))?
        .take(MAX_TOKEN_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--token-file {}: empty", path.display());
    }
    Ok(token.to_owned())
}

/// A TLS client configuration trusting only the certificates in `ca` (PEM).
fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("--ca {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("--ca {}", ca.display()))?)
            .with_context(|| format!("--ca {}", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("--ca {}: no certificate in file", ca.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::transport::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        assert_eq!(
            Target::parse("http://127.0.0.1:9100").unwrap(),
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 9100,
                tls: false
            }
        );
        assert_eq!(
            Target::parse("https://[::1]:9443").unwrap(),
            Target::Tcp {
                host: "::1".into(),
                port: 9443,
                tls: true
            }
        );
        assert_eq!(
            Target::parse("unix:/run/moat/admin.sock").unwrap(),
            Target::Unix("/run/moat/admin.sock".into())
        );
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("unix:").is_err());
    }
}
