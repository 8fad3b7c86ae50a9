//! Logging: what the node reports, and a filter that keeps openraft's
//! reports of expected conditions out of the log.
//!
//! A peer that is down, restarting or not yet started is an expected
//! condition in a cluster: Raft retries on its own. This crate's transport
//! (target `catga_cluster::raft::network`) says so once per peer — a
//! `WARN peer not answering` at the first failed RPC, `DEBUG` lines with
//! the running count while it retries, and `INFO peer answers again` with
//! the count and the duration when the peer is back.
//!
//! openraft 0.9 itself reports every failed RPC to such a peer at `ERROR`
//! or `WARN`: `while requesting vote … connect error` during elections,
//! `RPCError … Unreachable` plus three warnings on every replication retry
//! (every 400 ms with this crate's backoff), `timeout while confirming
//! leadership for read request` on every linearizable read, and a warning
//! for each late vote answer after an election. Those lines come
//! from openraft's code and cannot be changed here, but a log filter can
//! drop them. [`recommended_filter`] is such a filter: `info` for your code
//! and ours, openraft at `warn` (its `info` lines are internal state dumps),
//! and exactly its per-RPC failure reports turned off, so that openraft's
//! real errors (storage failures, a core that stops) still show:
//!
//! | directive | drops |
//! |---|---|
//! | `openraft=warn` | openraft's `info` and `debug` lines |
//! | `openraft::core::raft_core=error` | the core's three warnings, each about a stale message it ignores (`A message will be ignored because vote changed`: a late vote answer after an election, and the like) |
//! | `openraft::core::raft_core[{target}]=off` | the vote failures (`while requesting vote`, `timeout`) and `timeout while confirming leadership for read request`: the core's events that name a `target` peer |
//! | `openraft::replication[{err}]=off` | `ERROR RPCError` of every failed replication RPC |
//! | `openraft::replication[{interval}]=off` | `WARN … backoff mode: drain events …` |
//! | `openraft::replication[{error}]=error` | `WARN error replication to target=…` (and the two snapshot-transfer warnings with an `error` field); replication's storage errors stay |
//! | `openraft::engine::handler::replication_handler=error` | `WARN update progress error` and `WARN heartbeat error` |
//!
//! The field-name directives match events that carry a field of that name;
//! they hold for openraft 0.9.25, the version this crate pins.
//!
//! Use it as the default and let `RUST_LOG` override it (the example
//! binary does):
//!
//! ```no_run
//! use tracing_subscriber::EnvFilter;
//!
//! let filter = EnvFilter::try_from_default_env()
//!     .unwrap_or_else(|_| EnvFilter::new(catga_cluster_raft::log::recommended_filter()));
//! tracing_subscriber::fmt().with_env_filter(filter).init();
//! ```
//!
//! or give it in the environment, with your own directives after it:
//!
//! ```text
//! RUST_LOG='info,openraft=warn,openraft::core::raft_core=error,openraft::core::raft_core[{target}]=off,openraft::replication[{err}]=off,openraft::replication[{interval}]=off,openraft::replication[{error}]=error,openraft::engine::handler::replication_handler=error,my_app=debug'
//! ```
//!
//! To see every failed RPC, set `catga_cluster::raft::network=debug`; to
//! see openraft's own reports again, drop the `openraft` directives.

/// The log filter this crate recommends (an `EnvFilter` / `RUST_LOG`
/// directive string): `info`, with openraft at `warn` and its reports of
/// failed RPCs to unreachable peers turned off (see the [module
/// docs](self)).
///
/// Append your own directives after a comma.
///
/// ```
/// let directives = format!("{},my_app=debug", catga_cluster_raft::log::recommended_filter());
/// assert!(directives.starts_with("info,openraft=warn,"));
/// ```
pub fn recommended_filter() -> &'static str {
    RECOMMENDED_FILTER
}

const RECOMMENDED_FILTER: &str = concat!(
    "info,",
    "openraft=warn,",
    "openraft::core::raft_core=error,",
    "openraft::core::raft_core[{target}]=off,",
    "openraft::replication[{err}]=off,",
    "openraft::replication[{interval}]=off,",
    "openraft::replication[{error}]=error,",
    "openraft::engine::handler::replication_handler=error",
);

#[cfg(test)]
pub(crate) mod capture;
#[cfg(test)]
mod tests;
