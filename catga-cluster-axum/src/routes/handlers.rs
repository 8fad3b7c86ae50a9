//! The handlers of the routes that work with any coordinator: health,
//! status, the OpenAPI document, metrics and forwarded commands.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use catga_cluster_core::Role;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::state::AppState;
use crate::api::{
    LeaderCheckDto, LeaderDto, LeadershipEventDto, LiveDto, NodeDto, ReadyDto, StatusDto,
};
use crate::health::HealthStatus;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use crate::response::{json, read_body};

fn role_str(role: Role) -> &'static str {
    role.as_str()
}

pub(super) async fn health_live(State(state): State<AppState>) -> Response {
    let report = state.view.report();
    let (status, body) = if report.live {
        (
            StatusCode::OK,
            LiveDto {
                status: HealthStatus::Healthy.as_str(),
                reason: None,
                detail: None,
            },
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            LiveDto {
                status: HealthStatus::Unhealthy.as_str(),
                reason: report.reason.map(|r| r.slug()),
                detail: report.detail,
            },
        )
    };
    json(status, &body)
}

pub(super) async fn health_ready(State(state): State<AppState>) -> Response {
    let report = state.view.report();
    let status = if report.status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(
        status,
        &ReadyDto {
            status: report.status.as_str(),
            role: role_str(report.role),
            leader: report.leader.as_ref().map(LeaderDto::from),
            reason: report.reason.map(|r| r.slug()),
            detail: report.detail,
        },
    )
}

pub(super) async fn health_leader(State(state): State<AppState>) -> Response {
    let report = state.view.report();
    let leads = report.is_leader && !state.view.draining.is_set();
    let status = if leads {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &LeaderCheckDto {
            is_leader: leads,
            node: NodeDto::from(state.view.node()),
            role: role_str(report.role),
            leader: report.leader.as_ref().map(LeaderDto::from),
        },
    )
}

pub(super) async fn cluster_status(State(state): State<AppState>) -> Response {
    let snapshot = state.view.coord.leadership();
    let lease_valid = snapshot.lease_valid
        && snapshot
            .lease_deadline
            .is_none_or(|d| tokio::time::Instant::now() < d);
    let facts = state.view.facts();
    #[cfg_attr(not(feature = "raft"), allow(unused_mut))]
    let mut dto = StatusDto {
        node: NodeDto::from(state.view.node()),
        role: role_str(snapshot.role),
        term: snapshot.term,
        leader: snapshot.leader.as_ref().map(LeaderDto::from),
        lease_valid,
        transferring: snapshot.transferring,
        members: Vec::new(),
        last_log_index: facts.last_log_index.unwrap_or(0),
        last_applied: facts.last_applied.unwrap_or(0),
        failover: None,
    };
    #[cfg(feature = "raft")]
    if let Some(node) = &state.raft {
        let status = node.status();
        dto.members = super::raft::members(&status);
        dto.last_log_index = status.last_log_index;
        dto.last_applied = status.last_applied;
        dto.failover = Some(super::raft::failover(&status.failover));
    }
    json(StatusCode::OK, &dto)
}

pub(super) async fn openapi_document(State(state): State<AppState>) -> Response {
    let mut response = Response::new(Body::from(state.openapi.clone()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(super) async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (state.metrics.encode_openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (state.metrics.encode_prometheus(), PROMETHEUS_CONTENT_TYPE)
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) async fn forward_command(
    State(state): State<AppState>,
    Path(command): Path<String>,
    body: Body,
) -> Response {
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(problem) => return problem.into_response(),
    };
    state.commands.dispatch(&command, bytes).await
}

/// The event of a leadership snapshot.
fn leadership_event(snapshot: &catga_cluster_core::Leadership) -> String {
    let lease_valid = snapshot.lease_valid
        && snapshot
            .lease_deadline
            .is_none_or(|d| tokio::time::Instant::now() < d);
    let dto = LeadershipEventDto {
        role: role_str(snapshot.role),
        term: snapshot.term,
        leader: snapshot.leader.as_ref().map(LeaderDto::from),
        lease_valid,
    };
    serde_json::to_string(&dto).unwrap_or_default()
}

/// `GET /cluster/leadership/events`: a first event with the current
/// leadership snapshot, then one per change, until the server drains.
pub(super) async fn leadership_events(State(state): State<AppState>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut rx = state.view.coord.subscribe();
    let drained: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(state.view.draining.begun());
    let first = leadership_event(&rx.borrow_and_update());
    let events = futures_util::stream::unfold(
        (rx, drained, None::<String>, Some(first)),
        |(mut rx, mut drained, last, first)| async move {
            if let Some(first) = first {
                let event = Event::default().event("leadership").data(first.clone());
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (rx, drained, Some(first), None),
                ));
            }
            loop {
                tokio::select! {
                    biased;
                    () = &mut drained => return None,
                    changed = rx.changed() => if changed.is_err() { return None },
                }
                let data = leadership_event(&rx.borrow_and_update());
                // Only what the event shows: the snapshot's other fields
                // (its epoch, the lease deadline) change more often.
                if last.as_deref() != Some(data.as_str()) {
                    let event = Event::default().event("leadership").data(data.clone());
                    return Some((Ok(event), (rx, drained, Some(data), None)));
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(crate::routes::HEARTBEAT))
        .into_response()
}
