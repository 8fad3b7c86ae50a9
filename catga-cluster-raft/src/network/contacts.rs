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
//!
//! Beside them, the current run of RPCs to the peer that failed before it
//! answered (unreachable, timed out, broken), so that the transport reports
//! a peer going away once and its return once, not every retry.

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
    /// The RPCs that failed since the peer last answered, and when the
    /// first of them failed.
    failures: u64,
    failing_since: Option<Instant>,
}

/// A run of failed RPCs to one peer that an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outage {
    /// How many RPCs failed.
    pub(crate) failures: u64,
    /// When the first of them failed.
    pub(crate) since: Instant,
}

impl PeerContacts {
    pub(crate) fn new() -> Self {
        PeerContacts::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Contact>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An RPC sent to `peer` was answered now. Returns the run of failures
    /// this answer ended, if there was one.
    pub(crate) fn record_answer(&self, peer: NodeId) -> Option<Outage> {
        let mut contacts = self.lock();
        let contact = contacts.entry(peer).or_default();
        contact.answered = Some(Instant::now());
        let failures = std::mem::take(&mut contact.failures);
        let since = contact.failing_since.take()?;
        Some(Outage { failures, since })
    }

    /// An RPC sent to `peer` failed before the peer answered. Returns how
    /// many RPCs in a row have failed so far, this one included.
    pub(crate) fn record_failure(&self, peer: NodeId) -> u64 {
        let mut contacts = self.lock();
        let contact = contacts.entry(peer).or_default();
        contact.failures = contact.failures.saturating_add(1);
        contact.failing_since.get_or_insert_with(Instant::now);
        contact.failures
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

    #[test]
    fn failures_are_counted_until_the_peer_answers() {
        let contacts = PeerContacts::new();
        let (peer, other) = (NodeId::new(3), NodeId::new(4));
        assert_eq!(contacts.record_answer(peer), None, "no outage yet");
        assert_eq!(contacts.record_failure(peer), 1);
        assert_eq!(contacts.clone().record_failure(peer), 2);
        assert_eq!(contacts.record_failure(other), 1, "peers count apart");
        assert_eq!(contacts.record_failure(peer), 3);

        let outage = contacts
            .record_answer(peer)
            .expect("the answer ends an outage");
        assert_eq!(outage.failures, 3);
        assert!(outage.since <= contacts.last_answer(peer).unwrap());
        // Ended: the next failure starts a new run, the next answer ends none.
        assert_eq!(contacts.record_answer(peer), None);
        assert_eq!(contacts.record_failure(peer), 1);
        assert_eq!(contacts.record_answer(other).map(|o| o.failures), Some(1));
    }
}
