//! The frames of the leader watch: a follower's long-lived `GET` to its
//! leader's [`RAFT_WATCH_PATH`](catga_cluster_core::protocol::RAFT_WATCH_PATH).
//!
//! The body is a sequence of frames, each a two-byte big-endian length and
//! the postcard encoding of a [`WatchFrame`]: first
//! [`Leading`](WatchFrame::Leading), then [`Alive`](WatchFrame::Alive) now
//! and then, and, when the serving node stops leading while its process
//! runs, [`Ending`](WatchFrame::Ending) followed by the end of the body.
//! What matters to the follower is how the body ends: a proper end (the
//! server wrote it, so its process ran) or an abrupt one (the connection
//! closed mid-body, as when the kernel closes a dead process's sockets).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use catga_cluster_core::NodeId;
use tokio::sync::mpsc;

use super::codec::{decode, encode, BodyError};

/// The largest frame accepted, in bytes (frames are a few bytes).
const MAX_FRAME: usize = 1024;

/// One frame of the leader watch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum WatchFrame {
    /// The first frame: the serving node leads `term`.
    Leading { leader: NodeId, term: u64 },
    /// Sent now and then, so that idle connections are not reaped.
    Alive,
    /// The last frame of a proper end: why the watch ends.
    Ending(WatchEnd),
}

/// Why a leader ends a watch while its process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum WatchEnd {
    /// It no longer leads the watched term.
    NotLeading,
    /// It stopped claiming leadership: a hand-over, retiring, or its
    /// listener closing.
    SteppingDown,
}

impl WatchFrame {
    /// The frame with its length prefix.
    pub(crate) fn to_bytes(&self) -> Bytes {
        let body = encode(self).unwrap_or_default();
        let mut framed = BytesMut::with_capacity(2 + body.len());
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&body);
        framed.freeze()
    }
}

/// The body of a leader watch, as the leader serves it: an
/// [`http_body::Body`] of small binary frames (the first names the leader
/// and its term) that ends properly when the leader stops leading while
/// its process runs, and never ends with an error. Get one from
/// [`RaftRpcHandler::watch`](crate::RaftRpcHandler::watch) and serve it as
/// the `200` answer's body.
#[derive(Debug)]
pub struct LeaderWatch {
    rx: mpsc::Receiver<Bytes>,
}

impl LeaderWatch {
    /// A body fed through `rx`; it ends when every sender is gone.
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        LeaderWatch { rx }
    }

    /// The next chunk, for the in-process network.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

impl http_body::Body for LeaderWatch {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Reads frames out of body chunks, however the chunks split them.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// Adds a chunk of the body.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole frame, if one has arrived.
    pub(crate) fn next_frame(&mut self) -> Option<Result<WatchFrame, BodyError>> {
        if self.buf.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len > MAX_FRAME {
            return Some(Err(BodyError::Malformed(format!(
                "a watch frame of {len} bytes"
            ))));
        }
        if self.buf.len() < 2 + len {
            return None;
        }
        self.buf.advance(2);
        let body = self.buf.split_to(len);
        Some(decode(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_however_the_chunks_split_them() {
        let frames = [
            WatchFrame::Leading {
                leader: NodeId::new(3),
                term: 7,
            },
            WatchFrame::Alive,
            WatchFrame::Ending(WatchEnd::SteppingDown),
        ];
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect();
        for chunk in 1..stream.len() {
            let mut reader = FrameReader::default();
            let mut read = Vec::new();
            for part in stream.chunks(chunk) {
                reader.push(part);
                while let Some(frame) = reader.next_frame() {
                    read.push(frame.unwrap());
                }
            }
            assert_eq!(read, frames, "chunks of {chunk}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        let mut reader = FrameReader::default();
        reader.push(&[0xff, 0xff, 0]);
        assert!(reader.next_frame().unwrap().is_err());
        let mut reader = FrameReader::default();
        reader.push(&[0, 1, 0x7f]);
        assert!(reader.next_frame().unwrap().is_err());
    }
}
