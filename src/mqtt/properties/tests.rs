//! Property reader tests: the allow table, duplicates, value ranges, block length.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test

use super::*;
use crate::mqtt::test_util::hex;

fn read_all(block: &str, ctx: Context) -> Result<Vec<(u8, Value)>, DecodeError> {
    let mut r = Reader::new(hex(block));
    let mut pr = PropReader::new(&mut r, ctx)?;
    let mut out = Vec::new();
    while let Some(p) = pr.next()? {
        out.push(p);
    }
    pr.finish()?;
    r.finish(crate::mqtt::PacketType::Publish)?;
    Ok(out)
}

#[test]
fn empty_block() {
    assert_eq!(read_all("00", Context::Publish).unwrap().len(), 0);
}

#[test]
fn every_id_has_an_entry_and_unknown_ids_are_refused() {
    let known = [
        0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
        0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
    ];
    for id in 0..=300u32 {
        assert_eq!(lookup(id).is_some(), known.contains(&id), "0x{id:x}");
    }
    assert_eq!(
        read_all("02 7f 00", Context::Publish).unwrap_err(),
        DecodeError::UnknownProperty { id: 0x7f }
    );
}

#[test]
fn multiple_subscription_identifiers_only_in_publish() {
    assert_eq!(
        read_all("04 0b 01 0b 02", Context::Publish).unwrap().len(),
        2
    );
    assert_eq!(
        read_all("04 0b 01 0b 02", Context::Subscribe).unwrap_err(),
        DecodeError::DuplicateProperty { id: 0x0b }
    );
}

#[test]
fn user_properties_repeat_up_to_the_cap() {
    let one = "26 00 01 6b 00 01 76 ";
    let block = |n: usize| {
        let body = one.repeat(n);
        let len = n * 7;
        let mut vbi = BytesMut::new();
        crate::mqtt::header::write_remaining_length(&mut vbi, len);
        let prefix: String = vbi.iter().map(|b| format!("{b:02x} ")).collect();
        prefix + &body
    };
    assert_eq!(
        read_all(&block(MAX_USER_PROPERTIES), Context::Ack)
            .unwrap()
            .len(),
        MAX_USER_PROPERTIES
    );
    assert_eq!(
        read_all(&block(MAX_USER_PROPERTIES + 1), Context::Ack).unwrap_err(),
        DecodeError::TooManyUserProperties {
            max: MAX_USER_PROPERTIES
        }
    );
}

#[test]
fn block_length_is_exact() {
    // The block ends inside a value.
    assert!(matches!(
        read_all("02 23 00", Context::Publish),
        Err(DecodeError::Truncated { .. })
    ));
    // Bytes after the block are not properties (the outer reader sees them).
    assert!(matches!(
        read_all("03 23 00 01 ff", Context::Publish),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn user_property_strings_are_validated() {
    assert!(matches!(
        read_all("07 26 00 01 00 00 01 76", Context::Ack),
        Err(DecodeError::InvalidString { .. })
    ));
}

#[test]
fn writer_refuses_out_of_range_values() {
    let mut w = PropWriter::new();
    assert!(w.two(id::RECEIVE_MAXIMUM, Some(0)).is_err());
    assert!(w.byte(id::PAYLOAD_FORMAT_INDICATOR, Some(2)).is_err());
    assert!(w.two(id::TOPIC_ALIAS, Some(0)).is_err());
    assert!(w.vbi(id::SUBSCRIPTION_IDENTIFIER, 268_435_456).is_err());
    let mut w = PropWriter::new();
    w.binary(id::AUTHENTICATION_DATA, Some(&Bytes::from_static(b"x")))
        .unwrap();
    assert!(w.finish(&mut BytesMut::new()).is_err());
}
