//! Header names, paths and problem types shared by every catga-cluster
//! client and server.
//!
//! Clients and servers use these constants, never their own string literals,
//! so the two sides cannot drift apart. The values are part of the HTTP
//! contract (`http-api.md`): headers and Raft RPC paths here, the other
//! routes in [`paths`], the `type` slugs of error answers in [`problem`].
//!
//! ```
//! use catga_cluster_core::protocol;
//! assert_eq!(protocol::FORWARDED_HEADER, "x-catga-forwarded");
//! assert_eq!(protocol::raft_rpc_path(protocol::RaftRpc::Vote), "/cluster/raft/vote");
//! assert_eq!(protocol::paths::HEALTH_LIVE, "/health/live");
//! assert_eq!(protocol::problem::NOT_LEADER, "not-leader");
//! ```

pub mod paths;
pub mod problem;

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

/// The media type of error answers (RFC 9457 problem documents), whose
/// `type` is one of the [`problem`] slugs.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

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
    /// A follower that saw its leader's process die asks another voter
    /// whether it confirms the death (crash fail-over).
    Gone,
}

impl RaftRpc {
    /// Every RPC, for routers that mount them all.
    pub const ALL: [RaftRpc; 7] = [
        RaftRpc::Append,
        RaftRpc::Vote,
        RaftRpc::Snapshot,
        RaftRpc::Elect,
        RaftRpc::Propose,
        RaftRpc::Read,
        RaftRpc::Gone,
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
        RaftRpc::Gone => "/cluster/raft/gone",
    }
}

/// The leader watch: a follower's long-lived `GET` to its leader, whose
/// abrupt end tells the follower within milliseconds that the leader's
/// process may be gone (crash fail-over). Protected like the Raft RPCs; the
/// target node travels in [`TARGET_NODE_HEADER`].
pub const RAFT_WATCH_PATH: &str = "/cluster/raft/watch";

/// The credentials of an `Authorization: Bearer <token>` value, parsed by
/// one rule on every protected route and RPC (RFC 9110 §11.4, which
/// RFC 7235 defined first): the scheme is matched case-insensitively, one
/// space separates it from the token, and the token is not empty, neither
/// starts nor ends with white space and holds no control characters
/// (a secret may contain inner spaces). Anything else (`Bearer  x` with two
/// spaces, a trailing space, a tab, another scheme) is no bearer credential.
///
/// ```
/// use catga_cluster_core::protocol::bearer_token;
/// assert_eq!(bearer_token(b"Bearer s3cret"), Some(&b"s3cret"[..]));
/// assert_eq!(bearer_token(b"bearer s3cret"), Some(&b"s3cret"[..]));
/// assert_eq!(bearer_token(b"Bearer  s3cret"), None);
/// assert_eq!(bearer_token(b"Bearer s3cret "), None);
/// assert_eq!(bearer_token(b"Bearer correct horse"), Some(&b"correct horse"[..]));
/// assert_eq!(bearer_token(b"Basic czNjcmV0"), None);
/// ```
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = &value[SCHEME.len()..];
    let padded = |b: Option<&u8>| b.is_some_and(u8::is_ascii_whitespace);
    if padded(token.first()) || padded(token.last()) || token.iter().any(u8::is_ascii_control) {
        return None;
    }
    Some(token)
}

/// The value of an `Authorization` header that presents `secret` as a
/// bearer token, as every client of the cluster sends it, marked sensitive
/// (`Debug` hides it, HTTP/2 never indexes it). A secret that a header
/// cannot carry (control characters) is an error.
///
/// ```
/// use catga_cluster_core::protocol::{bearer_header_value, bearer_token};
///
/// let value = bearer_header_value("s3cret").unwrap();
/// assert!(value.is_sensitive());
/// assert_eq!(bearer_token(value.as_bytes()), Some(&b"s3cret"[..]));
/// assert!(bearer_header_value("line\nbreak").is_err());
/// ```
pub fn bearer_header_value(
    secret: &str,
) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {secret}"))?;
    value.set_sensitive(true);
    Ok(value)
}
