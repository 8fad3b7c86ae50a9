//! The replicated key-value store, and commands submitted from any node.
//!
//! Every operation works on any node: a follower forwards it to the leader
//! over the cluster transport (`/cluster/raft/propose` and
//! `/cluster/raft/read`). Writes carry a request id, generated when the
//! caller gives none, so a write retried after a time-out or a fail-over is
//! applied once. Reads are linearizable: the leader confirms its leadership
//! with a quorum and waits until its state machine has caught up before it
//! answers.
//!
//! Revisions are log indexes: every write gives its key the index of the
//! entry that wrote it, so a key's revisions grow strictly and a write never
//! has a lower revision than one acknowledged before it was sent. Writes
//! that the node grouped into one entry (group commit, see
//! [`BatchOptions`](crate::BatchOptions)) share that entry's index, like the
//! keys of one etcd transaction; two writes of the same key never share one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::{ClusterCoordinator, ClusterError, NotLeader, NotLeaderReason};
use tokio::time::Instant;

use crate::network::wire::{ProposeRequest, ReadAnswer, ReadRequest, WireError};
use crate::node::RaftNode;
use crate::types::{CommandResponse, KvValue, Operation};

/// The outcome of a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CasOutcome {
    /// The write happened; the key's new revision.
    Written(u64),
    /// The key's revision did not match; its current revision (0: absent).
    Mismatch(u64),
}

/// A request id unique across the cluster's lifetime: node id, a random
/// process nonce and a counter.
pub(crate) fn new_request_id(node: u64) -> String {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| fastrand::u64(..));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{node:x}-{nonce:016x}-{n:x}")
}

impl RaftNode {
    /// Proposes `op` from any node and waits for its answer: applied on the
    /// leader directly, forwarded to it from a follower.
    ///
    /// While no leader is known (an election), or the leader moves, the
    /// command is retried (with the same request id) until the write
    /// deadline; a command that may have reached the leader but got no answer
    /// in time reports [`ClusterError::UnknownOutcome`].
    pub async fn submit(
        &self,
        op: Operation,
        request_id: Option<String>,
    ) -> Result<CommandResponse, ClusterError> {
        let request_id = request_id.unwrap_or_else(|| new_request_id(self.node().id.get()));
        let request = ProposeRequest {
            request_id: Some(request_id),
            op,
        };
        self.with_leader("the write", |node, remaining| {
            let request = request.clone();
            async move {
                if node.leadership().leader_id() == Some(node.node().id) {
                    return match node.write(request.op, request.request_id).await {
                        Err(ClusterError::UnknownOutcome { .. }) => Err(Attempt::MaybeApplied),
                        other => other.map_err(Attempt::Failed),
                    };
                }
                node.inner()
                    .forwarder()
                    .forward(&node, request, remaining)
                    .await
            }
        })
        .await
    }

    /// Runs a read on the leader, forwarding it from a follower.
    pub(crate) async fn read_anywhere(&self, req: ReadRequest) -> Result<ReadAnswer, ClusterError> {
        self.with_leader("the read", |node, remaining| {
            let req = req.clone();
            async move {
                if node.leadership().leader_id() == Some(node.node().id) {
                    return node
                        .read_local_linearizable(req)
                        .await
                        .map_err(Attempt::Failed);
                }
                node.forward::<ReadRequest, ReadAnswer>(RaftRpc::Read, &req, remaining)
                    .await
            }
        })
        .await
    }

    /// Serves a read on this node, which must lead: a quorum round, then the
    /// local state machine (which `ensure_leader` waited for).
    pub(crate) async fn read_local_linearizable(
        &self,
        req: ReadRequest,
    ) -> Result<ReadAnswer, ClusterError> {
        self.ensure_leader().await?;
        let sm = self.state_machine();
        Ok(match req {
            ReadRequest::Get { key } => ReadAnswer::Value(sm.get(&key)),
            ReadRequest::List { prefix, limit } => ReadAnswer::Entries(sm.list(&prefix, limit)),
            ReadRequest::Lock { name } => {
                let (state, clock_ms) = sm.lock(&name);
                ReadAnswer::Lock { state, clock_ms }
            }
            ReadRequest::Index => ReadAnswer::Index(sm.last_applied().map_or(0, |l| l.index)),
        })
    }

    /// Sends one request to the known leader.
    pub(crate) async fn forward<Req, A>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        remaining: Duration,
    ) -> Result<A, Attempt>
    where
        Req: serde::Serialize,
        A: serde::de::DeserializeOwned,
    {
        let Some(leader) = self.leader() else {
            return Err(Attempt::Failed(
                NotLeader::new(NotLeaderReason::NoLeader).into(),
            ));
        };
        match self
            .network()
            .call::<Req, Result<A, WireError>>(
                leader.id,
                leader.endpoint.as_str(),
                rpc,
                request,
                remaining,
            )
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(WireError::UnknownOutcome)) => Err(Attempt::MaybeApplied),
            Ok(Err(e)) => Err(Attempt::Failed(
                e.into_cluster("the forwarded request", remaining),
            )),
            Err(failure) if failure.undelivered() => Err(Attempt::Failed(
                NotLeader::new(NotLeaderReason::NoLeader).into(),
            )),
            Err(failure) => {
                tracing::debug!(target: "catga_cluster::raft", %failure, "forward failed");
                Err(Attempt::MaybeApplied)
            }
        }
    }

    /// Runs `attempt` against the leader until it gives an answer, retrying
    /// while leadership is unknown or moving, until the write deadline.
    async fn with_leader<T, F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, ClusterError>
    where
        F: FnMut(RaftNode, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let budget = self.options().write_timeout;
        let deadline = Instant::now() + budget;
        let mut maybe_applied = false;
        let mut rx = self.subscribe();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = attempt(self.clone(), remaining.max(Duration::from_millis(1))).await;
            let last_error = match result {
                Ok(t) => return Ok(t),
                Err(Attempt::MaybeApplied) => {
                    maybe_applied = true;
                    None
                }
                Err(Attempt::Failed(ClusterError::NotLeader(e))) => {
                    Some(ClusterError::NotLeader(e))
                }
                Err(Attempt::Failed(other)) => return Err(other),
            };
            if Instant::now() >= deadline {
                return Err(match (maybe_applied, last_error) {
                    (true, _) => ClusterError::UnknownOutcome {
                        operation,
                        after: budget,
                    },
                    (false, Some(e)) => e,
                    (false, None) => ClusterError::Timeout {
                        operation,
                        after: budget,
                    },
                });
            }
            // Wait for a leadership change, or a short pause when the
            // snapshot already names a leader that just refused.
            rx.borrow_and_update();
            let pause = Duration::from_millis(10);
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + pause * 10), async {
                if self.leadership().leader.is_some() {
                    tokio::time::sleep(pause).await;
                } else {
                    let _ = rx.changed().await;
                }
            })
            .await;
        }
    }

    /// A linearizable read of a key, from any node.
    ///
    /// `None`: the key does not exist. A follower asks the leader, which
    /// confirms its leadership with a quorum first, so the answer reflects
    /// every write acknowledged before the call.
    ///
    /// ```no_run
    /// # async fn run(node: catga_cluster_raft::RaftNode) -> Result<(), catga_cluster_core::ClusterError> {
    /// if let Some(value) = node.get("orders/42").await? {
    ///     println!("{} bytes at revision {}", value.value.len(), value.revision);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<KvValue>, ClusterError> {
        match self
            .read_anywhere(ReadRequest::Get {
                key: key.to_owned(),
            })
            .await?
        {
            ReadAnswer::Value(v) => Ok(v),
            other => Err(ClusterError::Other(
                format!("unexpected answer {other:?}").into(),
            )),
        }
    }

    /// The keys starting with `prefix`, in key order, at most `limit`;
    /// linearizable, from any node.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, KvValue)>, ClusterError> {
        let req = ReadRequest::List {
            prefix: prefix.to_owned(),
            limit,
        };
        match self.read_anywhere(req).await? {
            ReadAnswer::Entries(e) => Ok(e),
            other => Err(ClusterError::Other(
                format!("unexpected answer {other:?}").into(),
            )),
        }
    }

    /// Writes a key, from any node; returns its new revision.
    ///
    /// A write whose answer did not arrive in time reports
    /// [`ClusterError::UnknownOutcome`]: it may still be applied. Use
    /// [`put_with_id`](RaftNode::put_with_id) to retry such a write safely.
    ///
    /// ```no_run
    /// # async fn run(node: catga_cluster_raft::RaftNode) -> Result<(), catga_cluster_core::ClusterError> {
    /// let revision = node.put("orders/42", br#"{"total":10}"#.to_vec()).await?;
    /// # let _ = revision;
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, ClusterError> {
        match self.compare_and_set_inner(key, value, None, None).await? {
            CasOutcome::Written(revision) => Ok(revision),
            CasOutcome::Mismatch(_) => {
                Err(ClusterError::Other("unconditional put mismatched".into()))
            }
        }
    }

    /// Writes a key only if its revision is `expected` (0: only if absent),
    /// from any node.
    ///
    /// ```no_run
    /// use catga_cluster_raft::CasOutcome;
    ///
    /// # async fn run(node: catga_cluster_raft::RaftNode) -> Result<(), catga_cluster_core::ClusterError> {
    /// // Create the key only if nobody else has.
    /// match node.compare_and_set("leader-note", 0, b"mine".to_vec()).await? {
    ///     CasOutcome::Written(revision) => println!("written at {revision}"),
    ///     CasOutcome::Mismatch(current) => println!("already there, revision {current}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn compare_and_set(
        &self,
        key: &str,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<CasOutcome, ClusterError> {
        self.compare_and_set_inner(key, value, Some(expected), None)
            .await
    }

    /// [`RaftNode::compare_and_set`] (or a plain put with `expected: None`)
    /// with the caller's request id, for idempotent retries across calls.
    pub async fn put_with_id(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
        request_id: String,
    ) -> Result<CasOutcome, ClusterError> {
        self.compare_and_set_inner(key, value, expected, Some(request_id))
            .await
    }

    async fn compare_and_set_inner(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
        request_id: Option<String>,
    ) -> Result<CasOutcome, ClusterError> {
        let op = Operation::Put {
            key: key.to_owned(),
            value,
            expected_revision: expected,
        };
        match self.submit(op, request_id).await? {
            CommandResponse::Written { revision } => Ok(CasOutcome::Written(revision)),
            CommandResponse::RevisionMismatch { current } => Ok(CasOutcome::Mismatch(current)),
            other => Err(other.into_unexpected()),
        }
    }

    /// Writes a key that expires `ttl` from now by the leader's clock (a
    /// delete, seen by watches), optionally only if its revision is
    /// `expected`; a later write sets its expiry again. See
    /// [`Operation::PutTtl`].
    pub async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
        expected: Option<u64>,
    ) -> Result<CasOutcome, ClusterError> {
        let op = Operation::PutTtl {
            key: key.to_owned(),
            value,
            expected_revision: expected,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        match self.submit(op, None).await? {
            CommandResponse::Written { revision } => Ok(CasOutcome::Written(revision)),
            CommandResponse::RevisionMismatch { current } => Ok(CasOutcome::Mismatch(current)),
            other => Err(other.into_unexpected()),
        }
    }

    /// Deletes a key, optionally only if its revision is `expected`.
    /// `Ok(true)`: it existed.
    pub async fn delete(
        &self,
        key: &str,
        expected: Option<u64>,
    ) -> Result<Result<bool, u64>, ClusterError> {
        let op = Operation::Delete {
            key: key.to_owned(),
            expected_revision: expected,
        };
        match self.submit(op, None).await? {
            CommandResponse::Deleted { existed } => Ok(Ok(existed)),
            CommandResponse::RevisionMismatch { current } => Ok(Err(current)),
            other => Err(other.into_unexpected()),
        }
    }
}

/// One attempt's failure.
pub(crate) enum Attempt {
    /// The request may have been applied; retrying with the same request id
    /// is safe.
    MaybeApplied,
    /// A definite failure: retried only when it is `NotLeader`.
    Failed(ClusterError),
}
