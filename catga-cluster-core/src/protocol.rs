//! Header names and paths shared by every catga-cluster client and server.
//!
//! Clients and servers use these constants, never their own string literals,
//! so the two sides cannot drift apart. The values are part of the HTTP
//! contract (`http-api.md`).
//!
//! ```
//! use catga_cluster_core::protocol;
//! assert_eq!(protocol::FORWARDED_HEADER, "x-catga-forwarded");
//! assert_eq!(protocol::raft_rpc_path(protocol::RaftRpc::Vote), "/cluster/raft/vote");
//! ```

/// Hop count of a forwarded request (`x-catga-forwarded: N`).
pub const FORWARDED_HEADER: &str = "x-catga-forwarded";
/// The node that executed a request (`x-catga-served-by: <node id>`).
pub const SERVED_BY_HEADER: &str = "x-catga-served-by";
/// The leader's endpoint, on `not-leader` answers.
pub const LEADER_HEADER: &str = "x-catga-leader";
/// The leader's id, on `not-leader` answers.
pub const LEADER_ID_HEADER: &str = "x-catga-leader-id";
/// The node a Raft RPC is addressed to; the receiver rejects a mismatch.
pub const TARGET_NODE_HEADER: &str = "x-catga-target-node";
/// The revision of a key-value entry.
pub const REVISION_HEADER: &str = "x-catga-revision";

/// The prefix of every cluster route.
pub const CLUSTER_PREFIX: &str = "/cluster";
/// The path of forwarded typed commands; the command name follows.
pub const FORWARD_PATH_PREFIX: &str = "/cluster/forward/";

/// The internal Raft RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RaftRpc {
    /// Log replication and heartbeats.
    Append,
    /// Vote requests.
    Vote,
    /// Snapshot installation.
    Snapshot,
    /// Asks the receiver to start an election now (graceful hand-over).
    Elect,
    /// A command forwarded by a follower to the leader.
    Propose,
    /// A linearizable read forwarded by a follower to the leader.
    Read,
}

impl RaftRpc {
    /// Every RPC, for routers that mount them all.
    pub const ALL: [RaftRpc; 6] = [
        RaftRpc::Append,
        RaftRpc::Vote,
        RaftRpc::Snapshot,
        RaftRpc::Elect,
        RaftRpc::Propose,
        RaftRpc::Read,
    ];
}

/// The HTTP path of a Raft RPC.
pub const fn raft_rpc_path(rpc: RaftRpc) -> &'static str {
    match rpc {
        RaftRpc::Append => "/cluster/raft/append",
        RaftRpc::Vote => "/cluster/raft/vote",
        RaftRpc::Snapshot => "/cluster/raft/snapshot",
        RaftRpc::Elect => "/cluster/raft/elect",
        RaftRpc::Propose => "/cluster/raft/propose",
        RaftRpc::Read => "/cluster/raft/read",
    }
}
