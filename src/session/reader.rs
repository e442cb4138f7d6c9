//! Bounded frame reader: the only place that buffers bytes read from a peer.
//!
//! It looks at the fixed header first and refuses a packet whose declared size exceeds the limit
//! *before* reserving memory for it ([`crate::mqtt::header::check`]); only then does it grow the
//! buffer to the declared size. "Incomplete" just means read more.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::mqtt::{header, FrameError};

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
        loop {
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
