//! What the Raft RPCs carry: the request and answer of every RPC, and their
//! strict binary encoding ([`BodyError`] says what is refused).
//!
//! These are plain data. They name the log's types and the state machine's
//! values ([`crate::types`]), never the node, the server handler or a
//! client, so both sides of the wire depend on this module and it depends on
//! neither.
//!
//! `append`, `vote` and `snapshot` carry openraft's own messages; their
//! answers are the encoded `Result` of the Raft call ([`AppendResult`],
//! [`VoteResult`], [`SnapshotResult`]). `elect` carries an [`ElectRequest`],
//! `propose` a [`ProposeRequest`], `read` a [`ReadRequest`] and `gone` a
//! [`GoneRequest`]; the leader's failures cross the wire as a [`WireError`].
//! The leader watch streams [`WatchFrame`]s (see [`watch`]).

use std::time::Duration;

use catga_cluster_core::{ClusterError, NodeId, NotLeader};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
use openraft::LogId;

use crate::types::{CommandResponse, KvValue, LockState, Operation};

mod codec;
pub(crate) mod watch;

pub use codec::BodyError;
pub(crate) use codec::{decode, decode_canonical, encode};
pub use watch::LeaderWatch;
pub(crate) use watch::{FrameReader, WatchEnd, WatchFrame};

/// The content type of Raft RPC bodies.
pub const CONTENT_TYPE: &str = "application/vnd.catga.raft+postcard";

/// The answer to an append-entries RPC.
pub(crate) type AppendResult = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a vote RPC.
pub(crate) type VoteResult = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a snapshot-chunk RPC.
pub(crate) type SnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;
/// The answer to an elect RPC.
pub(crate) type ElectResult = Result<(), String>;

/// The body of an elect RPC: who asks, and in which term.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ElectRequest {
    pub(crate) from: NodeId,
    pub(crate) term: u64,
}

/// The body of a gone RPC: `from` saw the process of `leader`, the leader
/// it followed in `term`, die (its watch broke and its endpoint refused a
/// connection), and asks whether the receiver confirms it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GoneRequest {
    pub(crate) from: NodeId,
    pub(crate) leader: NodeId,
    pub(crate) term: u64,
}

/// The answer to a gone RPC: whether the receiver confirmed the death on
/// its own (and so no longer holds the dead leader's lease), and how far
/// its log reaches, by which the survivors rank themselves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GoneAnswer {
    pub(crate) confirmed: bool,
    pub(crate) last_log: Option<LogId<NodeId>>,
}

/// A command a follower forwards to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProposeRequest {
    pub(crate) request_id: Option<String>,
    pub(crate) op: Operation,
}

/// A read a follower forwards to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum ReadRequest {
    Get {
        key: String,
    },
    List {
        prefix: String,
        limit: usize,
    },
    Lock {
        name: String,
    },
    /// The leader's applied index after a quorum round: a linearizable
    /// start point (for watches).
    Index,
}

/// The leader's answer to a [`ReadRequest`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum ReadAnswer {
    Value(Option<KvValue>),
    Entries(Vec<(String, KvValue)>),
    Lock {
        state: Option<LockState>,
        clock_ms: u64,
    },
    Index(u64),
}

/// A cluster error as it crosses the wire.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum WireError {
    NotLeader(NotLeader),
    UnknownOutcome,
    Timeout,
    Invalid(String),
    Shutdown,
    Storage(String),
    Other(String),
}

impl WireError {
    pub(crate) fn from_cluster(e: &ClusterError) -> Self {
        match e {
            ClusterError::NotLeader(n) => WireError::NotLeader(n.clone()),
            ClusterError::UnknownOutcome { .. } => WireError::UnknownOutcome,
            ClusterError::Timeout { .. } => WireError::Timeout,
            ClusterError::InvalidRequest(r) => WireError::Invalid(r.clone()),
            ClusterError::Shutdown => WireError::Shutdown,
            ClusterError::Storage(s) => WireError::Storage(s.clone()),
            other => WireError::Other(other.to_string()),
        }
    }

    pub(crate) fn into_cluster(self, operation: &'static str, after: Duration) -> ClusterError {
        match self {
            WireError::NotLeader(n) => ClusterError::NotLeader(n),
            WireError::UnknownOutcome => ClusterError::UnknownOutcome { operation, after },
            WireError::Timeout => ClusterError::Timeout { operation, after },
            WireError::Invalid(r) => ClusterError::InvalidRequest(r),
            WireError::Shutdown => ClusterError::Shutdown,
            WireError::Storage(s) => ClusterError::Storage(s),
            WireError::Other(s) => ClusterError::Other(s.into()),
        }
    }
}

/// The answer to a propose RPC.
pub(crate) type ProposeResult = Result<CommandResponse, WireError>;
/// The answer to a read RPC.
pub(crate) type ReadResult = Result<ReadAnswer, WireError>;
