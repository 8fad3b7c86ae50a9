//! `Problem::from_error`: every row of the mapping table, errors found as
//! sources of other errors, and the response it becomes. (The
//! `RemoteProblem` row needs a leader's answer: see `json_forwarder.rs`.)
#![cfg(feature = "http-forwarder")]
#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::protocol::{LEADER_HEADER, LEADER_ID_HEADER};
use catga_cluster_core::{
    BoxError, ClusterError, Endpoint, FencingToken, LockError, NodeId, NodeInfo, NotLeader,
    NotLeaderReason,
};
use catga_cluster_tower::error::{ForwardFailed, ForwardFailureKind, ForwardTimeout, HopLimit};
use catga_cluster_tower::problem::{Problem, PROBLEM_CONTENT_TYPE};
use http::header::RETRY_AFTER;
use http::StatusCode;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use serde_json::{json, Value};

fn leader() -> NodeInfo {
    NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse("http://10.0.0.2:5002").unwrap(),
    )
}

fn map(err: impl std::error::Error + 'static) -> Problem {
    Problem::from_error(&err)
}

fn doc(problem: &Problem) -> Value {
    serde_json::from_slice(&problem.to_json()).unwrap()
}

/// Checks status, slug, and that the document carries the four members.
fn check(problem: &Problem, status: u16, slug: &str) {
    assert_eq!(problem.status.as_u16(), status, "{problem:?}");
    assert_eq!(problem.slug, slug, "{problem:?}");
    let doc = doc(problem);
    assert_eq!(doc["type"], slug);
    assert_eq!(doc["status"], status);
    assert!(!doc["title"].as_str().unwrap().is_empty());
    assert!(!doc["detail"].as_str().unwrap().is_empty());
}

#[test]
fn not_leader_with_a_known_leader_is_not_leader_with_the_hint() {
    let refusal = NotLeader::new(NotLeaderReason::NotLeader)
        .with_leader_id(NodeId::new(2))
        .with_leader_endpoint(leader().endpoint);
    for problem in [
        map(refusal.clone()),
        map(ClusterError::NotLeader(refusal.clone())),
        map(LockError::NotLeader(refusal.clone())),
    ] {
        check(&problem, 503, "not-leader");
        assert_eq!(problem.headers[LEADER_ID_HEADER], "2");
        assert_eq!(problem.headers[LEADER_HEADER], "http://10.0.0.2:5002");
        assert_eq!(problem.headers[RETRY_AFTER], "0");
        let doc = doc(&problem);
        assert_eq!(doc["reason"], "not-leader");
        assert_eq!(
            doc["leader"],
            json!({"id": 2, "endpoint": "http://10.0.0.2:5002"})
        );
    }

    // The id alone is enough for not-leader; the endpoint header is left out.
    let problem = map(NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(3)));
    check(&problem, 503, "not-leader");
    assert_eq!(problem.headers[LEADER_ID_HEADER], "3");
    assert!(!problem.headers.contains_key(LEADER_HEADER));
    assert_eq!(doc(&problem)["leader"], json!({"id": 3, "endpoint": null}));
}

#[test]
fn every_other_refusal_is_no_leader_with_its_reason() {
    let me = leader();
    for (refusal, reason) in [
        (NotLeader::new(NotLeaderReason::NoLeader), "no-leader"),
        // Another node leads, but nobody knows which: no hint to give.
        (NotLeader::new(NotLeaderReason::NotLeader), "not-leader"),
        (
            NotLeader::new(NotLeaderReason::LeaseExpired)
                .with_leader_id(me.id)
                .with_leader_endpoint(me.endpoint.clone()),
            "lease-expired",
        ),
        (
            NotLeader::new(NotLeaderReason::Transferring).with_leader_id(me.id),
            "transferring",
        ),
    ] {
        let problem = map(refusal);
        check(&problem, 503, "no-leader");
        assert_eq!(problem.headers[RETRY_AFTER], "1");
        assert!(!problem.headers.contains_key(LEADER_ID_HEADER));
        assert!(!problem.headers.contains_key(LEADER_HEADER));
        let doc = doc(&problem);
        assert_eq!(doc["reason"], reason);
        assert!(doc.get("leader").is_none(), "{doc}");
    }
}

#[test]
fn a_failed_forward_is_forward_failed_without_its_cause() {
    let problem = map(ForwardFailed::new(
        leader(),
        ForwardFailureKind::Connect,
        "tcp connect error: /etc/secret-path",
    ));
    check(&problem, 502, "forward-failed");
    assert!(problem.detail.contains("node 2"), "{}", problem.detail);
    assert!(!problem.to_json().windows(6).any(|w| w == b"secret"));
    assert!(problem.headers.is_empty());
}

#[test]
fn a_forward_timeout_is_forward_timeout() {
    check(
        &map(ForwardTimeout::new(leader(), Duration::from_secs(30))),
        504,
        "forward-timeout",
    );
}

#[test]
fn a_hop_limit_is_hop_limit_with_the_counts() {
    let problem = map(HopLimit::new(1, 1));
    check(&problem, 508, "hop-limit");
    assert_eq!(problem.status, StatusCode::LOOP_DETECTED);
    let doc = doc(&problem);
    assert_eq!(doc["hops"], 1);
    assert_eq!(doc["limit"], 1);
}

#[test]
fn a_lost_lock_is_lock_lost() {
    check(
        &map(LockError::Lost {
            name: "outbox".into(),
            token: FencingToken::new(5),
        }),
        409,
        "lock-lost",
    );
}

#[test]
fn invalid_requests_are_bad_request_with_the_reason() {
    let problem = map(ClusterError::InvalidRequest("key is empty".into()));
    check(&problem, 400, "bad-request");
    assert_eq!(problem.detail, "key is empty");
    let problem = map(LockError::Invalid("ttl must be positive".into()));
    check(&problem, 400, "bad-request");
    assert_eq!(problem.detail, "ttl must be positive");
}

#[test]
fn a_cluster_timeout_is_timeout() {
    check(
        &map(ClusterError::Timeout {
            operation: "waiting for leadership",
            after: Duration::from_secs(1),
        }),
        504,
        "timeout",
    );
}

#[test]
fn an_unknown_outcome_is_unknown_outcome() {
    let problem = map(ClusterError::UnknownOutcome {
        operation: "write",
        after: Duration::from_secs(5),
    });
    check(&problem, 504, "unknown-outcome");
    assert!(problem.detail.contains("retry with the same request id"));
    check(
        &map(LockError::UnknownOutcome(Duration::from_secs(5))),
        504,
        "unknown-outcome",
    );
}

#[test]
fn shutdown_is_shutting_down() {
    check(&map(ClusterError::Shutdown), 503, "shutting-down");
    check(&map(LockError::Shutdown), 503, "shutting-down");
}

#[test]
fn anything_else_is_internal_and_leaks_nothing() {
    let unknown: Vec<BoxError> = vec![
        "failed to open /var/lib/catga/secret.db".into(),
        Box::new(ClusterError::Storage(
            "fsync /var/lib/catga/secret.db".into(),
        )),
        Box::new(ClusterError::Other("/var/lib/catga/secret.db".into())),
        Box::new(LockError::Other("/var/lib/catga/secret.db".into())),
        Box::new(std::io::Error::other("/var/lib/catga/secret.db")),
    ];
    for err in unknown {
        let problem = Problem::from_error(err.as_ref());
        check(&problem, 500, "internal");
        let body = String::from_utf8(problem.to_json().to_vec()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        assert!(problem.headers.is_empty());
    }
}

#[derive(Debug, thiserror::Error)]
#[error("handler failed")]
struct Wrapper(#[source] BoxError);

#[test]
fn known_errors_are_found_among_the_sources() {
    check(
        &map(ClusterError::Other(Box::new(HopLimit::new(1, 1)))),
        508,
        "hop-limit",
    );
    check(
        &map(LockError::Other(Box::new(ForwardTimeout::new(
            leader(),
            Duration::from_secs(1),
        )))),
        504,
        "forward-timeout",
    );
    let nested = Wrapper(Box::new(Wrapper(Box::new(
        NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(4)),
    ))));
    let problem = map(nested);
    check(&problem, 503, "not-leader");
    assert_eq!(problem.headers[LEADER_ID_HEADER], "4");
}

#[test]
fn extensions_never_replace_the_standard_members() {
    let problem = Problem::new(StatusCode::CONFLICT, "lock-held", "Lock held", "held by a")
        .with_extension("type", "something-else")
        .with_extension("status", 200)
        .with_extension("lock", "orders");
    let doc = doc(&problem);
    assert_eq!(doc["type"], "lock-held");
    assert_eq!(doc["status"], 409);
    assert_eq!(doc["lock"], "orders");
}

fn not_leader_hint() -> NotLeader {
    NotLeader::new(NotLeaderReason::NotLeader)
        .with_leader_id(NodeId::new(2))
        .with_leader_endpoint(leader().endpoint)
}

#[tokio::test]
async fn a_problem_becomes_a_problem_json_response() {
    let expected = doc(&map(not_leader_hint()));
    let response: http::Response<UnsyncBoxBody<Bytes, BoxError>> =
        map(not_leader_hint()).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["content-type"], PROBLEM_CONTENT_TYPE);
    assert_eq!(response.headers()[LEADER_ID_HEADER], "2");
    assert_eq!(response.headers()[LEADER_HEADER], "http://10.0.0.2:5002");
    assert_eq!(response.headers()[RETRY_AFTER], "0");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), expected);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn a_problem_becomes_an_axum_response_too() {
    let expected = doc(&map(not_leader_hint()));
    let response: http::Response<axum::body::Body> = map(not_leader_hint()).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["content-type"], PROBLEM_CONTENT_TYPE);
    assert_eq!(response.headers()[RETRY_AFTER], "0");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), expected);
}
