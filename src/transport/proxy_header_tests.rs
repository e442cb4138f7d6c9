//! Byte-level tests of the PROXY protocol framing and parsing, from the spec's examples.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

const ANY: ProxyProtocol = ProxyProtocol::Any;

/// Frames `bytes` as `read` would, one permitted step at a time; returns the header and
/// what was left unread.
fn frame(bytes: &[u8], accepted: ProxyProtocol) -> Result<(Vec<u8>, Vec<u8>), HeaderError> {
    let mut buf = Vec::new();
    let mut rest = bytes;
    loop {
        match next_read(&buf, accepted)? {
            Step::Complete => return Ok((buf, rest.to_vec())),
            Step::Read(n) => {
                assert!(n > 0, "a step must read something");
                if rest.len() < n {
                    return Err(HeaderError::Closed(std::io::ErrorKind::UnexpectedEof));
                }
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
}

/// Header + a ClientHello's first bytes: the framing must stop exactly at the header's end.
fn framed_then_parsed(header: &[u8], accepted: ProxyProtocol) -> Result<Origin, HeaderError> {
    let tls = [0x16, 0x03, 0x01, 0x00, 0xc8, 0x01];
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&tls);
    let (got, rest) = frame(&bytes, accepted)?;
    assert_eq!(got, header, "framed more or less than the header");
    assert_eq!(rest, tls, "a TLS byte was consumed");
    parse(&got)
}

fn client(s: &str) -> Origin {
    Origin::Client(s.parse().unwrap())
}

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v2_tcp4(tlvs: &[u8]) -> Vec<u8> {
    let mut body = vec![192, 0, 2, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x22, 0xb3];
    body.extend_from_slice(tlvs);
    v2(0x21, 0x11, &body)
}

#[test]
fn v1_tcp4_tcp6_and_unknown_from_the_spec() {
    let got = framed_then_parsed(b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8883\r\n", ANY);
    assert_eq!(got, Ok(client("192.0.2.7:50000")));
    let got = framed_then_parsed(
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        ProxyProtocol::V1,
    );
    assert_eq!(got, Ok(client("255.255.255.255:65535")));
    let got = framed_then_parsed(b"PROXY TCP6 2001:db8::7 2001:db8::1 4242 8883\r\n", ANY);
    assert_eq!(got, Ok(client("[2001:db8::7]:4242")));
    assert_eq!(
        framed_then_parsed(b"PROXY UNKNOWN\r\n", ANY),
        Ok(Origin::Peer)
    );
    // The spec's worst case: 107 bytes exactly.
    let worst = format!(
        "PROXY UNKNOWN {f} {f} 65535 65535\r\n",
        f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert_eq!(worst.len(), V1_MAX);
    assert_eq!(framed_then_parsed(worst.as_bytes(), ANY), Ok(Origin::Peer));
}

#[test]
fn v1_refusals() {
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(100));
    assert!(matches!(
        frame(long.as_bytes(), ANY),
        Err(HeaderError::TooLong(107))
    ));
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 50000\r\n"[..],
        b"PROXY TCP4 192.0.2.777 10.0.0.1 50000 8883\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 50000 8883\r\n",
        b"PROXY TCP5 192.0.2.7 10.0.0.1 50000 8883\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 70000 8883\r\n",
        b"PROXY TCP4  192.0.2.7 10.0.0.1 5 8883\r\n",
        b"PROXY TCP4 192.0.2.7\n10.0.0.1 50000 8883\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8883\r\r\n",
        // A `\r` early, then a two-byte character: `ppp` sliced inside it and panicked.
        b"PROXY PROXY T\r\xca\xaf\xca\xafRO 5633\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8883\xc3\xa9\r\n",
        b"PROXY TCP4 192.0.2.7\r10.0.0.1 50000 8883\r\n",
    ] {
        let got = framed_then_parsed(bad, ANY);
        assert!(
            matches!(got, Err(HeaderError::Malformed(_))),
            "{:?} gave {got:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A line end within the first 15 bytes: refused, never read past.
    assert_eq!(
        frame(b"PROXY \r\n\x16\x03\x01\x00\xc8\x01\x00", ANY),
        Err(HeaderError::Malformed("v1 line"))
    );
    // Missing `\n` after `\r`: the line never ends, and the framing stops at 107 bytes.
    let mut no_lf = b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8883\r".to_vec();
    no_lf.extend_from_slice(&[b'x'; 80]);
    assert!(matches!(frame(&no_lf, ANY), Err(HeaderError::TooLong(_))));
}

#[test]
fn v2_proxy_local_and_families() {
    assert_eq!(
        framed_then_parsed(&v2_tcp4(&[]), ANY),
        Ok(client("192.0.2.7:50000"))
    );
    let mut six = Vec::new();
    six.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(&[0x10, 0x92, 0x22, 0xb3]);
    assert_eq!(
        framed_then_parsed(&v2(0x21, 0x21, &six), ProxyProtocol::V2),
        Ok(client("[2001:db8::7]:4242"))
    );
    // LOCAL (a health check): the block is discarded, whatever it holds.
    assert_eq!(
        framed_then_parsed(&v2(0x20, 0x00, &[]), ANY),
        Ok(Origin::Peer)
    );
    assert_eq!(
        framed_then_parsed(&v2(0x20, 0x11, &[1, 2, 3]), ANY),
        Ok(Origin::Peer)
    );
    // PROXY over UNSPEC or UNIX: no address to use.
    assert_eq!(
        framed_then_parsed(&v2(0x21, 0x00, &[]), ANY),
        Ok(Origin::Peer)
    );
    assert_eq!(
        framed_then_parsed(&v2(0x21, 0x31, &[0; 216]), ANY),
        Ok(Origin::Peer)
    );
}

#[test]
fn v2_tlvs() {
    // PP2_TYPE_ALPN "mqtt", PP2_TYPE_AUTHORITY "moat.example", PP2_TYPE_NOOP.
    let mut tlvs = vec![0x01, 0x00, 0x04];
    tlvs.extend_from_slice(b"mqtt");
    tlvs.extend_from_slice(&[0x02, 0x00, 0x0c]);
    tlvs.extend_from_slice(b"moat.example");
    tlvs.extend_from_slice(&[0x04, 0x00, 0x00]);
    assert_eq!(
        framed_then_parsed(&v2_tcp4(&tlvs), ANY),
        Ok(client("192.0.2.7:50000"))
    );
    // A TLV that claims more than the header holds, and a stray byte after the last TLV.
    for bad in [&[0x01, 0x00, 0x09, b'm'][..], &[0x04, 0x00, 0x00, 0x07]] {
        assert!(matches!(
            framed_then_parsed(&v2_tcp4(bad), ANY),
            Err(HeaderError::Malformed(_))
        ));
    }
}

#[test]
fn v2_refusals() {
    let bad = |h: &[u8]| framed_then_parsed(h, ANY);
    // Version 1 in the binary header, command 2, family 4, transport 3.
    assert!(matches!(
        bad(&v2(0x11, 0x11, &[0; 12])),
        Err(HeaderError::Malformed(_))
    ));
    assert!(matches!(
        bad(&v2(0x22, 0x11, &[0; 12])),
        Err(HeaderError::Malformed(_))
    ));
    assert!(matches!(
        bad(&v2(0x21, 0x41, &[0; 12])),
        Err(HeaderError::Malformed(_))
    ));
    assert!(matches!(
        bad(&v2(0x21, 0x13, &[0; 12])),
        Err(HeaderError::Malformed(_))
    ));
    // Shorter than its addresses; UDP on a TCP listener.
    assert!(matches!(
        bad(&v2(0x21, 0x11, &[0; 11])),
        Err(HeaderError::Malformed(_))
    ));
    assert!(matches!(
        bad(&v2(0x21, 0x12, &[0; 12])),
        Err(HeaderError::Malformed(_))
    ));
    // A declared length over the bound is refused from the fixed part alone.
    let mut long = V2_SIGNATURE.to_vec();
    long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(frame(&long, ANY), Err(HeaderError::TooLong(16 + 65535)));
    // Truncated: the peer closes before the declared length arrived.
    let whole = v2_tcp4(&[]);
    assert!(matches!(
        frame(&whole[..20], ANY),
        Err(HeaderError::Closed(_))
    ));
    // A wrong signature byte is no header at all.
    let mut wrong = v2_tcp4(&[]);
    wrong[11] = b'X';
    assert_eq!(frame(&wrong, ANY), Err(HeaderError::Missing));
}

#[test]
fn missing_header_and_wrong_version() {
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, 0x00, 0x00,
    ];
    assert_eq!(frame(&hello, ANY), Err(HeaderError::Missing));
    // Only the first 12 bytes are read before the refusal.
    assert_eq!(next_read(&[], ANY), Ok(Step::Read(12)));
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8883\r\n";
    assert!(matches!(
        frame(v1, ProxyProtocol::V2),
        Err(HeaderError::Version { found: "v1", .. })
    ));
    assert!(matches!(
        frame(&v2_tcp4(&[]), ProxyProtocol::V1),
        Err(HeaderError::Version { found: "v2", .. })
    ));
}

#[tokio::test]
async fn read_stops_at_the_header_and_times_out() {
    use tokio::io::AsyncWriteExt;
    let (mut client_end, mut server_end) = tokio::io::duplex(4096);
    let mut bytes = v2_tcp4(&[]);
    bytes.extend_from_slice(b"\x16\x03\x01");
    client_end.write_all(&bytes).await.unwrap();
    let got = read(&mut server_end, ANY, Duration::from_secs(5)).await;
    assert_eq!(got, Ok(client("192.0.2.7:50000")));
    let mut after = [0u8; 3];
    server_end.read_exact(&mut after).await.unwrap();
    assert_eq!(&after, b"\x16\x03\x01");

    // A balancer that sends half a header and then nothing.
    client_end.write_all(b"PROXY TCP4 192.0").await.unwrap();
    tokio::time::pause();
    let got = read(&mut server_end, ANY, Duration::from_secs(3)).await;
    assert_eq!(got, Err(HeaderError::Timeout(Duration::from_secs(3))));
}
