//! The routes backed by a `RaftNode`: Raft RPC, membership, leadership
//! transfer, locks and the key-value store.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use bytes::Bytes;
use catga_cluster_core::protocol::{
    raft_rpc_path, RaftRpc, FORWARDED_HEADER, REVISION_HEADER, TARGET_NODE_HEADER,
};
use catga_cluster_core::{ClusterCoordinator, ClusterError, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::node::NodeStatus;
use catga_cluster_raft::state_machine::limits;
use catga_cluster_raft::{Acquisition, CasOutcome, CommandResponse, Operation, RaftNode};
use http::header::{CONTENT_TYPE, IF_MATCH};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{AppState, Limits, Route};
use crate::api::{
    AcquireRequest, AddMemberRequest, KvDeletedDto, KvWrittenDto, LeaderDto, LockGrantDto,
    MemberDto, MembersDto, ReleaseRequest, ReleasedDto, RenewRequest, TransferDto, TransferRequest,
};
use crate::metrics::ForwardOutcome;
use crate::openapi::{resp, BodyDoc, ContentDoc, ResponseDoc, RouteDoc};
use crate::problem::Problem;
use crate::response::{json, parse_json, read_body};

use super::paths;

const TARGET: &str = "catga_cluster::axum::raft";

/// The Raft-backed routes of the table.
pub(super) fn routes(l: &Limits, admin_timeout: Duration) -> Vec<Route> {
    let lock_timeout = l.max_lock_wait + l.request_timeout;
    let forwarded: &'static [(&'static str, &'static str)] = &[(
        FORWARDED_HEADER,
        "how often the request was forwarded already",
    )];
    let mut table = Vec::new();
    for rpc in RaftRpc::ALL {
        let path = raft_rpc_path(rpc);
        let name = path.rsplit('/').next().unwrap_or("rpc");
        table.push(Route {
            doc: RouteDoc {
                method: Method::POST,
                path: path.into(),
                operation_id: format!("raft_{name}").into(),
                summary: "An internal Raft RPC (binary body); the target node travels in x-catga-target-node",
                tag: "raft",
                protected: true,
                forwarded: false,
                body: BodyDoc::Octets,
                request_headers: &[(TARGET_NODE_HEADER, "the node id the RPC is addressed to")],
                responses: {
                    let mut responses = vec![
                        resp(200, "Raft's answer (binary)", ContentDoc::Octets),
                        resp(
                            400,
                            "missing target, or a body that is empty, does not decode, has trailing bytes or is not in canonical form",
                            ContentDoc::Problem,
                        ),
                        resp(421, "addressed to another node", ContentDoc::Problem),
                    ];
                    if rpc == RaftRpc::Elect {
                        responses.push(resp(
                            409,
                            "rpc-refused: the sender is not the leader this node follows in its current term, or this node cannot stand; nothing was started",
                            ContentDoc::Problem,
                        ));
                    }
                    responses
                },
            },
            limit: l.raft_body,
            timeout: l.raft_timeout,
            handler: post(move |s: State<AppState>, h: HeaderMap, b: Body| raft_rpc(s, rpc, h, b)),
        });
    }
    table.push(Route {
        doc: RouteDoc {
            method: Method::POST,
            path: paths::MEMBERS.into(),
            operation_id: "addMember".into(),
            summary: "Adds a node as a learner, waits for it to catch up, promotes it to voter",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::json::<AddMemberRequest>(),
            request_headers: forwarded,
            responses: vec![
                resp(
                    200,
                    "the members after the change",
                    ContentDoc::json::<MembersDto>(),
                ),
                resp(
                    400,
                    "bad-request: an invalid id or endpoint, or the id is a member at another endpoint",
                    ContentDoc::Problem,
                ),
                ResponseDoc {
                    status: 409,
                    description: "membership-change-in-progress (with Retry-After), or quorum-at-risk: too few voters are reachable to promote the node safely",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
                resp(503, "no-leader", ContentDoc::Problem),
                resp(
                    504,
                    "member-unreachable: the node did not catch up as a learner in time and was removed again (the voters are unchanged); or timeout / unknown-outcome",
                    ContentDoc::Problem,
                ),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: post(add_member),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::DELETE,
            path: paths::MEMBER.into(),
            operation_id: "removeMember".into(),
            summary: "Removes a node from the voters and the cluster",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::None,
            request_headers: forwarded,
            responses: vec![
                resp(
                    200,
                    "the members after the change",
                    ContentDoc::json::<MembersDto>(),
                ),
                resp(404, "no such member", ContentDoc::Problem),
                ResponseDoc {
                    status: 409,
                    description: "membership-change-in-progress (with Retry-After), or quorum-at-risk: the reachable voters would not be a majority of the voters left, no voter would be left, or the node is the leader (transfer leadership first)",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
                resp(503, "no-leader", ContentDoc::Problem),
                resp(504, "timeout or unknown-outcome", ContentDoc::Problem),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: delete(remove_member),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::POST,
            path: paths::LEADERSHIP_TRANSFER.into(),
            operation_id: "transferLeadership".into(),
            summary: "Hands leadership to a node (or the most up-to-date voter); answers once the new leader is known",
            tag: "cluster",
            protected: true,
            forwarded: true,
            body: BodyDoc::optional_json::<TransferRequest>(),
            request_headers: forwarded,
            responses: vec![
                resp(200, "the new leader", ContentDoc::json::<TransferDto>()),
                resp(
                    400,
                    "bad-request: the node named is not a voter, or there is no other voter",
                    ContentDoc::Problem,
                ),
                resp(503, "no-leader", ContentDoc::Problem),
                resp(
                    504,
                    "timeout: no successor took over in time (this node leads on)",
                    ContentDoc::Problem,
                ),
            ],
        },
        limit: l.json_body,
        timeout: admin_timeout,
        handler: post(transfer_leadership),
    });
    type LockRoute = (
        &'static str,
        &'static str,
        &'static str,
        BodyDoc,
        MethodRouter<AppState>,
        Vec<ResponseDoc>,
    );
    let lock_routes: [LockRoute; 3] = [
        (
            paths::LOCK_ACQUIRE,
            "acquireLock",
            "Takes a lock, waiting up to wait_ms while another owner holds it; works on any node",
            BodyDoc::json::<AcquireRequest>(),
            post(acquire_lock),
            vec![
                resp(200, "granted", ContentDoc::json::<LockGrantDto>()),
                ResponseDoc {
                    status: 409,
                    description: "lock-held: still held after the wait",
                    content: ContentDoc::Problem,
                    headers: &["Retry-After"],
                },
            ],
        ),
        (
            paths::LOCK_RENEW,
            "renewLock",
            "Extends the lease of a held lock",
            BodyDoc::json::<RenewRequest>(),
            post(renew_lock),
            vec![
                resp(200, "renewed", ContentDoc::json::<LockGrantDto>()),
                resp(409, "lock-lost", ContentDoc::Problem),
            ],
        ),
        (
            paths::LOCK_RELEASE,
            "releaseLock",
            "Releases a held lock",
            BodyDoc::json::<ReleaseRequest>(),
            post(release_lock),
            vec![
                resp(200, "released", ContentDoc::json::<ReleasedDto>()),
                resp(409, "lock-lost", ContentDoc::Problem),
            ],
        ),
    ];
    for (path, id, summary, body, handler, responses) in lock_routes {
        table.push(Route {
            doc: RouteDoc {
                method: Method::POST,
                path: path.into(),
                operation_id: id.into(),
                summary,
                tag: "locks",
                protected: true,
                forwarded: false,
                body,
                request_headers: &[],
                responses,
            },
            limit: l.json_body,
            timeout: lock_timeout,
            handler,
        });
    }
    let revision: &'static [&'static str] = &[REVISION_HEADER];
    table.push(Route {
        doc: RouteDoc {
            method: Method::GET,
            path: paths::KV.into(),
            operation_id: "kvGet".into(),
            summary: "A linearizable read of a key; the value is the raw body",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "the value",
                    content: ContentDoc::Octets,
                    headers: revision,
                },
                ResponseDoc {
                    status: 404,
                    description: "no such key",
                    content: ContentDoc::Problem,
                    headers: revision,
                },
            ],
        },
        limit: l.json_body,
        timeout: l.request_timeout,
        handler: get(kv_get),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::PUT,
            path: paths::KV.into(),
            operation_id: "kvPut".into(),
            summary: "Writes a key (the raw body is the value); If-Match: <revision> makes it a compare-and-set (0: only if absent)",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::Octets,
            request_headers: &[("If-Match", "the revision the key must have (0: absent)")],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "written",
                    content: ContentDoc::json::<KvWrittenDto>(),
                    headers: revision,
                },
                ResponseDoc {
                    status: 412,
                    description: "revision-mismatch",
                    content: ContentDoc::Problem,
                    headers: revision,
                },
            ],
        },
        limit: l.kv_body,
        timeout: l.request_timeout,
        handler: put(kv_put),
    });
    table.push(Route {
        doc: RouteDoc {
            method: Method::DELETE,
            path: paths::KV.into(),
            operation_id: "kvDelete".into(),
            summary: "Deletes a key; If-Match: <revision> makes it conditional",
            tag: "kv",
            protected: true,
            forwarded: false,
            body: BodyDoc::None,
            request_headers: &[("If-Match", "the revision the key must have")],
            responses: vec![
                ResponseDoc {
                    status: 200,
                    description: "deleted",
                    content: ContentDoc::json::<KvDeletedDto>(),
                    headers: revision,
                },
                resp(404, "no such key", ContentDoc::Problem),
                resp(412, "revision-mismatch", ContentDoc::Problem),
            ],
        },
        limit: l.json_body,
        timeout: l.request_timeout,
        handler: delete(kv_delete),
    });
    table
}

/// The members of a status, for answers.
pub(super) fn members(status: &NodeStatus) -> Vec<MemberDto> {
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

/// The Raft node; the raft routes exist only when there is one.
fn node(state: &AppState) -> Result<&RaftNode, Problem> {
    state.raft.as_ref().ok_or_else(Problem::internal)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unexpected(answer: CommandResponse) -> Problem {
    Problem::from(answer.into_unexpected())
}

/// Counts a request a follower passed on to the leader over the Raft
/// transport.
fn observe_forward<T>(state: &AppState, was_leader: bool, result: &Result<T, ClusterError>) {
    if was_leader {
        return;
    }
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

fn finish(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------
// Raft RPC
// ---------------------------------------------------------------------------

async fn raft_rpc(
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

// ---------------------------------------------------------------------------
// Membership and leadership
// ---------------------------------------------------------------------------

async fn add_member(State(state): State<AppState>, body: Body) -> Response {
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

async fn remove_member(State(state): State<AppState>, Path(id): Path<String>) -> Response {
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

async fn transfer_leadership(State(state): State<AppState>, body: Body) -> Response {
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

// ---------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------

fn check_owner(owner: &str) -> Result<(), Problem> {
    if owner.is_empty() || owner.chars().count() > limits::MAX_OWNER_LEN {
        return Err(Problem::bad_request(format!(
            "`owner` must be 1 to {} characters",
            limits::MAX_OWNER_LEN
        )));
    }
    Ok(())
}

fn check_lock_name(name: &str) -> Result<(), Problem> {
    catga_cluster_core::lock::validate_lock_name(name).map_err(Problem::from)
}

fn ttl(requested: Option<u64>, default: Duration) -> Result<u64, Problem> {
    let ttl = requested.unwrap_or_else(|| ms(default));
    if ttl == 0 || ttl > limits::MAX_TTL_MS {
        return Err(Problem::bad_request(format!(
            "`ttl_ms` must be 1 to {}",
            limits::MAX_TTL_MS
        )));
    }
    Ok(ttl)
}

async fn acquire_lock(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let request: AcquireRequest = parse_json(&read_body(body).await?, None)?;
            check_lock_name(&name)?;
            check_owner(&request.owner)?;
            let ttl_ms = ttl(request.ttl_ms, state.limits.default_lock_ttl)?;
            let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
            if wait > state.limits.max_lock_wait {
                return Err(Problem::bad_request(format!(
                    "`wait_ms` must be at most {}",
                    ms(state.limits.max_lock_wait)
                )));
            }
            let was_leader = node.is_leader();
            let metrics = state.metrics.clone();
            let result = node
                .acquire_lock(&name, &request.owner, ttl_ms, wait, move || {
                    metrics.record_lock_wait()
                })
                .await;
            observe_forward(&state, was_leader, &result);
            match result? {
                Acquisition::Granted { token, .. } => {
                    state.metrics.record_lock_grant();
                    tracing::debug!(target: TARGET, lock = %name, token, "lock granted");
                    Ok(json(StatusCode::OK, &LockGrantDto { token, ttl_ms }))
                }
                Acquisition::Held { remaining, .. } => {
                    state.metrics.record_lock_refusal();
                    Err(Problem::lock_held(&name, Some(remaining)))
                }
                _ => Err(Problem::internal()),
            }
        }
        .await,
    )
}

async fn renew_lock(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let request: RenewRequest = parse_json(&read_body(body).await?, None)?;
            check_lock_name(&name)?;
            check_owner(&request.owner)?;
            let ttl_ms = ttl(request.ttl_ms, state.limits.default_lock_ttl)?;
            let op = Operation::LockRenew {
                name: name.clone(),
                owner: request.owner,
                token: request.token,
                ttl_ms,
            };
            let was_leader = node.is_leader();
            let result = node.submit(op, None).await;
            observe_forward(&state, was_leader, &result);
            match result? {
                CommandResponse::LockGranted { token, .. } => {
                    Ok(json(StatusCode::OK, &LockGrantDto { token, ttl_ms }))
                }
                CommandResponse::LockLost => Err(Problem::lock_lost(&name, request.token)),
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}

async fn release_lock(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let request: ReleaseRequest = parse_json(&read_body(body).await?, None)?;
            check_lock_name(&name)?;
            check_owner(&request.owner)?;
            let op = Operation::LockRelease {
                name: name.clone(),
                owner: request.owner,
                token: request.token,
            };
            let was_leader = node.is_leader();
            let result = node.submit(op, None).await;
            observe_forward(&state, was_leader, &result);
            match result? {
                CommandResponse::LockReleased => Ok(json(
                    StatusCode::OK,
                    &ReleasedDto {
                        released: true,
                        token: request.token,
                    },
                )),
                CommandResponse::LockLost => Err(Problem::lock_lost(&name, request.token)),
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}

// ---------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------

fn revision_header(revision: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(REVISION_HEADER),
        HeaderValue::from(revision),
    )
}

/// `If-Match: <revision>` (optionally quoted, as an entity tag).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match must be a revision number"))?
        .trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<u64>().map(Some).map_err(|_| {
        Problem::bad_request(format!(
            "If-Match must be a revision number (0: only if absent), not `{text}`"
        ))
    })
}

async fn kv_get(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let was_leader = node.is_leader();
            let result = node.get(&key).await;
            observe_forward(&state, was_leader, &result);
            match result? {
                Some(value) => {
                    let mut response = Response::new(Body::from(Bytes::from(value.value)));
                    let headers = response.headers_mut();
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    let (name, value) = revision_header(value.revision);
                    headers.insert(name, value);
                    Ok(response)
                }
                None => {
                    let (name, value) = revision_header(0);
                    Err(Problem::not_found(format!("no key `{key}`")).with_header(name, value))
                }
            }
        }
        .await,
    )
}

async fn kv_put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let expected = if_match(&headers)?;
            let value = read_body(body).await?.to_vec();
            let was_leader = node.is_leader();
            let result = match expected {
                None => node.put(&key, value).await.map(CasOutcome::Written),
                Some(expected) => node.compare_and_set(&key, expected, value).await,
            };
            observe_forward(&state, was_leader, &result);
            match result? {
                CasOutcome::Written(revision) => {
                    let mut response = json(
                        StatusCode::OK,
                        &KvWrittenDto {
                            key: key.clone(),
                            revision,
                        },
                    );
                    let (name, value) = revision_header(revision);
                    response.headers_mut().insert(name, value);
                    Ok(response)
                }
                CasOutcome::Mismatch(current) => Err(Problem::revision_mismatch(&key, current)),
            }
        }
        .await,
    )
}

async fn kv_delete(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let expected = if_match(&headers)?;
            let was_leader = node.is_leader();
            let result = node.delete(&key, expected).await;
            observe_forward(&state, was_leader, &result);
            match result? {
                Ok(true) => {
                    let mut response = json(
                        StatusCode::OK,
                        &KvDeletedDto {
                            key: key.clone(),
                            deleted: true,
                        },
                    );
                    let (name, value) = revision_header(0);
                    response.headers_mut().insert(name, value);
                    Ok(response)
                }
                Ok(false) => Err(Problem::not_found(format!("no key `{key}`"))),
                Err(current) => Err(Problem::revision_mismatch(&key, current)),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        for (text, want) in [("5", 5), ("\"7\"", 7), ("W/\"9\"", 9), (" 0 ", 0)] {
            h.insert(IF_MATCH, HeaderValue::from_str(text).unwrap());
            assert_eq!(if_match(&h).unwrap(), Some(want), "{text}");
        }
        for bad in ["*", "abc", "-1", "\"x\""] {
            h.insert(IF_MATCH, HeaderValue::from_str(bad).unwrap());
            assert_eq!(if_match(&h).unwrap_err().slug(), "bad-request", "{bad}");
        }
    }
}
