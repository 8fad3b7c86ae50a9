//! Raft RPC: the transport-agnostic handler of `catga-cluster-raft` on
//! `POST /cluster/raft/{rpc}`, and the leader watch on
//! `GET /cluster/raft/watch`.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use catga_cluster_core::protocol::RaftRpc;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};

use super::{finish, node};
use crate::response::read_body;
use crate::routes::state::AppState;

pub(super) async fn raft_rpc(
    State(state): State<AppState>,
    rpc: RaftRpc,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let bytes = read_body(body).await?;
            let answer = node.rpc_handler().handle(rpc, &headers, &bytes).await?;
            let mut response = Response::new(Body::from(answer));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(catga_cluster_raft::network::CONTENT_TYPE),
            );
            Ok(response)
        }
        .await,
    )
}

/// The leader watch: a `200` whose body lasts as long as this node leads
/// (see `catga_cluster_raft::network::LeaderWatch`).
pub(super) async fn raft_watch(State(state): State<AppState>, headers: HeaderMap) -> Response {
    finish((|| {
        let node = node(&state)?;
        let watch = node.rpc_handler().watch(&headers)?;
        let mut response = Response::new(Body::new(watch));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(catga_cluster_raft::network::CONTENT_TYPE),
        );
        Ok(response)
    })())
}
