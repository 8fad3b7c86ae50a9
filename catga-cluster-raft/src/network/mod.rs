//! Raft RPCs: what goes on the wire, the transport-agnostic server handler
//! and the clients (HTTP, and an in-process network for tests).
//!
//! Every RPC is one HTTP `POST` to a path from
//! [`catga_cluster_core::protocol`], with a compact binary body (postcard),
//! the target node id in `x-catga-target-node` and, when the cluster has a
//! secret, `Authorization: Bearer <secret>`. The receiver checks both before
//! it decodes anything, so a mis-addressed RPC is rejected, never applied.
//! The answer is the encoded `Result` of the Raft call: `200` with a body for
//! every answer Raft gave (including its errors), and a problem status for a
//! request that never reached Raft ([`RpcRejection`]). What the server checks
//! for each RPC is listed on [`RaftRpcHandler`]'s module, `server`.
//!
//! The modules depend on each other one way:
//!
//! * `wire`: the messages and their strict encoding ([`BodyError`]); plain
//!   data that names nothing else here;
//! * `failure`, `contacts`: why an RPC to a peer failed, and when each peer
//!   was last heard from;
//! * `http_client`: the peer client, given its settings as values;
//!   [`memory`]: the in-process network (feature `test-util`);
//! * `server`: [`RaftRpcHandler`] and the elect check; it depends on the
//!   node, and nothing here depends on it.

pub(crate) mod contacts;
pub(crate) mod failure;
pub(crate) mod http_client;
#[cfg(feature = "test-util")]
pub mod memory;
pub(crate) mod server;
pub(crate) mod wire;

pub use server::elect::ElectRefusal;
pub use server::{RaftRpcHandler, RpcRejection};
pub use wire::{BodyError, CONTENT_TYPE};
