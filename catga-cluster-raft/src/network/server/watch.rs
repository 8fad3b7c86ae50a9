//! The leader watch, served: a follower's `GET` on
//! [`RAFT_WATCH_PATH`](catga_cluster_core::protocol::RAFT_WATCH_PATH)
//! answers a [`LeaderWatch`] body that lasts as long as this node leads the
//! term it led when the watch opened.
//!
//! The body ends properly, with an [`Ending`](WatchFrame::Ending) frame,
//! the moment the published leadership says this node no longer leads that
//! term or stops claiming leadership (a hand-over, retiring, its listener
//! closing, Raft stopping). The leadership claim behind `is_leader()` is
//! withdrawn in the same publication, before the frame is written, so a
//! follower never sees a proper end from a node that still claims. The
//! body never ends with an error: only the connection can end it abruptly,
//! as when the kernel closes the sockets of a process that died.

use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::{ClusterCoordinator, Leadership, NodeId, Role};
use http::HeaderMap;
use tokio::sync::{mpsc, watch};

use super::{RaftRpcHandler, RpcRejection};
use crate::network::wire::{LeaderWatch, WatchEnd, WatchFrame};

/// How often an idle watch carries a frame, so that proxies and firewalls
/// do not reap the connection.
const KEEPALIVE: Duration = Duration::from_secs(10);

impl RaftRpcHandler {
    /// Opens a leader watch: checks the secret and the target like every
    /// RPC, and answers [`RpcRejection::NotLeading`] unless this node leads
    /// and claims leadership. Serve the [`LeaderWatch`] as the body of a
    /// `200` answer.
    pub fn watch(&self, headers: &HeaderMap) -> Result<LeaderWatch, RpcRejection> {
        self.check_headers(headers)?;
        self.open_watch()
    }

    /// [`watch`](Self::watch) with the headers checked.
    pub(crate) fn open_watch(&self) -> Result<LeaderWatch, RpcRejection> {
        let me = self.local_id();
        let mut leadership = self.node.subscribe();
        let term = {
            let l = leadership.borrow_and_update();
            if l.role != Role::Leader || l.transferring || l.leader_id() != Some(me) {
                return Err(RpcRejection::NotLeading);
            }
            l.term
        };
        let (tx, rx) = mpsc::channel(4);
        let _ = tx.try_send(WatchFrame::Leading { leader: me, term }.to_bytes());
        tokio::spawn(feed(tx, leadership, me, term));
        Ok(LeaderWatch::new(rx))
    }
}

/// Why a watch on the leader `me` of `term` ends, if it does, by this
/// snapshot.
fn ending(l: &Leadership, me: NodeId, term: u64) -> Option<WatchEnd> {
    if l.transferring {
        Some(WatchEnd::SteppingDown)
    } else if l.role != Role::Leader || l.term != term || l.leader_id() != Some(me) {
        Some(WatchEnd::NotLeading)
    } else {
        None
    }
}

/// Feeds one watch until the watcher goes or this node stops leading.
async fn feed(
    tx: mpsc::Sender<Bytes>,
    mut leadership: watch::Receiver<Leadership>,
    me: NodeId,
    term: u64,
) {
    let start = tokio::time::Instant::now() + KEEPALIVE;
    let mut alive = tokio::time::interval_at(start, KEEPALIVE);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            changed = leadership.changed() => {
                let end = match changed {
                    Ok(()) => ending(&leadership.borrow_and_update(), me, term),
                    // The node is gone (dropped while its process runs).
                    Err(_) => Some(WatchEnd::NotLeading),
                };
                if let Some(end) = end {
                    let _ = tx.try_send(WatchFrame::Ending(end).to_bytes());
                    return;
                }
            }
            _ = alive.tick() => {
                // A watcher that does not read gets no backlog.
                let _ = tx.try_send(WatchFrame::Alive.to_bytes());
            }
        }
    }
}
