//! The replicated locks: acquire (waiting while another owner holds the
//! lock), renew and release, with fencing tokens.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use catga_cluster_raft::state_machine::limits;
use catga_cluster_raft::{Acquisition, CommandResponse, Operation};
use http::StatusCode;

use super::{finish, ms, node, observed, unexpected, TARGET};
use crate::api::{AcquireRequest, LockGrantDto, ReleaseRequest, ReleasedDto, RenewRequest};
use crate::problem::Problem;
use crate::response::{json, parse_json, read_body};
use crate::routes::state::AppState;

pub(crate) fn check_owner(owner: &str) -> Result<(), Problem> {
    if owner.is_empty() || owner.chars().count() > limits::MAX_OWNER_LEN {
        return Err(Problem::bad_request(format!(
            "`owner` must be 1 to {} characters",
            limits::MAX_OWNER_LEN
        )));
    }
    Ok(())
}

pub(crate) fn check_lock_name(name: &str) -> Result<(), Problem> {
    catga_cluster_core::lock::validate_lock_name(name).map_err(Problem::from)
}

pub(crate) fn ttl(requested: Option<u64>, default: Duration) -> Result<u64, Problem> {
    let ttl = requested.unwrap_or_else(|| ms(default));
    if ttl == 0 || ttl > limits::MAX_TTL_MS {
        return Err(Problem::bad_request(format!(
            "`ttl_ms` must be 1 to {}",
            limits::MAX_TTL_MS
        )));
    }
    Ok(ttl)
}

pub(super) async fn acquire_lock(
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
            let metrics = state.metrics.clone();
            let acquire = node.acquire_lock(&name, &request.owner, ttl_ms, wait, move || {
                metrics.record_lock_wait()
            });
            let result = observed(&state, node, acquire).await;
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

pub(super) async fn renew_lock(
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
            let result = observed(&state, node, node.submit(op, None)).await;
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

pub(super) async fn release_lock(
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
            let result = observed(&state, node, node.submit(op, None)).await;
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
