//! The `type` slugs of the problem documents (RFC 9457,
//! `application/problem+json`) of the HTTP contract: servers answer with
//! them, clients match on them.
//!
//! ```
//! use catga_cluster_core::protocol::problem;
//!
//! let answer = "hop-limit";
//! assert_eq!(answer, problem::HOP_LIMIT);
//! assert!(matches!(answer, problem::HOP_LIMIT | problem::NOT_LEADER));
//! ```

/// Another node leads (503), with the leader in `x-catga-leader` and
/// `x-catga-leader-id`.
pub const NOT_LEADER: &str = "not-leader";
/// No leader is known (503).
pub const NO_LEADER: &str = "no-leader";
/// The leader could not be reached or broke the connection (502).
pub const FORWARD_FAILED: &str = "forward-failed";
/// The leader did not answer in time (504).
pub const FORWARD_TIMEOUT: &str = "forward-timeout";
/// A request arrived forwarded as often as allowed (508).
pub const HOP_LIMIT: &str = "hop-limit";
/// Missing or wrong cluster secret (401).
pub const UNAUTHORIZED: &str = "unauthorized";
/// Malformed body or invalid values (400).
pub const BAD_REQUEST: &str = "bad-request";
/// Body over the route's limit (413).
pub const PAYLOAD_TOO_LARGE: &str = "payload-too-large";
/// Lock not acquired within the wait (409).
pub const LOCK_HELD: &str = "lock-held";
/// The token no longer holds the lock (409).
pub const LOCK_LOST: &str = "lock-lost";
/// Unknown key, member, command or route (404).
pub const NOT_FOUND: &str = "not-found";
/// `If-Match` named another revision (412).
pub const REVISION_MISMATCH: &str = "revision-mismatch";
/// The route does not serve this method (405).
pub const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
/// A Raft RPC addressed to another node (421).
pub const MISDIRECTED: &str = "misdirected";
/// An elect RPC at odds with the receiver's own view (409).
pub const RPC_REFUSED: &str = "rpc-refused";
/// The request's deadline passed (504).
pub const TIMEOUT: &str = "timeout";
/// A write timed out after it was sent: it may or may not have been applied
/// (504).
pub const UNKNOWN_OUTCOME: &str = "unknown-outcome";
/// The node is stopping (503).
pub const SHUTTING_DOWN: &str = "shutting-down";
/// Anything else (500).
pub const INTERNAL: &str = "internal";
/// A JSON route received a body that is not `application/json` (415).
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
/// Protected mode refused a cross-site request (403).
pub const FORBIDDEN: &str = "forbidden";
/// A node being added never caught up as a learner (409 or 504).
pub const MEMBER_UNREACHABLE: &str = "member-unreachable";
/// Another membership change has not finished (409).
pub const MEMBERSHIP_CHANGE_IN_PROGRESS: &str = "membership-change-in-progress";
/// The change would leave the voters without a reachable quorum (409).
pub const QUORUM_AT_RISK: &str = "quorum-at-risk";
/// A watch asked to start at a revision older than the kept history (410).
pub const COMPACTED: &str = "compacted";
