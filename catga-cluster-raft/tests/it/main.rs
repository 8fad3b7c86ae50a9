//! The integration tests of catga-cluster-raft, in one test binary (one
//! link instead of one per file):
//!
//! * `cluster`: multi-node behaviour over the in-memory network;
//! * `fair_lock`: the lock's queue: arrival order, waiters that leave or
//!   vanish, two calls of one owner;
//! * `log_store`: the log store and the snapshot store;
//! * `replicated_state`: the replicated lock and key-value store;
//! * `rpc_refusals`: Raft RPCs refuse garbage and forged requests;
//! * `support`: a cluster of nodes in one process, for the others.
//!
//! All but `log_store` need the in-memory network (feature `test-util`).

#[cfg(feature = "test-util")]
mod cluster;
#[cfg(feature = "test-util")]
mod fair_lock;
mod log_store;
#[cfg(feature = "test-util")]
mod replicated_state;
#[cfg(feature = "test-util")]
mod rpc_refusals;
#[cfg(feature = "test-util")]
mod support;
