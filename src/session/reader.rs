//! Bounded frame reader: the only place that buffers bytes read from a peer.
//!
//! It looks at the fixed header first and refuses a packet whose declared size exceeds the limit
//! *before* reserving memory for it ([`crate::mqtt::header::check`]); only then does it grow the
//! buffer to the declared size. "Incomplete" just means read more.
//!
//! Memory: between packets the reader holds no heap buffer. A read that starts a packet lands in
//! a small area on the stack of the poll that makes it (not in the session's future, which an
//! idle session keeps for its whole life), and the bytes are then copied into an allocation of
//! exactly their size, which the frames handed out share.
//! An idle connection therefore costs no read buffer at all, and a busy one allocates per read,
//! not per packet. Only a packet that spans reads gets a buffer of its declared size.

use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::mqtt::{header, FrameError, PacketType};

/// Bytes read at once between packets. A small PUBLISH and every acknowledgement fit; a read
/// that fills it continues into [`BUSY_CAPACITY`].
const FIRST_READ: usize = 256;

/// Buffer for the rest of a read that filled [`FIRST_READ`]: more data is waiting.
const BUSY_CAPACITY: usize = 4 * 1024;

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
    /// Bytes read but not yet returned as frames. Never larger than one frame plus one read;
    /// empty and unallocated between packets.
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
            buf: BytesMut::new(),
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
            if self.buf.is_empty() {
                self.buf = self.first_read().await?;
                if self.buf.is_empty() {
                    return Ok(None);
                }
            } else if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
    }

    /// The first read after a packet boundary, in a buffer sized to what arrived (empty at EOF).
    async fn first_read(&mut self) -> std::io::Result<BytesMut> {
        let inner = &mut self.inner;
        std::future::poll_fn(|cx| {
            let mut area = [0u8; FIRST_READ];
            let mut rb = ReadBuf::new(&mut area);
            ready!(Pin::new(&mut *inner).poll_read(cx, &mut rb))?;
            let data = rb.filled();
            Poll::Ready(Ok(if data.len() < FIRST_READ {
                BytesMut::from(data)
            } else {
                let mut b = BytesMut::with_capacity(BUSY_CAPACITY);
                b.extend_from_slice(data);
                b
            }))
        })
        .await
    }

    /// A frame that is already completely buffered, without reading; lets callers batch the
    /// packets of one read into one write.
    pub(crate) fn buffered(&mut self) -> Result<Option<Bytes>, ReadError> {
        let Some(h) = header::check(&self.buf, self.max_packet_size)? else {
            return Ok(None);
        };
        let len = h.frame_len();
        if self.buf.len() == len {
            // The last (often the only) frame of the read: hand over the buffer itself.
            return Ok(Some(std::mem::take(&mut self.buf).freeze()));
        }
        if self.buf.len() > len {
            return Ok(Some(self.buf.split_to(len).freeze()));
        }
        // The size was checked against the limit above, so this reservation is bounded.
        self.buf.reserve(len - self.buf.len());
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn non_connect_first_is_refused_before_its_body_mqtt_3_1_0_1() {
        // A PUBLISH declaring 200 KiB, of which nothing follows: refused on its first byte.
        let bytes: &[u8] = &[0x30, 0x80, 0xc0, 0x0c];
        let mut r = FrameReader::new(bytes, 256 * 1024);
        let err = r.next_expecting(PacketType::Connect).await.unwrap_err();
        assert!(matches!(err, ReadError::Unexpected(0x30)));
        assert!(r.buf.capacity() <= FIRST_READ);
    }

    #[tokio::test]
    async fn declared_size_above_the_limit_is_refused_from_the_header() {
        let bytes: &[u8] = &[0x10, 0xff, 0xff, 0xff, 0x7f];
        let mut r = FrameReader::new(bytes, 256 * 1024);
        let err = r.next().await.unwrap_err();
        assert!(matches!(err, ReadError::Frame(FrameError::TooLarge { .. })));
        assert!(r.buf.capacity() <= FIRST_READ);
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
    async fn no_buffer_is_held_between_packets() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut r = FrameReader::new(rx, 64 * 1024);
        use tokio::io::AsyncWriteExt;
        // A big PUBLISH (more than the first read), then a small one.
        let mut big = vec![0x30, 0x80, 0x10];
        big.extend(std::iter::repeat_n(0u8, 2048));
        big[3..5].copy_from_slice(&[0x00, 0x01]);
        big[5] = b'a';
        tx.write_all(&big).await.unwrap();
        tx.write_all(&[0xc0, 0x00]).await.unwrap();
        let f = r.next().await.unwrap().unwrap();
        assert_eq!(f.len(), big.len());
        assert_eq!(&r.next().await.unwrap().unwrap()[..], &[0xc0, 0x00]);
        assert_eq!(
            r.buf.capacity(),
            0,
            "the reader keeps nothing while it waits"
        );
    }

    #[tokio::test]
    async fn close_inside_a_packet_is_truncation() {
        let bytes: &[u8] = &[0x30, 0x05, 0x00];
        let mut r = FrameReader::new(bytes, 1024);
        assert!(matches!(r.next().await.unwrap_err(), ReadError::Truncated));
    }
}
