//! Membership changes and leadership transfer.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use catga_cluster_core::{Endpoint, NodeId, NodeInfo};
use http::StatusCode;

use super::{finish, members, node, TARGET};
use crate::api::{AddMemberRequest, LeaderDto, MembersDto, TransferDto, TransferRequest};
use crate::problem::Problem;
use crate::response::{json, parse_json, read_body};
use crate::routes::state::AppState;

pub(super) async fn add_member(State(state): State<AppState>, body: Body) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let request: AddMemberRequest = parse_json(&read_body(body).await?, None)?;
            let endpoint = Endpoint::parse(&request.endpoint)
                .map_err(|e| Problem::bad_request(e.to_string()))?;
            let member = NodeInfo::new(NodeId::new(request.id), endpoint);
            tracing::info!(target: TARGET, node = %member, "adding a member");
            node.add_member(member).await?;
            Ok(json(
                StatusCode::OK,
                &MembersDto {
                    members: members(&node.status()),
                },
            ))
        }
        .await,
    )
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let id = id
                .trim()
                .parse::<u64>()
                .map(NodeId::new)
                .map_err(|_| Problem::bad_request(format!("`{id}` is not a node id")))?;
            if !node.status().members.iter().any(|m| m.node.id == id) {
                return Err(Problem::not_found(format!("node {id} is not a member")));
            }
            tracing::info!(target: TARGET, node_id = %id, "removing a member");
            node.remove_member(id).await?;
            Ok(json(
                StatusCode::OK,
                &MembersDto {
                    members: members(&node.status()),
                },
            ))
        }
        .await,
    )
}

pub(super) async fn transfer_leadership(State(state): State<AppState>, body: Body) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let request: TransferRequest =
                parse_json(&read_body(body).await?, Some(TransferRequest::default()))?;
            let leader = node
                .transfer_leadership(request.to.map(NodeId::new))
                .await?;
            let endpoint = node
                .status()
                .members
                .iter()
                .find(|m| m.node.id == leader)
                .map(|m| m.node.endpoint.as_str().to_owned());
            Ok(json(
                StatusCode::OK,
                &TransferDto {
                    leader: LeaderDto {
                        id: leader.get(),
                        endpoint,
                    },
                },
            ))
        }
        .await,
    )
}
