//! Bounded frame reader: the only place that buffers bytes read from a peer.
//!
//! It looks at the fixed header first and refuses a packet whose declared size exceeds the limit
//! *before* reserving memory for it ([`crate::mqtt::header::check`]); only then does it grow the
//! buffer to the declared size. "Incomplete" just means read more.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::mqtt::{header, FrameError, PacketType};

/// First allocation for a connection's read buffer: enough for CONNECT and small PUBLISHes.
const INITIAL_CAPACITY: usize = 4 * 1024;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The fixed header is malformed or declares too large a packet.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed in the middle of a packet.
    #[error("connection closed inside a packet")]
    Truncated,
    /// Socket error.
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    /// The packet type was not the one the caller required.
    #[error("unexpected packet type (first byte {0:#04x})")]
    Unexpected(u8),
}

/// Reads whole MQTT packets (fixed header included) from a byte stream.
pub(crate) struct FrameReader<R> {
    /// The stream.
    inner: R,
    /// Bytes read but not yet returned as frames. Never larger than one frame plus one read.
    buf: BytesMut,
    /// Largest packet accepted, fixed header included.
    max_packet_size: usize,
}

// === impl FrameReader ===

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that refuses packets above `max_packet_size` bytes.
    pub(crate) fn new(inner: R, max_packet_size: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
            max_packet_size,
        }
    }

    /// The next frame; `Ok(None)` on a clean close between packets.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, ReadError> {
        self.next_of(None).await
    }

    /// The next frame, which must be of packet type `kind`: the type is checked as soon as the
    /// first byte is in, before the body is read, so a peer cannot make moat buffer a packet it
    /// is going to refuse anyway [MQTT-3.1.0-1].
    pub(crate) async fn next_expecting(
        &mut self,
        kind: PacketType,
    ) -> Result<Option<Bytes>, ReadError> {
        self.next_of(Some(kind)).await
    }

    async fn next_of(&mut self, kind: Option<PacketType>) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let (Some(kind), Some(&first)) = (kind, self.buf.first()) {
                if first >> 4 != kind as u8 {
                    return Err(ReadError::Unexpected(first));
                }
            }
            if let Some(frame) = self.buffered()? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }

    /// A frame that is already completely buffered, without reading; lets callers batch the
    /// packets of one read into one write.
    pub(crate) fn buffered(&mut self) -> Result<Option<Bytes>, ReadError> {
        let Some(h) = header::check(&self.buf, self.max_packet_size)? else {
            return Ok(None);
        };
        let len = h.frame_len();
        if self.buf.len() >= len {
            return Ok(Some(self.buf.split_to(len).freeze()));
        }
        // The size was checked against the limit above, so this reservation is bounded.
        self.buf.reserve(len - self.buf.len());
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn non_connect_first_is_refused_before_its_body_mqtt_3_1_0_1() {
        // A PUBLISH declaring 200 KiB, of which nothing follows: refused on its first byte.
        let bytes: &[u8] = &[0x30, 0x80, 0xc0, 0x0c];
        let mut r = FrameReader::new(bytes, 256 * 1024);
        let err = r.next_expecting(PacketType::Connect).await.unwrap_err();
        assert!(matches!(err, ReadError::Unexpected(0x30)));
        assert!(r.buf.capacity() <= INITIAL_CAPACITY);
    }

    #[tokio::test]
    async fn declared_size_above_the_limit_is_refused_from_the_header() {
        let bytes: &[u8] = &[0x10, 0xff, 0xff, 0xff, 0x7f];
        let mut r = FrameReader::new(bytes, 256 * 1024);
        let err = r.next().await.unwrap_err();
        assert!(matches!(err, ReadError::Frame(FrameError::TooLarge { .. })));
        assert!(r.buf.capacity() <= INITIAL_CAPACITY);
    }

    #[tokio::test]
    async fn frames_split_and_batched_across_reads_come_out_whole() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = FrameReader::new(rx, 1024);
        use tokio::io::AsyncWriteExt;
        // PINGREQ split between two writes, then two packets in one write.
        tx.write_all(&[0xc0]).await.unwrap();
        let first = tokio::spawn(async move {
            let f = r.next().await.unwrap().unwrap();
            (r, f)
        });
        tx.write_all(&[0x00, 0xc0, 0x00, 0xe0, 0x00]).await.unwrap();
        let (mut r, f) = first.await.unwrap();
        assert_eq!(&f[..], &[0xc0, 0x00]);
        assert_eq!(&r.buffered().unwrap().unwrap()[..], &[0xc0, 0x00]);
        assert_eq!(&r.next().await.unwrap().unwrap()[..], &[0xe0, 0x00]);
        drop(tx);
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn close_inside_a_packet_is_truncation() {
        let bytes: &[u8] = &[0x30, 0x05, 0x00];
        let mut r = FrameReader::new(bytes, 1024);
        assert!(matches!(r.next().await.unwrap_err(), ReadError::Truncated));
    }
}
