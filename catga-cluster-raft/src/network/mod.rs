//! Raft RPCs: what goes on the wire, the transport-agnostic server handler
//! ([`RaftRpcHandler`]) and the clients (HTTP, and an in-process network for
//! tests).
//!
//! Every RPC is one HTTP `POST` to a path from
//! [`catga_cluster_core::protocol`], with a compact binary body (postcard,
//! content type [`CONTENT_TYPE`]), the target node id in
//! `x-catga-target-node` and, when the cluster has a secret,
//! `Authorization: Bearer <secret>`. The receiver checks both before it
//! decodes anything, so a mis-addressed RPC is rejected, never applied. The
//! answer is the encoded `Result` of the Raft call: `200` with a body for
//! every answer Raft gave (including its errors), and a problem status for a
//! request that never reached Raft ([`RpcRejection`]).
//!
//! # What each RPC checks
//!
//! Every RPC, in this order:
//!
//! 1. the cluster secret, when one is configured ([`RpcRejection::Unauthorized`]);
//!    without one, the HTTP edge answers loopback peers only;
//! 2. the target node header names this node
//!    ([`RpcRejection::MissingTarget`], [`RpcRejection::Misdirected`]);
//! 3. the body decodes strictly ([`RpcRejection::BadBody`]): not empty, no
//!    bytes after the message, no unknown enum variant, no length or varint
//!    past the end, and only the canonical encoding (see [`BodyError`]).
//!
//! Then, per RPC:
//!
//! | RPC | what is checked beyond the above |
//! |---|---|
//! | `append`, `vote`, `snapshot` | openraft's own rules: a message from an older term or with a smaller vote is answered with a refusal inside the `200` answer, and changes nothing |
//! | `elect` | the sender is another voter and the leader this node follows in the request's term, which is this node's current term; this node is a voter and its log is consistent; otherwise [`RpcRejection::ElectRefused`] (`409`) and no election. The request this node last stood for is answered again as accepted, starting nothing (a hand-over asks again while it waits) |
//! | `gone` | nothing the receiver acts on unchecked: it confirms a leader's death only if it follows that leader in that term and its own probe of the leader's endpoint is refused (see the [crash fail-over](crate::node#crash-fail-over)); otherwise it answers "not confirmed" inside the `200` answer and nothing changes |
//! | `propose`, `read` | nothing about the sender (they carry a client's command or read, not a Raft claim): the receiver runs them only as the leader, with the checks of a local write or read (command limits, a read-index round), and a follower answers `not-leader` inside the `200` answer, never forwarding again |
//!
//! The sender of `elect` is a claim checked against this node's own view,
//! not authentication: the secret (or loopback) gate authenticates peers,
//! and whoever passes it and reads `/cluster/status` can name the leader
//! and the term. The check makes garbage, replayed and disagreeing requests
//! harmless; a refused request starts no election.
//!
//! The leader watch, a `GET` on
//! [`RAFT_WATCH_PATH`](catga_cluster_core::protocol::RAFT_WATCH_PATH), is
//! checked like every RPC (secret, target) and answered only by a node
//! that leads and claims leadership ([`RpcRejection::NotLeading`]
//! otherwise); its body is a [`LeaderWatch`].
//!
//! `append`, `vote` and `snapshot` get no sender check of their own: a new
//! learner with an empty log must accept the leader's first `append`
//! before it knows the membership, and openraft already refuses an older
//! term or a smaller vote. A forged `vote` or `append` with a larger term
//! can still disturb the cluster, which is what the secret is for.

// The modules depend on each other one way. `wire` (the messages and their
// strict encoding) is plain data and names nothing else here; `failure` and
// `contacts` name nothing else here either, `liveness` (the watch's events
// and the probe) only `wire`; the clients (`http_client`, `memory`) use
// `wire`, `failure` and `liveness`, and take their settings as values (the
// HTTP client also the rules of `faults`, which name nothing else here); the
// server side (`server`, with the elect check) uses `wire` and the node, and
// nothing here uses it: the in-process network reaches it through the
// `memory::Serve` trait.
pub(crate) mod contacts;
pub(crate) mod failure;
#[cfg(feature = "test-util")]
pub mod faults;
pub(crate) mod http_client;
pub(crate) mod liveness;
#[cfg(feature = "test-util")]
pub mod memory;
pub(crate) mod server;
pub(crate) mod wire;

pub use server::elect::ElectRefusal;
pub use server::{RaftRpcHandler, RpcRejection};
pub use wire::{BodyError, LeaderWatch, CONTENT_TYPE};
