//! `LeaderOnly` against `tower-test` mocks: every branch of `call`, strict
//! mode and readiness. The mock inner service panics if it is called without
//! a successful `poll_ready` first, so every test also checks that.
#![cfg(feature = "leader-only")]
#![allow(missing_docs)]

use std::time::Duration;

use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{
    BoxError, ClusterCoordinator, Endpoint, NodeId, NodeInfo, NotLeader, NotLeaderReason,
};
use catga_cluster_tower::LeaderOnlyLayer;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower_test::mock;

fn other() -> NodeInfo {
    NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse("http://127.0.0.1:5002").unwrap(),
    )
}

fn refusal(err: BoxError) -> NotLeader {
    match err.downcast::<NotLeader>() {
        Ok(refusal) => *refusal,
        Err(other) => panic!("expected NotLeader, got {other}"),
    }
}

#[tokio::test]
async fn the_leader_calls_the_inner_service() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let answer = svc.call(21);
    let (request, send) = handle
        .next_request()
        .await
        .expect("the inner service is called");
    assert_eq!(request, 21);
    send.send_response(42);
    assert_eq!(answer.await.unwrap(), 42);
    // The cheap check only: no quorum round outside strict mode.
    assert_eq!(coord.leader_checks(), 0);
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord));

    assert_ready_ok!(svc.poll_ready());
    let answer = svc.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("inner failed");
    assert_eq!(answer.await.unwrap_err().to_string(), "inner failed");
}

#[tokio::test]
async fn a_follower_refuses_with_the_leader_hint_without_calling_inner() {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(other()));
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(1).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::NotLeader);
    assert_eq!(refused.leader_id, Some(NodeId::new(2)));
    assert_eq!(
        refused.leader_endpoint.as_ref().map(Endpoint::as_str),
        Some("http://127.0.0.1:5002")
    );
    assert_pending!(handle.poll_request(), "the inner service was called");

    // The readiness reserved for the refused request is still there: once
    // this node leads, the next request goes through.
    coord.set_leader();
    assert_ready_ok!(svc.poll_ready());
    let answer = svc.call(2);
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, 2);
    send.send_response(4);
    assert_eq!(answer.await.unwrap(), 4);
}

#[tokio::test]
async fn no_known_leader_is_refused_as_no_leader() {
    let coord = ManualCoordinator::new_follower();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord));

    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(1).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::NoLeader);
    assert_eq!(refused.leader_id, None);
    assert_eq!(refused.leader_endpoint, None);
    assert_pending!(handle.poll_request());
}

#[tokio::test]
async fn an_expired_lease_is_refused_as_lease_expired() {
    let coord = ManualCoordinator::new_leader();
    coord.expire_lease();
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(1).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::LeaseExpired);
    assert_eq!(
        refused.leader_id,
        Some(coord.leadership().leader_id().unwrap())
    );
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_lease_deadline_that_passes_is_refused_as_lease_expired() {
    let coord = ManualCoordinator::new_leader();
    coord.update(|l| {
        l.lease_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(100));
    });
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let answer = svc.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    answer.await.unwrap();

    // No new snapshot is published: the deadline alone ends the lease.
    tokio::time::advance(Duration::from_millis(150)).await;
    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(2).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::LeaseExpired);
    assert_pending!(handle.poll_request());
}

#[tokio::test]
async fn a_leader_handing_over_is_refused_as_transferring() {
    let coord = ManualCoordinator::new_leader();
    coord.update(|l| l.transferring = true);
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord));

    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(1).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::Transferring);
    assert_pending!(handle.poll_request());
}

#[tokio::test]
async fn strict_mode_confirms_leadership_before_every_call() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::strict(coord.clone()));

    for n in 1..=3 {
        assert_ready_ok!(svc.poll_ready());
        let answer = svc.call(n);
        // The inner service is called only once the quorum round is done,
        // inside the response future: drive it on a task.
        let answer = tokio::spawn(answer);
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request, n);
        send.send_response(n * 10);
        assert_eq!(answer.await.unwrap().unwrap(), n * 10);
        assert_eq!(coord.leader_checks(), u64::from(n));
    }
}

#[tokio::test]
async fn strict_mode_refuses_when_the_quorum_round_fails() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::strict(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    // The cheap check passes at `call`...
    let answer = svc.call(1);
    // ...and leadership moves before the quorum round runs.
    coord.set_follower(Some(other()));
    let refused = refusal(answer.await.unwrap_err());
    assert_eq!(coord.leader_checks(), 1);
    assert_eq!(refused.reason, NotLeaderReason::NotLeader);
    assert_eq!(refused.leader_id, Some(NodeId::new(2)));
    assert_pending!(handle.poll_request(), "the inner service was called");
}

#[tokio::test]
async fn strict_mode_on_a_follower_refuses_without_calling_inner() {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(other()));
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::strict(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let refused = refusal(svc.call(1).await.unwrap_err());
    assert_eq!(refused.reason, NotLeaderReason::NotLeader);
    assert_eq!(refused.leader_id, Some(NodeId::new(2)));
    assert_pending!(handle.poll_request());
}

#[tokio::test]
async fn strict_mode_leaves_a_clone_that_is_not_ready() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::strict(coord.clone()));

    assert_ready_ok!(svc.poll_ready());
    let answer = tokio::spawn(svc.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    answer.await.unwrap().unwrap();

    // The ready service went into the future; the one left behind must be
    // driven to readiness again. With no capacity it is pending (the
    // original, already ready, would have answered Ready).
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test]
async fn poll_ready_is_the_inner_services() {
    let coord = ManualCoordinator::new_leader();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord));

    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());

    let answer = svc.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    answer.await.unwrap();

    handle.send_error("overloaded");
    let err = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.to_string(), "overloaded");
}

#[tokio::test]
async fn readiness_is_the_inner_services_on_a_follower_too() {
    // poll_ready stays the inner service's even on a follower: a caller that
    // respects readiness is never refused before the inner has capacity.
    let coord = ManualCoordinator::new_follower();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(LeaderOnlyLayer::new(coord));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    assert!(svc.call(1).await.is_err());
}

/// `LeaderOnlyLayer::http`: refusals answered as `503` problems, inner
/// answers and errors untouched, on mocks and on an axum `Router`.
#[cfg(feature = "http-forwarder")]
mod http {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use bytes::Bytes;
    use catga_cluster_core::protocol::{LEADER_HEADER, LEADER_ID_HEADER, PROBLEM_CONTENT_TYPE};
    use catga_cluster_core::testing::ManualCoordinator;
    use catga_cluster_tower::leader_only::LeaderOnly;
    use catga_cluster_tower::LeaderOnlyLayer;
    use http::header::{CONTENT_TYPE, RETRY_AFTER};
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use serde_json::Value;
    use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};
    use tower::{service_fn, Layer, Service, ServiceExt};
    use tower_test::mock;

    use super::other;

    fn req() -> Request<()> {
        Request::post("/jobs").body(()).unwrap()
    }

    async fn json<B>(response: Response<B>) -> Value
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    /// The status and content type of every refusal.
    fn check_problem<B>(response: &Response<B>) {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn the_leader_calls_the_inner_service_and_passes_its_answer_on() {
        let coord = ManualCoordinator::new_leader();
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http(coord.clone()),
        );

        assert_ready_ok!(svc.poll_ready());
        let answer = svc.call(req());
        let (request, send) = handle
            .next_request()
            .await
            .expect("the inner service is called");
        assert_eq!(request.uri(), "/jobs");
        send.send_response(Response::new(Body::from("started")));
        let response = answer.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "started");
        assert_eq!(coord.leader_checks(), 0);
    }

    #[tokio::test]
    async fn inner_errors_pass_through_unchanged() {
        let coord = ManualCoordinator::new_leader();
        let (mut svc, mut handle) =
            mock::spawn_layer::<Request<()>, Response<Body>, _>(LeaderOnlyLayer::http(coord));

        assert_ready_ok!(svc.poll_ready());
        let answer = svc.call(req());
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error("inner failed");
        // Not turned into a problem: the inner service's error is its own.
        assert_eq!(answer.await.unwrap_err().to_string(), "inner failed");
    }

    #[tokio::test]
    async fn a_follower_answers_not_leader_with_the_hint_without_calling_inner() {
        let coord = ManualCoordinator::new_follower();
        coord.set_follower(Some(other()));
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http(coord.clone()),
        );

        assert_ready_ok!(svc.poll_ready());
        let response = svc.call(req()).await.unwrap();
        check_problem(&response);
        assert_eq!(response.headers()[LEADER_HEADER], "http://127.0.0.1:5002");
        assert_eq!(response.headers()[LEADER_ID_HEADER], "2");
        assert_eq!(response.headers()[RETRY_AFTER], "0");
        let doc = json(response).await;
        assert_eq!(doc["type"], "not-leader");
        assert_eq!(doc["status"], 503);
        assert_eq!(doc["reason"], "not-leader");
        assert_eq!(doc["leader"]["id"], 2);
        assert_eq!(doc["leader"]["endpoint"], "http://127.0.0.1:5002");
        assert_pending!(handle.poll_request(), "the inner service was called");

        // The readiness reserved for the refused request is still there.
        coord.set_leader();
        assert_ready_ok!(svc.poll_ready());
        let answer = svc.call(req());
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(Body::empty()));
        assert_eq!(answer.await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn no_known_leader_is_no_leader_retry_after_one_without_hints() {
        let coord = ManualCoordinator::new_follower();
        let (mut svc, mut handle) =
            mock::spawn_layer::<Request<()>, Response<Body>, _>(LeaderOnlyLayer::http(coord));

        assert_ready_ok!(svc.poll_ready());
        let response = svc.call(req()).await.unwrap();
        check_problem(&response);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert!(!response.headers().contains_key(LEADER_HEADER));
        assert!(!response.headers().contains_key(LEADER_ID_HEADER));
        let doc = json(response).await;
        assert_eq!(doc["type"], "no-leader");
        assert_eq!(doc["reason"], "no-leader");
        assert_pending!(handle.poll_request());
    }

    #[tokio::test]
    async fn an_expired_lease_is_no_leader_with_its_reason() {
        let coord = ManualCoordinator::new_leader();
        coord.expire_lease();
        let (mut svc, mut handle) =
            mock::spawn_layer::<Request<()>, Response<Body>, _>(LeaderOnlyLayer::http(coord));

        assert_ready_ok!(svc.poll_ready());
        let response = svc.call(req()).await.unwrap();
        check_problem(&response);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        // This node is the last leader it knew: no hint that points at itself.
        assert!(!response.headers().contains_key(LEADER_HEADER));
        let doc = json(response).await;
        assert_eq!(doc["type"], "no-leader");
        assert_eq!(doc["reason"], "lease-expired");
        assert_pending!(handle.poll_request());
    }

    #[tokio::test]
    async fn strict_mode_confirms_leadership_before_every_call() {
        let coord = ManualCoordinator::new_leader();
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http_strict(coord.clone()),
        );

        for n in 1..=2 {
            assert_ready_ok!(svc.poll_ready());
            let answer = tokio::spawn(svc.call(req()));
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(Response::new(Body::empty()));
            assert_eq!(answer.await.unwrap().unwrap().status(), StatusCode::OK);
            assert_eq!(coord.leader_checks(), n);
        }
    }

    #[tokio::test]
    async fn strict_mode_answers_the_problem_when_the_quorum_round_fails() {
        let coord = ManualCoordinator::new_leader();
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http_strict(coord.clone()),
        );

        assert_ready_ok!(svc.poll_ready());
        // The cheap check passes at `call`...
        let answer = svc.call(req());
        // ...and leadership moves before the quorum round runs.
        coord.set_follower(Some(other()));
        let response = answer.await.unwrap();
        assert_eq!(coord.leader_checks(), 1);
        check_problem(&response);
        assert_eq!(response.headers()[LEADER_ID_HEADER], "2");
        assert_eq!(response.headers()[RETRY_AFTER], "0");
        assert_eq!(json(response).await["type"], "not-leader");
        assert_pending!(handle.poll_request(), "the inner service was called");
    }

    #[tokio::test]
    async fn strict_mode_on_a_follower_answers_without_a_quorum_round() {
        let coord = ManualCoordinator::new_follower();
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http_strict(coord.clone()),
        );

        assert_ready_ok!(svc.poll_ready());
        let response = svc.call(req()).await.unwrap();
        check_problem(&response);
        assert_eq!(coord.leader_checks(), 0);
        assert_pending!(handle.poll_request());
    }

    #[tokio::test]
    async fn strict_mode_leaves_a_clone_that_is_not_ready() {
        let coord = ManualCoordinator::new_leader();
        let (mut svc, mut handle) = mock::spawn_layer::<Request<()>, Response<Body>, _>(
            LeaderOnlyLayer::http_strict(coord),
        );

        assert_ready_ok!(svc.poll_ready());
        let answer = tokio::spawn(svc.call(req()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(Body::empty()));
        answer.await.unwrap().unwrap();

        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert!(svc.is_woken());
        assert_ready_ok!(svc.poll_ready());
    }

    #[tokio::test]
    async fn poll_ready_is_the_inner_services() {
        let coord = ManualCoordinator::new_follower();
        let (mut svc, mut handle) =
            mock::spawn_layer::<Request<()>, Response<Body>, _>(LeaderOnlyLayer::http(coord));

        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert!(svc.is_woken());
        assert_ready_ok!(svc.poll_ready());
        let _ = svc.call(req()).await.unwrap();

        handle.send_error("overloaded");
        let err = assert_ready_err!(svc.poll_ready());
        assert_eq!(err.to_string(), "overloaded");
    }

    #[tokio::test]
    async fn a_refusal_polled_again_answers_internal_instead_of_panicking() {
        let coord = ManualCoordinator::new_follower();
        let mut svc = LeaderOnly::http(
            service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }),
            coord,
        );
        let mut answer = tokio_test::task::spawn(svc.call(req()));
        let first = assert_ready!(answer.poll()).unwrap();
        assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
        let again = assert_ready!(answer.poll()).unwrap();
        assert_eq!(again.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(again.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn any_body_made_from_bytes_works() {
        // Not axum's body: the answer's body type is the inner service's.
        let coord = ManualCoordinator::new_follower();
        let svc = LeaderOnlyLayer::http(coord.clone()).layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        }));
        let response: Response<Full<Bytes>> = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(json(response).await["type"], "no-leader");
        coord.set_leader();
        let body = svc.oneshot(req()).await.unwrap().into_body();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "done");
    }

    async fn post_jobs(app: Router) -> Response<Body> {
        app.oneshot(Request::post("/jobs").body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn on_an_axum_route_followers_answer_503_and_the_leader_serves() {
        let coord = ManualCoordinator::new_follower();
        coord.set_follower(Some(other()));
        let app = Router::new()
            .route("/jobs", post(|| async { "started" }))
            .route_layer(LeaderOnlyLayer::http(coord.clone()));

        let response = post_jobs(app.clone()).await;
        check_problem(&response);
        assert_eq!(response.headers()[LEADER_HEADER], "http://127.0.0.1:5002");
        assert_eq!(response.headers()[LEADER_ID_HEADER], "2");
        assert_eq!(response.headers()[RETRY_AFTER], "0");
        assert_eq!(json(response).await["type"], "not-leader");

        coord.set_leader();
        let response = post_jobs(app).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "started"
        );
    }

    #[tokio::test]
    async fn on_an_axum_route_strict_mode_answers_too() {
        let coord = ManualCoordinator::new_leader();
        let app = Router::new()
            .route("/jobs", post(|| async { "started" }))
            .route_layer(LeaderOnlyLayer::http_strict(coord.clone()));

        assert_eq!(post_jobs(app.clone()).await.status(), StatusCode::OK);
        assert_eq!(coord.leader_checks(), 1);
        coord.expire_lease();
        let response = post_jobs(app).await;
        check_problem(&response);
        assert_eq!(json(response).await["reason"], "lease-expired");
    }
}
