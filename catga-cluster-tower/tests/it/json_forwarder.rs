//! `JsonForwarder` against a real axum handler on
//! `/cluster/forward/{command}` (`127.0.0.1:0`): the JSON answer, every kind
//! of problem answer, the bearer secret and the hop header it sends, and
//! failures; then behind `ForwardToLeaderLayer`.
#![cfg(feature = "json-forwarder")]
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::protocol::{
    FORWARDED_HEADER, FORWARD_PATH_PREFIX, LEADER_HEADER, LEADER_ID_HEADER,
};
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{
    BoxError, Endpoint, ForwardRequest, NodeId, NodeInfo, NotLeader, NotLeaderReason,
};
use catga_cluster_tower::error::{
    ForwardFailed, ForwardFailureKind, ForwardTimeout, HopLimit, RemoteProblem,
};
use catga_cluster_tower::{ForwardToLeaderLayer, JsonForwarder, PlainPolicy};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

const SECRET: &str = "s3cret-for-tests";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// The leader's answer, with what it saw of the request.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Sum {
    sum: i64,
    command: String,
    hops: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn problem(status: StatusCode, slug: &str, extra: &[(&'static str, &'static str)]) -> Response {
    let doc = serde_json::json!({
        "type": slug,
        "title": format!("title of {slug}"),
        "status": status.as_u16(),
        "detail": format!("detail of {slug}"),
    });
    let mut response = (
        status,
        [("content-type", "application/problem+json")],
        doc.to_string(),
    )
        .into_response();
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(*name, http::HeaderValue::from_static(value));
    }
    response
}

/// A stand-in for the leader's `/cluster/forward/{command}` route.
async fn command(Path(command): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = header(&headers, "authorization");
    if command != "open" && authorization.as_deref() != Some(&format!("Bearer {SECRET}")) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", &[]);
    }
    match command.as_str() {
        "add" | "open" => {
            let add: Add = match serde_json::from_slice(&body) {
                Ok(add) => add,
                Err(_) => return problem(StatusCode::BAD_REQUEST, "bad-request", &[]),
            };
            let sum = Sum {
                sum: add.a + add.b,
                command,
                hops: header(&headers, FORWARDED_HEADER),
                authorization,
                content_type: header(&headers, "content-type"),
            };
            (
                [("content-type", "application/json")],
                serde_json::to_string(&sum).unwrap(),
            )
                .into_response()
        }
        "not-leader" => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-leader",
            &[
                (LEADER_ID_HEADER, "7"),
                (LEADER_HEADER, "http://10.0.0.7:5007"),
                ("retry-after", "0"),
            ],
        ),
        "no-leader" => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-leader",
            &[("retry-after", "1")],
        ),
        "hop-limit" => problem(StatusCode::LOOP_DETECTED, "hop-limit", &[]),
        "lock-held" => problem(StatusCode::CONFLICT, "lock-held", &[]),
        "not-json" => (StatusCode::INTERNAL_SERVER_ERROR, "plain text failure").into_response(),
        "bad-answer" => (StatusCode::OK, "this is not json").into_response(),
        "slow" => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        _ => problem(StatusCode::NOT_FOUND, "not-found", &[]),
    }
}

async fn leader_server() -> SocketAddr {
    let router = Router::new().route(&format!("{FORWARD_PATH_PREFIX}{{command}}"), post(command));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn node_at(id: u64, addr: SocketAddr) -> NodeInfo {
    NodeInfo::new(
        NodeId::new(id),
        Endpoint::parse(&format!("http://{addr}")).unwrap(),
    )
}

async fn send(
    leader: SocketAddr,
    name: &str,
    secret: Option<&ClusterSecret>,
    deadline: Option<Instant>,
) -> Result<Sum, BoxError> {
    JsonForwarder::<Add, Sum>::new(name, secret)
        .oneshot(ForwardRequest::new(
            node_at(2, leader),
            Add { a: 40, b: 2 },
            1,
            deadline,
        ))
        .await
}

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET)
}

fn downcast<T: std::error::Error + 'static>(err: &BoxError) -> &T {
    err.downcast_ref::<T>()
        .unwrap_or_else(|| panic!("unexpected error: {err}"))
}

#[tokio::test]
async fn a_command_comes_back_decoded_with_secret_and_hop_count_sent() {
    let leader = leader_server().await;
    let sum = send(leader, "add", Some(&secret()), None).await.unwrap();
    assert_eq!(
        sum,
        Sum {
            sum: 42,
            command: "add".into(),
            hops: Some("1".into()),
            authorization: Some(format!("Bearer {SECRET}")),
            content_type: Some("application/json".into()),
        }
    );
}

#[tokio::test]
async fn without_a_secret_no_authorization_is_sent() {
    let leader = leader_server().await;
    let sum = send(leader, "open", None, None).await.unwrap();
    assert_eq!(sum.authorization, None);
    assert_eq!(sum.hops.as_deref(), Some("1"));

    let err = send(leader, "add", None, None).await.unwrap_err();
    let remote = downcast::<RemoteProblem>(&err);
    assert_eq!(remote.status, 401);
    assert_eq!(remote.problem_type, "unauthorized");
}

#[tokio::test]
async fn the_debug_output_does_not_show_the_secret() {
    let forwarder = JsonForwarder::<Add, Sum>::new("add", Some(&secret()));
    let debug = format!("{forwarder:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("add"));
}

#[tokio::test]
async fn not_leader_comes_back_as_not_leader_with_the_hint() {
    let leader = leader_server().await;
    let err = send(leader, "not-leader", Some(&secret()), None)
        .await
        .unwrap_err();
    let refusal = downcast::<NotLeader>(&err);
    assert_eq!(refusal.reason, NotLeaderReason::NotLeader);
    assert_eq!(refusal.leader_id, Some(NodeId::new(7)));
    assert_eq!(
        refusal.leader_endpoint.as_ref().map(Endpoint::as_str),
        Some("http://10.0.0.7:5007")
    );
}

#[tokio::test]
async fn no_leader_and_hop_limit_come_back_typed() {
    let leader = leader_server().await;
    let err = send(leader, "no-leader", Some(&secret()), None)
        .await
        .unwrap_err();
    let refusal = downcast::<NotLeader>(&err);
    assert_eq!(refusal.reason, NotLeaderReason::NoLeader);
    assert_eq!(refusal.leader_id, None);

    let err = send(leader, "hop-limit", Some(&secret()), None)
        .await
        .unwrap_err();
    assert_eq!(downcast::<HopLimit>(&err).hops, 1);
}

#[tokio::test]
async fn other_problems_come_back_as_remote_problems() {
    let leader = leader_server().await;
    let err = send(leader, "lock-held", Some(&secret()), None)
        .await
        .unwrap_err();
    let remote = downcast::<RemoteProblem>(&err);
    assert_eq!(remote.status, 409);
    assert_eq!(remote.problem_type, "lock-held");
    assert_eq!(remote.title, "title of lock-held");
    assert_eq!(remote.detail, "detail of lock-held");

    let err = send(leader, "no-such-command", Some(&secret()), None)
        .await
        .unwrap_err();
    assert_eq!(downcast::<RemoteProblem>(&err).problem_type, "not-found");

    // An answer that is not a problem document still comes back readable.
    let err = send(leader, "not-json", Some(&secret()), None)
        .await
        .unwrap_err();
    let remote = downcast::<RemoteProblem>(&err);
    assert_eq!(remote.status, 500);
    assert_eq!(remote.problem_type, "");
    assert_eq!(remote.detail, "plain text failure");
}

#[tokio::test]
async fn an_answer_that_does_not_decode_is_a_protocol_failure() {
    let leader = leader_server().await;
    let err = send(leader, "bad-answer", Some(&secret()), None)
        .await
        .unwrap_err();
    assert_eq!(
        downcast::<ForwardFailed>(&err).kind,
        ForwardFailureKind::Protocol
    );
}

#[tokio::test]
async fn an_unreachable_leader_is_a_connect_failure() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let err = send(closed, "add", Some(&secret()), None)
        .await
        .unwrap_err();
    let failed = downcast::<ForwardFailed>(&err);
    assert!(failed.is_connect(), "{failed:?}");
    assert_eq!(failed.leader, node_at(2, closed));
}

#[tokio::test]
async fn a_slow_leader_is_a_timeout() {
    let leader = leader_server().await;
    let deadline = Instant::now() + Duration::from_millis(200);
    let err = send(leader, "slow", Some(&secret()), Some(deadline))
        .await
        .unwrap_err();
    let timeout = downcast::<ForwardTimeout>(&err);
    assert_eq!(timeout.leader, node_at(2, leader));
}

#[tokio::test]
async fn behind_the_layer_a_follower_forwards_typed_commands() {
    let leader = leader_server().await;
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(node_at(2, leader)));
    let local = service_fn(|add: Add| async move {
        Ok::<_, BoxError>(Sum {
            sum: add.a + add.b,
            command: "local".into(),
            hops: None,
            authorization: None,
            content_type: None,
        })
    });
    let svc = ForwardToLeaderLayer::with_plain_forwarder(
        coord.clone(),
        JsonForwarder::<Add, Sum>::new("add", Some(&secret())),
    )
    .layer(local);

    let sum = svc.clone().oneshot(Add { a: 1, b: 2 }).await.unwrap();
    assert_eq!(sum.sum, 3);
    assert_eq!(sum.command, "add", "served by the leader");
    assert_eq!(sum.hops.as_deref(), Some("1"));

    coord.set_leader();
    let sum = svc.clone().oneshot(Add { a: 1, b: 2 }).await.unwrap();
    assert_eq!(sum.command, "local");

    // A refusal by the remote node comes back as the typed error.
    coord.set_follower(Some(node_at(2, leader)));
    let svc = ForwardToLeaderLayer::with_forwarder(
        coord,
        JsonForwarder::<Add, Sum>::new("not-leader", Some(&secret())),
    )
    .policy(PlainPolicy)
    .layer(local);
    let err = svc.oneshot(Add { a: 1, b: 2 }).await.unwrap_err();
    assert_eq!(downcast::<NotLeader>(&err).leader_id, Some(NodeId::new(7)));
}

/// The `RemoteProblem` row of `Problem::from_error`: a follower answers
/// the leader's problem with the leader's status and type.
#[cfg(feature = "http-forwarder")]
#[tokio::test]
async fn a_remote_problem_is_answered_with_its_own_status_and_type() {
    use catga_cluster_tower::problem::Problem;

    let leader = leader_server().await;
    let err = send(leader, "lock-held", Some(&secret()), None)
        .await
        .unwrap_err();
    let problem = Problem::from_error(err.as_ref());
    assert_eq!(problem.status, StatusCode::CONFLICT);
    assert_eq!(problem.slug, "lock-held");
    assert_eq!(problem.title, "title of lock-held");
    assert_eq!(problem.detail, "detail of lock-held");

    let err = send(leader, "not-json", Some(&secret()), None)
        .await
        .unwrap_err();
    let problem = Problem::from_error(err.as_ref());
    assert_eq!(problem.status, StatusCode::INTERNAL_SERVER_ERROR);
}
