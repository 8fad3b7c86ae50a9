//! When each peer was last heard from: the reachability facts that
//! openraft 0.9's metrics lack (they show how far a follower's log matches,
//! never how long ago it answered).
//!
//! Two instants per peer, kept apart because they answer different
//! questions:
//!
//! * **answered** — the last time a Raft RPC (append, vote, snapshot) this
//!   node sent to the peer got an answer from a running Raft (a refusal
//!   counts: the peer is up and reachable; `Fatal` does not: its Raft
//!   stopped). A leader heartbeats every voter, so on the leader this is
//!   fresh for every reachable voter. Recorded where openraft's network
//!   traits are implemented (`transport.rs`), so the HTTP and the
//!   in-process network share it.
//! * **heard** — the last time a Raft RPC (append, vote, snapshot) *from*
//!   the peer arrived. On a follower this is the last word from its leader.
//!   Set by the server handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use catga_cluster_core::NodeId;
use tokio::time::Instant;

/// The contact times of every peer. Clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerContacts {
    inner: Arc<Mutex<HashMap<NodeId, Contact>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Contact {
    answered: Option<Instant>,
    heard: Option<Instant>,
}

impl PeerContacts {
    pub(crate) fn new() -> Self {
        PeerContacts::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Contact>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An RPC sent to `peer` was answered now.
    pub(crate) fn record_answer(&self, peer: NodeId) {
        self.lock().entry(peer).or_default().answered = Some(Instant::now());
    }

    /// A Raft RPC from `peer` arrived now.
    pub(crate) fn record_heard(&self, peer: NodeId) {
        self.lock().entry(peer).or_default().heard = Some(Instant::now());
    }

    /// When `peer` last answered an RPC of this node.
    pub(crate) fn last_answer(&self, peer: NodeId) -> Option<Instant> {
        self.lock().get(&peer).and_then(|c| c.answered)
    }

    /// When a Raft RPC from `peer` last arrived.
    pub(crate) fn last_heard(&self, peer: NodeId) -> Option<Instant> {
        self.lock().get(&peer).and_then(|c| c.heard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_requests_are_kept_apart() {
        let contacts = PeerContacts::new();
        let peer = NodeId::new(3);
        assert_eq!(contacts.last_answer(peer), None);
        contacts.record_answer(peer);
        assert!(contacts.last_answer(peer).is_some());
        assert_eq!(contacts.last_heard(peer), None);
        contacts.clone().record_heard(peer);
        assert!(contacts.last_heard(peer).is_some());
        assert_eq!(contacts.last_answer(NodeId::new(4)), None);
    }
}
