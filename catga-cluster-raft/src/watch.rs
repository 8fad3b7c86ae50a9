//! Watching keys: a stream of the puts and deletes under a prefix, served
//! from the local state machine on every node.
//!
//! # Revisions and resumption
//!
//! An event's revision is the log index of the entry that applied it. The
//! writes the node grouped into one entry share its index, so several keys
//! can change at one revision (never the same key twice). Events are kept
//! and delivered in *whole revisions*: a watcher's buffer holds one item per
//! revision (all the events of that revision under its prefix), a watcher
//! cut off for being slow is cut at a revision boundary, and
//! [`WatchError::Lagged::last_revision`] names the last revision delivered in
//! full. A start revision is inclusive: resuming with
//! `from_revision = last_revision + 1` therefore neither skips an event of a
//! revision half delivered nor repeats one. (The HTTP stream names a
//! revision as its `id:` only on the event that completes it, for the same
//! reason.) Within a revision, events come in the order of the batch, the
//! same on every node. The expiry of a key with a time to live is applied
//! before the command of its entry: when that command writes the same key,
//! the key's delete and its put share the revision (in that order).
//!
//! # History
//!
//! The state machine keeps the most recent events, bounded by
//! [`StateMachineConfig::watch_history_events`] and
//! [`StateMachineConfig::watch_history_bytes`], so that a watcher can start
//! at a recent revision. A start older than what the history holds fails
//! with [`WatchError::Compacted`], naming the oldest revision one can start
//! at. The history holds only what this node applied since it started: a
//! node that restored or installed a snapshot holds no event before it (a
//! watcher running when a snapshot is installed is cut off with
//! [`WatchError::Lagged`], and its resumption finds the start compacted).
//!
//! [`StateMachineConfig::watch_history_events`]: crate::state_machine::StateMachineConfig::watch_history_events
//! [`StateMachineConfig::watch_history_bytes`]: crate::state_machine::StateMachineConfig::watch_history_bytes

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use catga_cluster_core::ClusterError;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::network::wire::{ReadAnswer, ReadRequest};
use crate::node::RaftNode;
use crate::types::KvValue;

/// A change of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// The key was written.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: Bytes,
        /// The revision of the write (the log index of its entry).
        revision: u64,
    },
    /// The key was deleted (a delete of an absent key is no event).
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete (the log index of its entry).
        revision: u64,
    },
}

impl KeyEvent {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            KeyEvent::Put { key, .. } | KeyEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        match self {
            KeyEvent::Put { revision, .. } | KeyEvent::Delete { revision, .. } => *revision,
        }
    }

    /// What the event counts for in the history's byte bound.
    fn size(&self) -> usize {
        let value = match self {
            KeyEvent::Put { value, .. } => value.len(),
            KeyEvent::Delete { .. } => 0,
        };
        self.key().len() + value + 32
    }
}

/// Why a watch cannot start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The start revision is older than the history this node keeps.
    #[error("revision compacted: the oldest revision a watch can start at is {oldest_revision}")]
    Compacted {
        /// The oldest revision a watch can start at now.
        oldest_revision: u64,
    },
    /// The watcher fell behind: its buffer was full (it read too slowly),
    /// or the node installed a snapshot. Every revision up to
    /// `last_revision` was delivered in full; resume from
    /// `last_revision + 1`.
    #[error("watcher lagged behind; every event up to revision {last_revision} was delivered")]
    Lagged {
        /// The last revision delivered in full.
        last_revision: u64,
    },
    /// The linearizable start point could not be established.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Bounds of the history and of each watcher's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchLimits {
    pub(crate) history_events: usize,
    pub(crate) history_bytes: usize,
    pub(crate) buffer: usize,
}

/// Marks a watcher not cut off.
const NOT_CUT: u64 = u64::MAX;

struct Watcher {
    prefix: String,
    from: u64,
    tx: mpsc::Sender<Vec<KeyEvent>>,
    cut: Arc<AtomicU64>,
}

struct HubState {
    history: VecDeque<KeyEvent>,
    bytes: usize,
    /// Every event of a revision at or after this one (up to `last`) is in
    /// the history.
    history_start: u64,
    /// The last log index published.
    last: u64,
    watchers: Vec<Watcher>,
}

/// The history and the watchers of a state machine.
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    limits: WatchLimits,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("WatchHub")
            .field("history", &s.history.len())
            .field("history_start", &s.history_start)
            .field("last", &s.last)
            .field("watchers", &s.watchers.len())
            .finish()
    }
}

impl WatchHub {
    /// A hub whose state starts after log index `last`.
    pub(crate) fn new(last: u64, limits: WatchLimits) -> Self {
        WatchHub {
            state: Mutex::new(HubState {
                history: VecDeque::new(),
                bytes: 0,
                history_start: last + 1,
                last,
                watchers: Vec::new(),
            }),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the events of the entries applied up to log index `last`,
    /// in order.
    pub(crate) fn publish(&self, last: u64, events: Vec<KeyEvent>) {
        let mut s = self.lock();
        if !events.is_empty() {
            s.watchers.retain(|w| deliver(w, &events));
            for event in events {
                s.bytes += event.size();
                s.history.push_back(event);
            }
            while s.history.len() > self.limits.history_events
                || s.bytes > self.limits.history_bytes
            {
                let Some(old) = s.history.pop_front() else {
                    break;
                };
                s.bytes -= old.size();
                s.history_start = old.revision() + 1;
            }
        }
        s.last = s.last.max(last);
    }

    /// Forgets the history after a snapshot was installed at log index
    /// `last`, and cuts every watcher off.
    pub(crate) fn reset(&self, last: u64) {
        let mut s = self.lock();
        let through = s.last;
        for w in s.watchers.drain(..) {
            w.cut
                .store(through.max(w.from.saturating_sub(1)), Ordering::Release);
        }
        s.history.clear();
        s.bytes = 0;
        s.history_start = last + 1;
        s.last = last;
    }

    /// Ends every watcher's stream (without an error).
    pub(crate) fn close(&self) {
        self.lock().watchers.clear();
    }

    /// The oldest revision a watch can start at.
    pub(crate) fn oldest(&self) -> u64 {
        self.lock().history_start
    }

    /// Starts a watcher of `prefix` at revision `from` (inclusive), or after
    /// the last index published.
    pub(crate) fn watch(&self, prefix: &str, from: Option<u64>) -> Result<WatchStream, WatchError> {
        let mut s = self.lock();
        let from = from.unwrap_or(s.last + 1).max(1);
        if from <= s.last && from < s.history_start {
            return Err(WatchError::Compacted {
                oldest_revision: s.history_start,
            });
        }
        let backlog: VecDeque<KeyEvent> = s
            .history
            .iter()
            .filter(|e| e.revision() >= from && e.key().starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.limits.buffer.max(1));
        let cut = Arc::new(AtomicU64::new(NOT_CUT));
        s.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            from,
            tx,
            cut: Arc::clone(&cut),
        });
        Ok(WatchStream {
            start_revision: from,
            current: backlog,
            rx,
            cut,
            done: false,
        })
    }
}

/// Sends a watcher its share of `events`, one item per revision; false when
/// it is gone or cut off.
fn deliver(w: &Watcher, events: &[KeyEvent]) -> bool {
    let mut group: Vec<KeyEvent> = Vec::new();
    let flush = |group: &mut Vec<KeyEvent>| -> bool {
        let Some(first) = group.first() else {
            return true;
        };
        let revision = first.revision();
        match w.tx.try_send(std::mem::take(group)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                w.cut.store(revision - 1, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    };
    for e in events {
        if e.revision() < w.from || !e.key().starts_with(&w.prefix) {
            continue;
        }
        if group.first().is_some_and(|g| g.revision() != e.revision()) && !flush(&mut group) {
            return false;
        }
        group.push(e.clone());
    }
    flush(&mut group)
}

/// The events under a prefix, in revision order, from
/// [`RaftNode::watch`].
///
/// Ends (`None`) when the node stops; yields
/// [`WatchError::Lagged`] once, then ends, when the watcher is cut off.
pub struct WatchStream {
    start_revision: u64,
    current: VecDeque<KeyEvent>,
    rx: mpsc::Receiver<Vec<KeyEvent>>,
    cut: Arc<AtomicU64>,
    done: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("start_revision", &self.start_revision)
            .field("pending", &self.current.len())
            .finish()
    }
}

impl WatchStream {
    /// The first revision the stream covers.
    pub fn start_revision(&self) -> u64 {
        self.start_revision
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next_event(&mut self) -> Option<Result<KeyEvent, WatchError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Whether `last`, the event just read, completes its revision: no
    /// other event of that revision follows it. Events arrive one revision
    /// at a time, so this is known when `last` is read.
    pub fn completes_revision(&self, last: &KeyEvent) -> bool {
        self.current
            .front()
            .is_none_or(|next| next.revision() != last.revision())
    }
}

impl Stream for WatchStream {
    type Item = Result<KeyEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.current.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(group)) => self.current.extend(group),
                Poll::Ready(None) => {
                    self.done = true;
                    let cut = self.cut.load(Ordering::Acquire);
                    if cut != NOT_CUT {
                        return Poll::Ready(Some(Err(WatchError::Lagged { last_revision: cut })));
                    }
                }
            }
        }
    }
}

impl RaftNode {
    /// Watches the keys under `prefix`: their puts and deletes in revision
    /// order, without gaps or repeats, from revision `from_revision`
    /// (inclusive) or, with `None`, from *now*: after a linearizable start
    /// point (the leader confirms its leadership with a quorum and names
    /// its applied index; this node waits until it has applied as much),
    /// so every write acknowledged before the call is before the start.
    ///
    /// Served from this node's state machine, on any node; see the
    /// [module docs](crate::watch) for revisions shared by batched writes,
    /// the history and resumption.
    ///
    /// ```no_run
    /// # async fn run(node: catga_cluster_raft::RaftNode) -> Result<(), catga_cluster_raft::watch::WatchError> {
    /// let mut events = node.watch("orders/", None).await?;
    /// while let Some(event) = events.next_event().await {
    ///     println!("{:?}", event?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(
        &self,
        prefix: &str,
        from_revision: Option<u64>,
    ) -> Result<WatchStream, WatchError> {
        if from_revision.is_none() {
            self.linearizable_point().await?;
        }
        self.state_machine().watch(prefix, from_revision)
    }

    /// A linearizable read point served locally: the leader confirms its
    /// leadership with a quorum and names its applied index; this node
    /// waits until it has applied as much, and answers that index. Every
    /// write acknowledged before the call is applied here on return.
    pub async fn linearizable_point(&self) -> Result<u64, ClusterError> {
        let index = match self.read_anywhere(ReadRequest::Index).await? {
            ReadAnswer::Index(i) => i,
            other => {
                return Err(ClusterError::Other(
                    format!("unexpected answer {other:?}").into(),
                ))
            }
        };
        let mut applied = self.state_machine().subscribe();
        while applied.borrow_and_update().index < index {
            if applied.changed().await.is_err() {
                return Err(ClusterError::Shutdown);
            }
        }
        Ok(index)
    }

    /// The keys under `prefix`, in key order, at most `limit`, with the
    /// revision they were read at (the last index applied): a linearizable
    /// read served from this node's state machine after
    /// [`linearizable_point`](RaftNode::linearizable_point). A watch from
    /// `revision + 1` continues the listing without a gap.
    pub async fn list_at_revision(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<(Vec<(String, KvValue)>, u64), ClusterError> {
        self.linearizable_point().await?;
        Ok(self.state_machine().list_at_revision(prefix, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, revision: u64) -> KeyEvent {
        KeyEvent::Put {
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
            revision,
        }
    }

    fn hub() -> WatchHub {
        WatchHub::new(
            0,
            WatchLimits {
                history_events: 100,
                history_bytes: 1 << 20,
                buffer: 8,
            },
        )
    }

    #[tokio::test]
    async fn a_snapshot_install_cuts_watchers_off_and_compacts_the_history() {
        let hub = hub();
        let mut w = hub.watch("", None).unwrap();
        hub.publish(2, vec![put("a", 1), put("b", 2)]);
        hub.reset(10);
        assert_eq!(w.next_event().await.unwrap().unwrap(), put("a", 1));
        assert_eq!(w.next_event().await.unwrap().unwrap(), put("b", 2));
        match w.next_event().await {
            Some(Err(WatchError::Lagged { last_revision: 2 })) => {}
            other => panic!("expected lagged at 2, got {other:?}"),
        }
        match hub.watch("", Some(3)) {
            Err(WatchError::Compacted {
                oldest_revision: 11,
            }) => {}
            other => panic!("expected compacted, got {other:?}"),
        }
        assert!(hub.watch("", Some(11)).is_ok());
    }

    #[tokio::test]
    async fn a_slow_watcher_is_cut_at_a_revision_boundary() {
        let hub = WatchHub::new(
            0,
            WatchLimits {
                history_events: 100,
                history_bytes: 1 << 20,
                buffer: 1,
            },
        );
        let mut w = hub.watch("k/", None).unwrap();
        // One entry with two keys under the prefix, one outside, then
        // another entry: the second does not fit.
        hub.publish(
            5,
            vec![put("k/a", 5), put("x", 5), put("k/b", 5), put("k/c", 6)],
        );
        let a = w.next_event().await.unwrap().unwrap();
        assert_eq!(a, put("k/a", 5));
        assert!(!w.completes_revision(&a));
        let b = w.next_event().await.unwrap().unwrap();
        assert_eq!(b, put("k/b", 5));
        assert!(w.completes_revision(&b));
        match w.next_event().await {
            Some(Err(WatchError::Lagged { last_revision: 5 })) => {}
            other => panic!("expected lagged at 5, got {other:?}"),
        }
        let mut resumed = hub.watch("k/", Some(6)).unwrap();
        assert_eq!(resumed.next_event().await.unwrap().unwrap(), put("k/c", 6));
    }
}
