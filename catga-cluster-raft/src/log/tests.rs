//! The recommended filter against events shaped like openraft 0.9.25's own
//! (same target, level and field names; the messages are theirs).

use tracing::Level;

use super::capture::Capture;
use super::recommended_filter;

/// Emits one event of each kind that matters and returns the messages that
/// passed the filter.
fn passed(filter: &str) -> Vec<String> {
    let (_guard, capture) = Capture::install(filter);
    let (peer, e) = (
        2u64,
        "Unreachable node: node 2 is unreachable: tcp connect error",
    );

    // openraft::core::raft_core: per-peer RPC failures (dropped)...
    tracing::error!(target: "openraft::core::raft_core", { error = %e, target = peer }, "while requesting vote");
    tracing::error!(target: "openraft::core::raft_core", { error = %e, target = peer }, "timeout");
    tracing::error!(target: "openraft::core::raft_core", target = peer, error = %e, "timeout while confirming leadership for read request");
    // ...and the core's real errors (kept).
    tracing::error!(target: "openraft::core::raft_core", error = "storage failed", "quit RaftCore::main on error");
    tracing::error!(target: "openraft::core::raft_core", error = "io", "received Notify::ReplicationStorageError: handle");
    // Its warnings are about stale messages it ignores (dropped).
    tracing::warn!(target: "openraft::core::raft_core", "A message will be ignored because vote changed: msg sent by vote: T7-N0:uncommitted; current my vote: None; when (VoteResponse)");

    // openraft::replication: every retry to a down peer (dropped)...
    tracing::error!(target: "openraft::replication", err = %e, "RPCError");
    tracing::warn!(target: "openraft::replication", error = %e, "error replication to target=2");
    tracing::warn!(target: "openraft::replication", interval = "Some(400ms)", "backoff_drain_events backoff mode: drain events without processing them");
    // ...and its storage errors and contract warnings (kept).
    tracing::error!(target: "openraft::replication", error = "io", "error replication to target=2 (storage)");
    tracing::warn!(target: "openraft::replication", "limited_get_log_entries returned empty");

    // openraft::engine::handler::replication_handler (warnings dropped).
    tracing::warn!(target: "openraft::engine::handler::replication_handler", request_id = "HeartBeat", result = %e, "update progress error");
    tracing::warn!(target: "openraft::engine::handler::replication_handler", "heartbeat error: {e}, no update to inflight data");
    tracing::error!(target: "openraft::engine::handler::replication_handler", error = "x", "update_matching");

    // openraft's info lines (dropped); ours at info and up (kept).
    tracing::info!(target: "openraft::engine::engine_impl", "startup done: id=0 target_state: Learner");
    tracing::warn!(target: "catga_cluster::raft::network", peer = peer, failures = 1u64, "peer not answering");
    tracing::debug!(target: "catga_cluster::raft::network", peer = peer, failures = 2u64, "peer still not answering");
    tracing::info!(target: "catga_cluster::raft::network", peer = peer, failures = 2u64, "peer answers again");
    tracing::info!(target: "order_system", "starting");

    capture.take().into_iter().map(|r| r.message).collect()
}

#[test]
fn the_recommended_filter_drops_expected_rpc_failures_only() {
    assert_eq!(
        passed(recommended_filter()),
        [
            "quit RaftCore::main on error",
            "received Notify::ReplicationStorageError: handle",
            "error replication to target=2 (storage)",
            "limited_get_log_entries returned empty",
            "update_matching",
            "peer not answering",
            "peer answers again",
            "starting",
        ]
    );
}

#[test]
fn without_it_every_retry_is_reported() {
    // What the filter is for: plain `info` lets openraft's report of every
    // failed RPC through, and its state dumps.
    let all = passed("info");
    for expected in [
        "while requesting vote",
        "timeout while confirming leadership for read request",
        "RPCError",
        "update progress error",
        "startup done: id=0 target_state: Learner",
    ] {
        assert!(
            all.iter().any(|m| m == expected),
            "{expected} missing from {all:?}"
        );
    }
    assert_eq!(all.len(), 18, "every event but the debug one: {all:?}");
}

#[test]
fn your_own_directives_go_after_it() {
    let filter = format!(
        "{},catga_cluster::raft::network=debug",
        recommended_filter()
    );
    let passed = passed(&filter);
    assert!(passed.contains(&"peer still not answering".to_owned()));
    assert!(!passed.contains(&"RPCError".to_owned()));
}

#[test]
fn the_capture_sees_levels_targets_and_fields() {
    let (_guard, capture) = Capture::install("debug");
    tracing::warn!(target: "t", n = 3u64, "m");
    let records = capture.take();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].level, Level::WARN);
    assert_eq!(records[0].target, "t");
    assert_eq!(records[0].message, "m");
    assert_eq!(records[0].fields["n"], "3");
}

#[test]
fn the_documented_rust_log_is_the_recommended_filter() {
    let docs = include_str!("../log.rs");
    let shown = format!("RUST_LOG='{},my_app=debug'", recommended_filter());
    assert!(
        docs.contains(&shown),
        "the module docs show another filter than {shown}"
    );
}
