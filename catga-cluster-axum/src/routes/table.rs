//! The route table: every route for any coordinator, its handler paired
//! with its description (`RouteDoc`), its body limit and its deadline. The
//! router and the OpenAPI document are both built from it.

use std::time::Duration;

use axum::routing::{get, post, MethodRouter};
use catga_cluster_core::protocol::FORWARD_PATH_PREFIX;
use http::Method;

use super::handlers::{
    cluster_status, forward_command, health_leader, health_live, health_ready, leadership_events,
    metrics_text, openapi_document,
};
use super::paths;
use super::state::AppState;
use crate::api::{LeaderCheckDto, LeadershipEventDto, LiveDto, ReadyDto, StatusDto};
use crate::limits::Limits;
use crate::openapi::{resp, BodyDoc, ContentDoc, RouteDoc};

/// One route of the table: its handler, how it is served and how it is
/// documented.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) doc: RouteDoc,
    /// The largest request body.
    pub(crate) limit: usize,
    /// The deadline of the whole request.
    pub(crate) timeout: Duration,
    pub(crate) handler: MethodRouter<AppState>,
}

/// The routes that work with any coordinator; forwarded commands get
/// `forward_timeout`.
pub(super) fn routes(l: &Limits, forward_timeout: Duration) -> Vec<Route> {
    vec![
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::HEALTH_LIVE.into(),
                operation_id: "healthLive".into(),
                summary: "Liveness: fails only when Raft stopped on a fatal error",
                tag: "health",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![
                    resp(200, "the process serves", ContentDoc::json::<LiveDto>()),
                    resp(
                        503,
                        "Raft stopped on a fatal error",
                        ContentDoc::json::<LiveDto>(),
                    ),
                ],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(health_live),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::HEALTH_READY.into(),
                operation_id: "healthReady".into(),
                summary: "Readiness: healthy or degraded answer 200, unhealthy 503",
                tag: "health",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![
                    resp(200, "healthy or degraded", ContentDoc::json::<ReadyDto>()),
                    resp(503, "unhealthy", ContentDoc::json::<ReadyDto>()),
                ],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(health_ready),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::HEALTH_LEADER.into(),
                operation_id: "healthLeader".into(),
                summary:
                    "200 on the leader only, for load balancers that send writes straight to it",
                tag: "health",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![
                    resp(200, "this node leads", ContentDoc::json::<LeaderCheckDto>()),
                    resp(
                        503,
                        "this node does not lead",
                        ContentDoc::json::<LeaderCheckDto>(),
                    ),
                ],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(health_leader),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::STATUS.into(),
                operation_id: "clusterStatus".into(),
                summary: "The node's role, term, leader, members and log positions",
                tag: "cluster",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![resp(200, "the status", ContentDoc::json::<StatusDto>())],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(cluster_status),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::LEADERSHIP_EVENTS.into(),
                operation_id: "leadershipEvents".into(),
                summary: "Server-Sent Events of this node's leadership (event `leadership`): the current snapshot first, then one per change; comment heartbeats; ends when the server drains",
                tag: "cluster",
                protected: true,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![resp(
                    200,
                    "an event stream of leadership snapshots",
                    ContentDoc::events::<LeadershipEventDto>(),
                )],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(leadership_events),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::OPENAPI.into(),
                operation_id: "openapi".into(),
                summary: "This document",
                tag: "cluster",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![resp(200, "an OpenAPI 3.1 document", ContentDoc::AnyJson)],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(openapi_document),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: paths::METRICS.into(),
                operation_id: "metrics".into(),
                summary: "Prometheus metrics (text 0.0.4, or OpenMetrics on request)",
                tag: "metrics",
                protected: false,
                forwarded: false,
                body: BodyDoc::None,
                request_headers: &[],
                responses: vec![resp(200, "the metrics", ContentDoc::Metrics)],
            },
            limit: l.json_body,
            timeout: l.request_timeout,
            handler: get(metrics_text),
        },
        Route {
            doc: RouteDoc {
                method: Method::POST,
                path: format!("{FORWARD_PATH_PREFIX}{{command}}").into(),
                operation_id: "forwardCommand".into(),
                summary: "Runs a typed command on the leader (the server side of JsonForwarder)",
                tag: "commands",
                protected: true,
                forwarded: true,
                body: BodyDoc::AnyJson,
                request_headers: &[(
                    catga_cluster_core::protocol::FORWARDED_HEADER,
                    "how often the request was forwarded already",
                )],
                responses: vec![
                    resp(200, "the command's answer", ContentDoc::AnyJson),
                    resp(404, "no command of that name", ContentDoc::Problem),
                    resp(502, "forward-failed", ContentDoc::Problem),
                    resp(503, "no-leader", ContentDoc::Problem),
                    resp(508, "hop-limit", ContentDoc::Problem),
                ],
            },
            limit: l.command_body,
            timeout: forward_timeout,
            handler: post(forward_command),
        },
    ]
}
