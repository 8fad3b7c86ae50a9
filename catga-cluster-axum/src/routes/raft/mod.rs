//! The routes backed by a `RaftNode`: Raft RPC (`rpc`), membership and
//! leadership transfer (`membership`), locks (`locks`) and the key-value
//! store (`kv`); `table` describes them. What the handlers share is here.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use catga_cluster_core::ClusterError;
use catga_cluster_raft::node::NodeStatus;
use catga_cluster_raft::{CommandResponse, RaftNode};

use super::state::AppState;
use crate::api::{FailoverDto, LastFailoverDto, MemberDto};
use crate::metrics::ForwardOutcome;
use crate::problem::Problem;

pub(crate) mod kv;
pub(crate) mod locks;
mod membership;
mod rpc;
mod table;
pub(crate) mod watch;

pub(super) use table::routes;

const TARGET: &str = "catga_cluster::axum::raft";

/// The members of a status, for answers.
pub(in crate::routes) fn members(status: &NodeStatus) -> Vec<MemberDto> {
    status
        .members
        .iter()
        .map(|m| MemberDto {
            id: m.node.id.get(),
            endpoint: m.node.endpoint.as_str().to_owned(),
            voter: m.voter,
        })
        .collect()
}

/// The fail-over view of a status, for answers.
pub(in crate::routes) fn failover(
    status: &catga_cluster_raft::node::FailoverStatus,
) -> FailoverDto {
    FailoverDto {
        fast_path: status.fast_path,
        watching: status.watching.map(|id| id.get()),
        last: status.last.as_ref().map(|f| LastFailoverDto {
            path: f.path.as_str(),
            term: f.term,
            previous_leader: f.previous_leader.map(|id| id.get()),
            took_ms: ms(f.took),
        }),
    }
}

/// The Raft node; the raft routes exist only when there is one.
pub(super) fn node(state: &AppState) -> Result<&RaftNode, Problem> {
    state.raft.as_ref().ok_or_else(Problem::internal)
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn unexpected(answer: CommandResponse) -> Problem {
    Problem::from(answer.into_unexpected())
}

/// Runs `call` (a node operation that a follower passes on to the leader
/// over the Raft transport) and counts it as a forward when this node did
/// not lead as it started.
pub(super) async fn observed<T>(
    state: &AppState,
    node: &RaftNode,
    call: impl std::future::Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    let was_leader = catga_cluster_core::ClusterCoordinator::is_leader(node);
    let result = call.await;
    if !was_leader {
        record_forward(state, &result);
    }
    result
}

/// Counts a request a follower passed on to the leader.
fn record_forward<T>(state: &AppState, result: &Result<T, ClusterError>) {
    let outcome = match result {
        Ok(_) => ForwardOutcome::Ok,
        Err(ClusterError::NotLeader(_)) => ForwardOutcome::NoLeader,
        Err(ClusterError::Timeout { .. } | ClusterError::UnknownOutcome { .. }) => {
            ForwardOutcome::Timeout
        }
        Err(_) => ForwardOutcome::Failed,
    };
    state.metrics.record_forward(outcome);
}

pub(super) fn finish(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}
