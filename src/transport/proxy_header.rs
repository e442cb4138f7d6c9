//! PROXY protocol v1 and v2: the client address an L4 balancer puts in front of the stream.
//!
//! The header sits before the TLS ClientHello, and moat must read it and nothing more: a byte
//! too many would be a TLS byte lost. [`next_read`] is the framing, a pure function that says
//! how many bytes may be read next without passing the header's end (v1: up to the `\r\n`,
//! never more than 107 bytes; v2: the 16-byte fixed part, then exactly its declared length,
//! bounded by [`MAX_V2_LENGTH`]). [`parse`] hands the complete header to the `ppp` crate and
//! turns it into a [`Origin`]. [`read`] is the only I/O: it reads what `next_read` allows,
//! under one deadline for the whole header, so a slow or silent balancer costs one timer.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>. What is refused:
//! anything that does not start with a signature this listener accepts (a missing header, a
//! v1 header where only v2 is accepted and the reverse), a v1 line past 107 bytes, a v2
//! length past the bound, an unknown version or command, addresses that do not parse, TLVs that
//! overrun the header, a v2 PROXY for a datagram transport. `LOCAL` (the balancer's own health
//! check), v1 `UNKNOWN` and v2 `UNSPEC`/`UNIX` carry no client: the socket peer stays.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ProxyProtocol;

/// The v2 signature (spec section 2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix, space included.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, `\r\n` included (spec section 2.1).
pub const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;
/// Largest v2 length (addresses and TLVs) accepted. Addresses take at most 216 bytes (UNIX);
/// HAProxy's TLVs (ALPN, authority, unique id up to 128 bytes, SSL facts) stay far below this.
/// The spec allows 65535; nothing moat uses needs it, and each waiting header holds its buffer.
pub const MAX_V2_LENGTH: usize = 1024;

/// What the framing allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more bytes: fewer may not complete the header, more may pass it.
    Read(usize),
    /// The buffer holds the whole header, nothing after it.
    Complete,
}

/// Where the client is, according to a well-formed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A relayed connection: the client's address and port as the balancer saw them.
    Client(SocketAddr),
    /// No client behind it (`LOCAL`, `UNKNOWN`, `UNSPEC`, a UNIX socket): the balancer speaks
    /// for itself, and the socket peer is the address to use.
    Peer,
}

/// Why a header was refused. Every variant ends the connection before TLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are no PROXY header (a client speaking TLS straight away, a scanner).
    #[error("no PROXY protocol header")]
    Missing,
    /// A header of a version this listener does not accept.
    #[error("PROXY protocol {found} header where {accepted} is required")]
    Version {
        /// `v1` or `v2`.
        found: &'static str,
        /// The listener's setting.
        accepted: &'static str,
    },
    /// A v1 line without its end within 107 bytes, or a v2 length past [`MAX_V2_LENGTH`].
    #[error("PROXY protocol header longer than allowed ({0} bytes)")]
    TooLong(usize),
    /// The header has the right start and length but does not parse.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The header did not arrive within the deadline.
    #[error("PROXY protocol header not received within {0:?}")]
    Timeout(Duration),
    /// The balancer closed or reset the connection before the header was complete.
    #[error("connection closed before the PROXY protocol header was complete: {0}")]
    Closed(std::io::ErrorKind),
}

// === impl HeaderError ===

impl HeaderError {
    /// The refusal cause for the audit line and the counters (`None`: the peer just went away).
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            Self::Missing => Some("proxy header missing"),
            Self::Version { .. } => Some("proxy header version"),
            Self::TooLong(_) => Some("proxy header too long"),
            Self::Malformed(_) => Some("proxy header malformed"),
            Self::Timeout(_) => Some("proxy header timeout"),
            Self::Closed(_) => None,
        }
    }
}

/// How many bytes may be read next, given the `buf` read so far (empty at first).
pub fn next_read(buf: &[u8], accepted: ProxyProtocol) -> Result<Step, HeaderError> {
    // 12 bytes are safe to read whatever follows: the shortest v1 header (`PROXY UNKNOWN\r\n`)
    // has 15, a v2 header at least 16.
    if buf.len() < V2_SIGNATURE.len() {
        return Ok(Step::Read(V2_SIGNATURE.len() - buf.len()));
    }
    if buf.starts_with(&V2_SIGNATURE) {
        if !accepted.accepts_v2() {
            return Err(version("v2", accepted));
        }
        let Some(&[hi, lo]) = buf.get(V2_FIXED - 2..V2_FIXED) else {
            return Ok(Step::Read(V2_FIXED - buf.len()));
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length > MAX_V2_LENGTH {
            return Err(HeaderError::TooLong(V2_FIXED + length));
        }
        let total = V2_FIXED + length;
        return match total.checked_sub(buf.len()) {
            Some(0) => Ok(Step::Complete),
            Some(more) => Ok(Step::Read(more)),
            None => Err(HeaderError::Malformed("read past the declared length")),
        };
    }
    if buf.starts_with(V1_PREFIX) {
        if !accepted.accepts_v1() {
            return Err(version("v1", accepted));
        }
        // The line ends at its first `\n`, which must be the last byte read and follow a `\r`;
        // one anywhere else (in the 12 or 15 bytes read at once) is a malformed header.
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) if at + 1 == buf.len() && buf.ends_with(b"\r\n") => return Ok(Step::Complete),
            Some(_) => return Err(HeaderError::Malformed("v1 line")),
            None => {}
        }
        if buf.len() >= V1_MAX {
            return Err(HeaderError::TooLong(buf.len()));
        }
        if buf.len() < 15 {
            return Ok(Step::Read(15 - buf.len()));
        }
        // After a `\r` only the `\n` may be next; otherwise the end is at least two bytes away.
        let more = if buf.ends_with(b"\r") { 1 } else { 2 };
        return Ok(Step::Read(more.min(V1_MAX - buf.len())));
    }
    Err(HeaderError::Missing)
}

fn version(found: &'static str, accepted: ProxyProtocol) -> HeaderError {
    HeaderError::Version {
        found,
        accepted: accepted.as_str(),
    }
}

/// Parses a complete header (what [`next_read`] framed).
pub fn parse(header: &[u8]) -> Result<Origin, HeaderError> {
    if header.starts_with(&V2_SIGNATURE) {
        parse_v2(header)
    } else {
        parse_v1(header)
    }
}

fn parse_v1(header: &[u8]) -> Result<Origin, HeaderError> {
    use ppp::v1::{Addresses, Header};
    // The spec says US-ASCII, and `ppp` needs it: it slices the line at its first `\r` plus
    // two bytes, which panics inside a multi-byte character (found by the `proxy` fuzz target).
    if !header.is_ascii() {
        return Err(HeaderError::Malformed("v1 not ASCII"));
    }
    let text = std::str::from_utf8(header).map_err(|_| HeaderError::Malformed("v1 not ASCII"))?;
    // The whole line and nothing else: `ppp` would accept a header followed by more bytes, and
    // a `\r` anywhere but before the `\n` would make it judge a shorter line than moat framed.
    if text.len() > V1_MAX
        || !text.ends_with("\r\n")
        || text.matches('\n').count() != 1
        || text.matches('\r').count() != 1
    {
        return Err(HeaderError::Malformed("v1 line"));
    }
    let parsed = Header::try_from(text).map_err(|_| HeaderError::Malformed("v1 fields"))?;
    if parsed.header.len() != text.len() {
        return Err(HeaderError::Malformed("v1 line"));
    }
    Ok(match parsed.addresses {
        Addresses::Tcp4(a) => {
            Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        Addresses::Tcp6(a) => {
            Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        Addresses::Unknown => Origin::Peer,
    })
}

fn parse_v2(header: &[u8]) -> Result<Origin, HeaderError> {
    use ppp::v2::{Addresses, Command, Header, Protocol};
    // Version 2, command LOCAL: "discard the protocol block including the family" (spec 2.2),
    // so it is not handed to a parser that would judge the block.
    if header.get(V2_SIGNATURE.len()) == Some(&0x20) {
        return Ok(Origin::Peer);
    }
    let parsed = Header::try_from(header).map_err(|e| {
        HeaderError::Malformed(match e {
            ppp::v2::ParseError::Version(_) => "v2 version",
            ppp::v2::ParseError::Command(_) => "v2 command",
            ppp::v2::ParseError::AddressFamily(_) => "v2 address family",
            ppp::v2::ParseError::Protocol(_) => "v2 transport protocol",
            ppp::v2::ParseError::InvalidAddresses(..) => "v2 length shorter than its addresses",
            _ => "v2 header",
        })
    })?;
    if parsed.header.len() != header.len() {
        return Err(HeaderError::Malformed("v2 length"));
    }
    // UNSPEC and UNIX carry no address moat could use, so their blocks are not looked at.
    let client = match (parsed.command, parsed.protocol, parsed.addresses) {
        (Command::Local, ..) => return Ok(Origin::Peer),
        (_, _, Addresses::Unspecified | Addresses::Unix(_)) => return Ok(Origin::Peer),
        (_, Protocol::Datagram, _) => {
            return Err(HeaderError::Malformed("v2 datagram on a TCP listener"))
        }
        (_, _, Addresses::IPv4(a)) => SocketAddr::new(a.source_address.into(), a.source_port),
        (_, _, Addresses::IPv6(a)) => SocketAddr::new(a.source_address.into(), a.source_port),
    };
    // TLVs are not used, but a header whose TLVs overrun it is not what a balancer sends.
    // Bounded: each TLV takes at least 3 of at most MAX_V2_LENGTH bytes, and the iterator
    // stops at the first error.
    if parsed.tlvs().any(|tlv| tlv.is_err()) {
        return Err(HeaderError::Malformed("v2 TLV overruns the header"));
    }
    Ok(Origin::Client(client))
}

/// Reads exactly one header from `stream` within `deadline`, and nothing after it.
pub async fn read<S>(
    stream: &mut S,
    accepted: ProxyProtocol,
    deadline: Duration,
) -> Result<Origin, HeaderError>
where
    S: AsyncRead + Unpin,
{
    let header = tokio::time::timeout(deadline, read_header(stream, accepted))
        .await
        .map_err(|_| HeaderError::Timeout(deadline))??;
    parse(&header)
}

async fn read_header<S>(stream: &mut S, accepted: ProxyProtocol) -> Result<Vec<u8>, HeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(V1_MAX);
    // Every step reads at least one byte and the framing ends by V2_FIXED + MAX_V2_LENGTH, so
    // this loop is bounded without a counter of its own.
    loop {
        let more = match next_read(&buf, accepted)? {
            Step::Complete => return Ok(buf),
            Step::Read(n) => n,
        };
        let start = buf.len();
        buf.resize(start + more, 0);
        let tail = buf.get_mut(start..).unwrap_or_default();
        stream
            .read_exact(tail)
            .await
            .map_err(|e| HeaderError::Closed(e.kind()))?;
    }
}

#[cfg(test)]
#[path = "proxy_header_tests.rs"]
mod tests;
