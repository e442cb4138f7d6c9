//! The TLS seam: [`ServerTls`], the server side of one TLS connection as a byte stream.
//!
//! Two implementations stand behind the same interface (`accept`, `connection`, `get_ref`,
//! `AsyncRead`/`AsyncWrite` with vectored writes):
//! - `unbuffered` (the default): rustls' unbuffered API, where the stream owns its buffers and
//!   frees each one when it is empty, so an idle connection holds none. It relies on three
//!   behaviours of rustls 0.23 that are not API promises (listed in its module docs), and
//!   rustls' main branch has replaced that API.
//! - `buffered` (cargo feature `tls-buffered`): tokio-rustls over rustls' buffered
//!   `ServerConnection`, the API every rustls release keeps. It costs a receive buffer of a
//!   few KiB per connection for the connection's life (BENCHMARKS.md has the figure).
//!
//! `tests.rs` runs the same behaviour tests against both in every `cargo test`, so a rustls
//! update that changes what the unbuffered stream relies on fails a test, and moving to the
//! next rustls is a switch of feature, not a rewrite.

#[cfg(any(test, feature = "tls-buffered"))]
#[cfg_attr(not(feature = "tls-buffered"), allow(dead_code))] // only the tests use it then
mod buffered;
#[cfg_attr(feature = "tls-buffered", allow(dead_code))] // only the tests use it then
mod unbuffered;

#[cfg(feature = "tls-buffered")]
pub use buffered::ServerTls;
#[cfg(not(feature = "tls-buffered"))]
pub use unbuffered::ServerTls;

#[cfg(test)]
mod tests;
