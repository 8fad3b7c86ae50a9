//! `ForwardToLeader` against `tower-test` mocks, for the inner service and
//! for the forwarder: every branch of `call`, the hold, the hop limit,
//! retries, failures with both policies, and readiness. The mock inner
//! service panics if it is called without a successful `poll_ready` first.
#![cfg(all(feature = "http-forwarder", feature = "axum"))]
#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use catga_cluster_core::protocol::{FORWARDED_HEADER, LEADER_HEADER, LEADER_ID_HEADER};
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{
    BoxError, ClusterCoordinator, Endpoint, ForwardRequest, LeaderInfo, NodeId, NodeInfo,
    NotLeader, NotLeaderReason,
};
use catga_cluster_tower::error::{ForwardFailed, ForwardFailureKind, ForwardTimeout, HopLimit};
use catga_cluster_tower::{ForwardToLeader, ForwardToLeaderLayer, HttpPolicy, PlainPolicy};
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower_test::mock::{self, Handle, Mock, Spawn};

type Req = http::Request<String>;
type Resp = http::Response<Body>;
type Inner = Mock<Req, Resp>;
type Fwd = Mock<ForwardRequest<Req>, Resp>;
type Layer<P> = ForwardToLeaderLayer<ManualCoordinator, Fwd, P>;

/// A long hold for tests that run on the wall clock: it never expires in a
/// passing run, and nothing waits for it.
const LONG_HOLD: Duration = Duration::from_secs(20);

struct Harness<P> {
    coord: ManualCoordinator,
    svc: Spawn<ForwardToLeader<Inner, ManualCoordinator, Fwd, P>>,
    inner: Handle<Req, Resp>,
    fwd: Handle<ForwardRequest<Req>, Resp>,
}

fn harness<P: Clone>(
    coord: &ManualCoordinator,
    configure: impl FnOnce(Layer<HttpPolicy>) -> Layer<P>,
) -> Harness<P> {
    let (fwd_mock, fwd) = mock::pair::<ForwardRequest<Req>, Resp>();
    let layer = configure(ForwardToLeaderLayer::with_forwarder(
        coord.clone(),
        fwd_mock,
    ));
    let (svc, inner) = mock::spawn_layer::<Req, Resp, _>(layer);
    Harness {
        coord: coord.clone(),
        svc,
        inner,
        fwd,
    }
}

fn http_harness(coord: &ManualCoordinator) -> Harness<HttpPolicy> {
    harness(coord, |l| l.hold_timeout(LONG_HOLD))
}

fn plain_harness(coord: &ManualCoordinator) -> Harness<PlainPolicy> {
    harness(coord, |l| l.hold_timeout(LONG_HOLD).policy(PlainPolicy))
}

fn node(id: u64, port: u16) -> NodeInfo {
    NodeInfo::new(
        NodeId::new(id),
        Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    )
}

fn follower_of(leader: Option<NodeInfo>) -> ManualCoordinator {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(leader);
    coord
}

fn get(uri: &str) -> Req {
    http::Request::get(uri).body(String::new()).unwrap()
}

fn post(uri: &str, body: &str) -> Req {
    http::Request::post(uri).body(body.to_owned()).unwrap()
}

fn with_hops(mut req: Req, hops: &str) -> Req {
    req.headers_mut()
        .insert(FORWARDED_HEADER, hops.parse().unwrap());
    req
}

fn answer(status: StatusCode, text: &'static str) -> Resp {
    let mut response = http::Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

async fn text(response: Resp) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Status, headers and parsed document of a problem response.
async fn problem(response: Resp) -> (StatusCode, HeaderMap, serde_json::Value) {
    let (parts, body) = response.into_parts();
    assert_eq!(
        parts.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["status"], parts.status.as_u16());
    assert!(doc["title"].is_string() && doc["detail"].is_string());
    (parts.status, parts.headers, doc)
}

fn connect_failure(leader: &NodeInfo) -> ForwardFailed {
    ForwardFailed::new(
        leader.clone(),
        ForwardFailureKind::Connect,
        "connection refused",
    )
}

fn transport_failure(leader: &NodeInfo) -> ForwardFailed {
    ForwardFailed::new(
        leader.clone(),
        ForwardFailureKind::Transport,
        "connection reset",
    )
}

fn downcast<T: std::error::Error + 'static>(err: &BoxError) -> &T {
    err.downcast_ref::<T>()
        .unwrap_or_else(|| panic!("unexpected error: {err}"))
}

// ----- the leader serves -----

#[tokio::test]
async fn the_leader_calls_the_inner_service() {
    let coord = ManualCoordinator::new_leader();
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", "{}")));
    let (request, send) = h.inner.next_request().await.unwrap();
    assert_eq!(request.uri(), "/orders");
    assert_eq!(request.body(), "{}");
    send.send_response(answer(StatusCode::CREATED, "created"));
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(text(response).await, "created");
    assert_pending!(h.fwd.poll_request(), "the leader forwarded");
}

#[tokio::test]
async fn the_leader_serves_a_request_that_was_already_forwarded() {
    let coord = ManualCoordinator::new_leader();
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(with_hops(post("/orders", "{}"), "1")));
    let (request, send) = h.inner.next_request().await.unwrap();
    assert_eq!(request.headers()[FORWARDED_HEADER], "1");
    send.send_response(answer(StatusCode::OK, "served"));
    assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);
}

// ----- a follower forwards -----

#[tokio::test(start_paused = true)]
async fn a_follower_hands_the_request_to_the_forwarder() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let called_at = Instant::now();
    let response = tokio::spawn(h.svc.call(post("/orders?customer=7", "payload")));
    let (forward, send) = h.fwd.next_request().await.expect("forwarded");
    assert_eq!(forward.leader, leader);
    assert_eq!(forward.hops, 1);
    // The clock is paused: the deadline is exactly the default 30 s away.
    assert_eq!(forward.deadline, Some(called_at + Duration::from_secs(30)));
    assert_eq!(forward.request.method(), Method::POST);
    assert_eq!(forward.request.uri(), "/orders?customer=7");
    assert_eq!(forward.request.body(), "payload");

    send.send_response(answer(StatusCode::CREATED, "created by the leader"));
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(text(response).await, "created by the leader");
    assert_pending!(h.inner.poll_request(), "a follower called inner");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_follows_the_configured_timeout() {
    let coord = follower_of(Some(node(2, 5002)));
    for (timeout, expected) in [
        (
            Some(Duration::from_millis(250)),
            Some(Duration::from_millis(250)),
        ),
        (None, None),
    ] {
        let mut h = harness(&coord, |l| l.timeout(timeout));
        assert_ready_ok!(h.svc.poll_ready());
        let called_at = Instant::now();
        let response = tokio::spawn(h.svc.call(post("/orders", "x")));
        let (forward, send) = h.fwd.next_request().await.unwrap();
        assert_eq!(forward.deadline, expected.map(|t| called_at + t));
        send.send_response(answer(StatusCode::OK, ""));
        response.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_hop_count_grows_by_one() {
    let coord = follower_of(Some(node(2, 5002)));
    let mut h = harness(&coord, |l| l.hop_limit(3));

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(with_hops(post("/orders", "x"), "2")));
    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.hops, 3);
    send.send_response(answer(StatusCode::OK, ""));
    response.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_copyable_request_to_a_known_leader_is_forwarded_too() {
    // A GET without a body can be copied for a retry, so it takes the held
    // path even when the leader is known; it is forwarded at once all the same.
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(get("/orders/1")));
    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.leader, leader);
    assert_eq!(forward.hops, 1);
    assert_eq!(forward.request.uri(), "/orders/1");
    send.send_response(answer(StatusCode::OK, "order 1"));
    assert_eq!(text(response.await.unwrap().unwrap()).await, "order 1");
}

// ----- no leader known: the hold -----

#[tokio::test(start_paused = true)]
async fn a_request_is_held_until_a_leader_appears() {
    let coord = follower_of(None);
    let mut h = harness(&coord, |l| l.hold_timeout(Duration::from_millis(600)));

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(post("/orders", "x")));
    assert_pending!(response.poll());
    assert_pending!(h.fwd.poll_request(), "forwarded with no leader");

    // Part of the hold passes; then a leader is elected.
    tokio::time::advance(Duration::from_millis(300)).await;
    assert_pending!(response.poll());
    let leader = node(3, 5003);
    h.coord.set_follower(Some(leader.clone()));
    assert!(response.is_woken(), "the held request waits on changes");
    assert_pending!(response.poll());

    let (forward, send) = h.fwd.next_request().await.expect("forwarded");
    assert_eq!(forward.leader, leader);
    assert_eq!(forward.hops, 1);
    send.send_response(answer(StatusCode::OK, "late but served"));
    let response = assert_ready_ok!(response.poll());
    assert_eq!(text(response).await, "late but served");
    assert_pending!(h.inner.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_held_request_is_served_locally_when_this_node_is_elected() {
    let coord = follower_of(None);
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(post("/orders", "x")));
    assert_pending!(response.poll());
    h.coord.set_leader();
    assert_pending!(response.poll());
    let (request, send) = h.inner.next_request().await.expect("served locally");
    assert_eq!(request.body(), "x");
    send.send_response(answer(StatusCode::CREATED, "local"));
    assert_eq!(
        assert_ready_ok!(response.poll()).status(),
        StatusCode::CREATED
    );
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test(start_paused = true)]
async fn the_hold_expires_as_a_no_leader_problem() {
    let coord = follower_of(None);
    let mut h = harness(&coord, |l| l.hold_timeout(Duration::from_millis(600)));

    assert_ready_ok!(h.svc.poll_ready());
    let started = Instant::now();
    // The paused clock jumps to the end of the hold.
    let response = h.svc.call(post("/orders", "x")).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    let (status, headers, doc) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["type"], "no-leader");
    assert_eq!(doc["reason"], "no-leader");
    assert_eq!(headers[http::header::RETRY_AFTER], "1");
    assert!(!headers.contains_key(LEADER_ID_HEADER));
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

#[tokio::test(start_paused = true)]
async fn the_hold_expires_as_a_not_leader_error_with_the_plain_policy() {
    let coord = follower_of(None);
    let mut h = harness(&coord, |l| {
        l.hold_timeout(Duration::from_millis(600))
            .policy(PlainPolicy)
    });

    assert_ready_ok!(h.svc.poll_ready());
    let err = h.svc.call(post("/orders", "x")).await.unwrap_err();
    let refusal = downcast::<NotLeader>(&err);
    assert_eq!(refusal.reason, NotLeaderReason::NoLeader);
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_leader_without_a_known_endpoint_is_waited_for() {
    let coord = follower_of(None);
    coord.update(|l| {
        l.leader = Some(LeaderInfo {
            id: NodeId::new(2),
            endpoint: None,
        })
    });
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(post("/orders", "x")));
    assert_pending!(response.poll());
    assert_pending!(h.fwd.poll_request());
    h.coord.set_follower(Some(node(2, 5002)));
    assert_pending!(response.poll());
    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.leader, node(2, 5002));
    send.send_response(answer(StatusCode::OK, ""));
    assert_ready_ok!(response.poll());
}

// ----- loops -----

#[tokio::test]
async fn a_forwarded_request_on_a_follower_hits_the_hop_limit() {
    let coord = follower_of(Some(node(2, 5002)));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = h
        .svc
        .call(with_hops(post("/orders", "x"), "1"))
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::LOOP_DETECTED);
    assert_eq!(status.as_u16(), 508);
    assert_eq!(doc["type"], "hop-limit");
    assert_eq!(doc["hops"], 1);
    assert_eq!(doc["limit"], 1);
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

#[tokio::test]
async fn a_malformed_hop_count_is_a_bad_request_on_every_node() {
    let follower = follower_of(Some(node(2, 5002)));
    let leader = ManualCoordinator::new_leader();
    for coord in [&follower, &leader] {
        let mut h = http_harness(coord);
        for bad in [
            "many",
            "abc",
            "-1",
            "+1",
            "1.5",
            "",
            " ",
            "4294967296",
            "99999999999",
            "1,1",
        ] {
            assert_ready_ok!(h.svc.poll_ready());
            let response = h
                .svc
                .call(with_hops(post("/orders", "x"), bad))
                .await
                .unwrap();
            let (status, _, doc) = problem(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "hop count {bad:?}");
            assert_eq!(doc["type"], "bad-request");
            assert!(doc["detail"]
                .as_str()
                .unwrap()
                .contains("x-catga-forwarded"));
        }
        // The header given twice is as malformed as a list.
        assert_ready_ok!(h.svc.poll_ready());
        let mut twice = post("/orders", "x");
        twice
            .headers_mut()
            .append("x-catga-forwarded", "0".parse().unwrap());
        twice
            .headers_mut()
            .append("x-catga-forwarded", "0".parse().unwrap());
        let (status, _, _) = problem(h.svc.call(twice).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_pending!(h.fwd.poll_request());
        assert_pending!(h.inner.poll_request());
    }
}

#[test]
fn hop_counts_that_parse() {
    let mut headers = http::HeaderMap::new();
    for (text, want) in [("0", 0), (" 1 ", 1), ("4294967295", u32::MAX), ("007", 7)] {
        headers.insert("x-catga-forwarded", text.parse().unwrap());
        assert_eq!(
            catga_cluster_tower::forward::parse_hop_count(&headers).unwrap(),
            want
        );
    }
}

#[tokio::test]
async fn the_hop_limit_is_an_error_with_the_plain_policy() {
    // PlainPolicy carries no hop count (0); a limit of 0 refuses every forward.
    let coord = follower_of(Some(node(2, 5002)));
    let mut h = harness(&coord, |l| l.hop_limit(0).policy(PlainPolicy));

    assert_ready_ok!(h.svc.poll_ready());
    let err = h.svc.call(post("/orders", "x")).await.unwrap_err();
    assert_eq!(downcast::<HopLimit>(&err), &HopLimit::new(0, 0));
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_node_never_forwards_to_itself() {
    // This node still names itself leader, but its lease lapsed: it must
    // neither serve nor forward to itself; the request is held.
    let coord = ManualCoordinator::new_leader();
    coord.expire_lease();
    assert_eq!(coord.leadership().leader_id(), Some(NodeId::new(1)));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(post("/orders", "x")));
    assert_pending!(response.poll());
    assert_pending!(h.fwd.poll_request(), "forwarded to itself");
    assert_pending!(h.inner.poll_request(), "served without a lease");

    // The lease comes back: served here.
    h.coord.set_leader();
    assert_pending!(response.poll());
    let (_, send) = h.inner.next_request().await.unwrap();
    send.send_response(answer(StatusCode::OK, "local"));
    assert_eq!(text(assert_ready_ok!(response.poll())).await, "local");
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_names_itself_leader_answers_no_leader_after_the_hold() {
    let coord = ManualCoordinator::new_leader();
    coord.expire_lease();
    let mut h = harness(&coord, |l| l.hold_timeout(Duration::from_millis(600)));

    assert_ready_ok!(h.svc.poll_ready());
    let response = h.svc.call(post("/orders", "x")).await.unwrap();
    let (status, headers, doc) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["type"], "no-leader");
    assert_eq!(headers[http::header::RETRY_AFTER], "1");
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

// ----- hand-over: the grace hop, and a fresh leader's lease -----

#[tokio::test]
async fn a_node_handing_over_passes_a_forwarded_request_on_once_more() {
    // This node led when the request was forwarded to it; it is handing
    // over now, so it may pass the request on to its successor.
    let coord = ManualCoordinator::new_leader();
    coord.update(|l| l.transferring = true);
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(with_hops(post("/orders", "x"), "1")));
    assert_pending!(response.poll(), "refused during the hand-over");
    assert_pending!(h.fwd.poll_request());

    let successor = node(3, 5003);
    h.coord.set_follower(Some(successor.clone()));
    assert_pending!(response.poll());
    let (forward, send) = h.fwd.next_request().await.expect("passed on");
    assert_eq!(forward.leader, successor);
    assert_eq!(forward.hops, 2);
    send.send_response(answer(StatusCode::OK, "served by the successor"));
    assert_eq!(
        text(assert_ready_ok!(response.poll())).await,
        "served by the successor"
    );
    assert_pending!(h.inner.poll_request());
}

#[tokio::test]
async fn a_node_handing_over_to_a_known_successor_forwards_at_once() {
    let successor = node(3, 5003);
    let coord = ManualCoordinator::new_leader();
    coord.update(|l| {
        l.transferring = true;
        l.leader = Some(LeaderInfo::from(successor.clone()));
    });
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(with_hops(post("/orders", "x"), "1")));
    let (forward, send) = h.fwd.next_request().await.expect("passed on");
    assert_eq!(forward.leader, successor);
    assert_eq!(forward.hops, 2);
    send.send_response(answer(StatusCode::OK, ""));
    assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_grace_hop_is_granted_once() {
    let coord = ManualCoordinator::new_leader();
    coord.update(|l| {
        l.transferring = true;
        l.leader = Some(LeaderInfo::from(node(3, 5003)));
    });
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = h
        .svc
        .call(with_hops(post("/orders", "x"), "2"))
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status.as_u16(), 508);
    assert_eq!(doc["type"], "hop-limit");
    assert_eq!(doc["hops"], 2);
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

/// A node just elected (it names itself leader, but has no lease yet).
fn fresh_leader() -> ManualCoordinator {
    let coord = ManualCoordinator::new_leader();
    coord.expire_lease();
    coord
}

#[tokio::test]
async fn a_forwarded_request_waits_for_a_fresh_leaders_lease() {
    let coord = fresh_leader();
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(with_hops(post("/orders", "x"), "1")));
    assert_pending!(response.poll(), "refused before the lease");
    assert_pending!(h.inner.poll_request());

    h.coord.set_leader();
    assert_pending!(response.poll());
    let (request, send) = h.inner.next_request().await.expect("served here");
    assert_eq!(request.headers()[FORWARDED_HEADER], "1");
    send.send_response(answer(StatusCode::CREATED, ""));
    assert_eq!(
        assert_ready_ok!(response.poll()).status(),
        StatusCode::CREATED
    );
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test]
async fn a_fresh_leader_that_is_replaced_refuses_the_forwarded_request() {
    let coord = fresh_leader();
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(with_hops(post("/orders", "x"), "1")));
    assert_pending!(response.poll());

    // Another node wins: the request has used its hop, it is not forwarded.
    h.coord.set_follower(Some(node(3, 5003)));
    let (status, _, doc) = problem(assert_ready_ok!(response.poll())).await;
    assert_eq!(status.as_u16(), 508);
    assert_eq!(doc["type"], "hop-limit");
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_fresh_leader_without_a_lease_answers_no_leader_after_the_hold() {
    let coord = fresh_leader();
    let mut h = harness(&coord, |l| l.hold_timeout(Duration::from_millis(600)));

    assert_ready_ok!(h.svc.poll_ready());
    let response = h
        .svc
        .call(with_hops(post("/orders", "x"), "1"))
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["type"], "no-leader");
    assert_pending!(h.fwd.poll_request());
    assert_pending!(h.inner.poll_request());
}

// ----- forwarding failures -----

#[tokio::test]
async fn a_failed_forward_is_a_forward_failed_problem() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", "x")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&leader));
    let (status, headers, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(doc["type"], "forward-failed");
    assert!(
        !doc["detail"].as_str().unwrap().contains("connection reset"),
        "the transport error leaks into the body: {doc}"
    );
    assert!(!headers.contains_key(LEADER_HEADER));
}

#[tokio::test]
async fn a_forward_timeout_is_a_forward_timeout_problem() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", "x")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(ForwardTimeout::new(leader, Duration::from_secs(30)));
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(doc["type"], "forward-timeout");
}

#[tokio::test]
async fn an_unknown_forwarder_error_is_an_internal_problem() {
    let coord = follower_of(Some(node(2, 5002)));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", "x")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error("secret internal state at /var/lib/x");
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(doc["type"], "internal");
    assert!(!doc.to_string().contains("/var/lib/x"));
}

#[tokio::test]
async fn forwarder_errors_pass_through_with_the_plain_policy() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = plain_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", "x")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&leader));
    let err = response.await.unwrap().unwrap_err();
    let failed = downcast::<ForwardFailed>(&err);
    assert_eq!(failed.kind, ForwardFailureKind::Transport);
    assert_eq!(failed.leader, leader);
    assert_pending!(h.fwd.poll_request(), "retried");
}

// ----- retries -----

#[tokio::test]
async fn a_get_is_retried_once_on_the_new_leader_after_a_connect_failure() {
    let first = node(2, 5002);
    let second = node(3, 5003);
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut req = get("/orders/9?full=1");
    req.headers_mut()
        .insert("traceparent", "00-abc-def-01".parse().unwrap());
    let response = tokio::spawn(h.svc.call(req));

    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.leader, first);
    send.send_error(connect_failure(&first));
    h.coord.set_follower(Some(second.clone()));

    let (forward, send) = h.fwd.next_request().await.expect("retried");
    assert_eq!(forward.leader, second);
    assert_eq!(forward.hops, 1, "a retry is not another hop");
    assert_eq!(forward.request.method(), Method::GET);
    assert_eq!(forward.request.uri(), "/orders/9?full=1");
    assert_eq!(forward.request.headers()["traceparent"], "00-abc-def-01");
    send.send_response(answer(StatusCode::OK, "order 9"));
    assert_eq!(text(response.await.unwrap().unwrap()).await, "order 9");
}

#[tokio::test]
async fn an_idempotent_request_is_retried_after_a_transport_failure() {
    let first = node(2, 5002);
    let second = node(3, 5003);
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let req = http::Request::delete("/orders/9")
        .body(String::new())
        .unwrap();
    let response = tokio::spawn(h.svc.call(req));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&first));
    h.coord.set_follower(Some(second.clone()));
    let (forward, send) = h.fwd.next_request().await.expect("retried");
    assert_eq!(forward.leader, second);
    send.send_response(answer(StatusCode::NO_CONTENT, ""));
    assert_eq!(
        response.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_post_without_a_body_is_retried_only_when_it_cannot_have_arrived() {
    let first = node(2, 5002);
    let second = node(3, 5003);

    // Connect failure: surely not sent, so retried.
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);
    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders/9/cancel", "")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(connect_failure(&first));
    h.coord.set_follower(Some(second.clone()));
    let (forward, send) = h.fwd.next_request().await.expect("retried");
    assert_eq!(forward.leader, second);
    assert_eq!(forward.request.method(), Method::POST);
    send.send_response(answer(StatusCode::OK, ""));
    assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);

    // Transport failure: it may have reached the leader, so not retried.
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);
    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders/9/cancel", "")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&first));
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(doc["type"], "forward-failed");
    h.coord.set_follower(Some(second));
    assert_pending!(h.fwd.poll_request(), "a non-idempotent request was retried");
}

#[tokio::test]
async fn a_post_with_a_body_is_never_retried() {
    let first = node(2, 5002);
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(post("/orders", r#"{"customer":"c"}"#)));
    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.request.body(), r#"{"customer":"c"}"#);
    send.send_error(connect_failure(&first));
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(doc["type"], "forward-failed");
    h.coord.set_follower(Some(node(3, 5003)));
    assert_pending!(h.fwd.poll_request(), "a streaming body was retried");
}

#[tokio::test]
async fn a_put_with_a_body_is_not_retried_even_though_idempotent() {
    let first = node(2, 5002);
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let req = http::Request::put("/cluster/kv/a")
        .body("v".to_owned())
        .unwrap();
    let response = tokio::spawn(h.svc.call(req));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&first));
    assert_eq!(
        response.await.unwrap().unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test]
async fn there_is_one_retry_at_most() {
    let first = node(2, 5002);
    let second = node(3, 5003);
    let coord = follower_of(Some(first.clone()));
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(get("/orders")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(connect_failure(&first));
    h.coord.set_follower(Some(second.clone()));
    let (forward, send) = h.fwd.next_request().await.unwrap();
    assert_eq!(forward.leader, second);
    send.send_error(connect_failure(&second));
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(doc["type"], "forward-failed");
    assert!(doc["detail"].as_str().unwrap().contains("node 3"));
}

#[tokio::test]
async fn no_retry_with_max_retries_zero() {
    let first = node(2, 5002);
    let coord = follower_of(Some(first.clone()));
    let mut h = harness(&coord, |l| l.max_retries(0));

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(get("/orders")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(connect_failure(&first));
    assert_eq!(
        response.await.unwrap().unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    h.coord.set_follower(Some(node(3, 5003)));
    assert_pending!(h.fwd.poll_request());
}

#[tokio::test]
async fn the_plain_policy_never_retries() {
    let first = node(2, 5002);
    let coord = follower_of(Some(first.clone()));
    let mut h = plain_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(get("/orders")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(connect_failure(&first));
    let err = response.await.unwrap().unwrap_err();
    assert!(downcast::<ForwardFailed>(&err).is_connect());
    h.coord.set_follower(Some(node(3, 5003)));
    assert_pending!(h.fwd.poll_request());
}

/// A leader that cannot be reached and does not change: the retry waits
/// for another leader through the hold, and then the answer should still
/// be the contract's `forward-failed` (a leader is known: it was just not
/// reachable), not `no-leader`.
#[tokio::test(start_paused = true)]
async fn an_unreachable_leader_that_stays_is_a_forward_failed_problem() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let mut h = harness(&coord, |l| l.hold_timeout(Duration::from_millis(600)));

    assert_ready_ok!(h.svc.poll_ready());
    let response = tokio::spawn(h.svc.call(get("/orders")));
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_error(connect_failure(&leader));
    let (status, _, doc) = problem(response.await.unwrap().unwrap()).await;
    assert_eq!(doc["type"], "forward-failed");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

// ----- readiness -----

#[tokio::test]
async fn poll_ready_is_the_inner_services() {
    for coord in [
        ManualCoordinator::new_leader(),
        follower_of(Some(node(2, 5002))),
    ] {
        let mut h = http_harness(&coord);
        h.inner.allow(0);
        assert_pending!(h.svc.poll_ready());
        h.inner.allow(1);
        assert!(h.svc.is_woken());
        assert_ready_ok!(h.svc.poll_ready());
    }
}

#[tokio::test]
async fn a_clone_of_a_ready_service_is_not_ready() {
    let coord = ManualCoordinator::new_leader();
    let mut h = http_harness(&coord);
    assert_ready_ok!(h.svc.poll_ready());

    let mut clone = Spawn::new(h.svc.get_ref().clone());
    h.inner.allow(0);
    assert_pending!(clone.poll_ready());
    // The original keeps its reserved slot.
    assert_ready_ok!(h.svc.poll_ready());
    h.inner.allow(1);
    assert!(clone.is_woken());
    assert_ready_ok!(clone.poll_ready());
    let response = clone.call(post("/a", ""));
    let (request, send) = h.inner.next_request().await.unwrap();
    assert_eq!(request.uri(), "/a");
    send.send_response(answer(StatusCode::OK, ""));
    response.await.unwrap();
}

#[tokio::test]
async fn the_service_left_behind_by_a_held_request_is_not_ready() {
    let coord = follower_of(None);
    let mut h = http_harness(&coord);

    assert_ready_ok!(h.svc.poll_ready());
    let mut held = tokio_test::task::spawn(h.svc.call(post("/a", "x")));
    assert_pending!(held.poll());

    // The ready inner service went into the held future.
    h.inner.allow(0);
    assert_pending!(h.svc.poll_ready());
    h.inner.allow(u64::MAX);
    assert_ready_ok!(h.svc.poll_ready());

    // The held request, served locally once elected, uses its own slot.
    h.coord.set_leader();
    assert_pending!(held.poll());
    let (request, send) = h.inner.next_request().await.unwrap();
    assert_eq!(request.uri(), "/a");
    send.send_response(answer(StatusCode::OK, ""));
    assert_ready_ok!(held.poll());

    // And the one left behind serves the next request.
    let response = tokio::spawn(h.svc.call(post("/b", "y")));
    let (request, send) = h.inner.next_request().await.unwrap();
    assert_eq!(request.uri(), "/b");
    send.send_response(answer(StatusCode::OK, ""));
    response.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_broken_inner_service_is_answered_by_the_policy() {
    // HttpPolicy: readiness is reported, the call answers 500.
    let coord = ManualCoordinator::new_leader();
    let mut h = http_harness(&coord);
    h.inner.send_error("inner service broke");
    assert_ready_ok!(h.svc.poll_ready());
    let response = h.svc.call(post("/a", "x")).await.unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(doc["type"], "internal");
    assert!(!doc.to_string().contains("broke"));
    assert_pending!(h.inner.poll_request());

    // PlainPolicy: the error comes back from the call.
    let mut h = plain_harness(&coord);
    h.inner.send_error("inner service broke");
    assert_ready_ok!(h.svc.poll_ready());
    let err = h.svc.call(post("/a", "x")).await.unwrap_err();
    assert_eq!(err.to_string(), "inner service broke");
    assert_pending!(h.inner.poll_request());
}

#[tokio::test]
async fn the_forwarder_is_driven_to_readiness_before_it_is_called() {
    // The forwarder mock is at capacity: the forward waits for it.
    let coord = follower_of(Some(node(2, 5002)));
    let mut h = http_harness(&coord);
    h.fwd.allow(0);

    assert_ready_ok!(h.svc.poll_ready());
    let mut response = tokio_test::task::spawn(h.svc.call(post("/a", "x")));
    assert_pending!(response.poll());
    assert_pending!(h.fwd.poll_request());
    h.fwd.allow(1);
    assert!(response.is_woken());
    assert_pending!(response.poll());
    let (_, send) = h.fwd.next_request().await.unwrap();
    send.send_response(answer(StatusCode::OK, ""));
    let _ = assert_ready!(response.poll());
}

// ----- `with_plain_forwarder`: requests that are not `http::Request`s -----

type Command = String;
type CommandInner = Mock<Command, Command>;
type CommandFwd = Mock<ForwardRequest<Command>, Command>;

struct CommandHarness {
    svc: Spawn<ForwardToLeader<CommandInner, ManualCoordinator, CommandFwd, PlainPolicy>>,
    inner: Handle<Command, Command>,
    fwd: Handle<ForwardRequest<Command>, Command>,
}

/// A layer over `String` commands built with `with_plain_forwarder`: no
/// `.policy(PlainPolicy)` anywhere.
fn command_harness(coord: &ManualCoordinator) -> CommandHarness {
    let (fwd_mock, fwd) = mock::pair::<ForwardRequest<Command>, Command>();
    let layer = ForwardToLeaderLayer::with_plain_forwarder(coord.clone(), fwd_mock)
        .hold_timeout(Duration::from_millis(600));
    let (svc, inner) = mock::spawn_layer::<Command, Command, _>(layer);
    CommandHarness { svc, inner, fwd }
}

#[tokio::test]
async fn a_plain_forwarder_layer_serves_commands_on_the_leader() {
    let coord = ManualCoordinator::new_leader();
    let CommandHarness {
        mut svc,
        mut inner,
        mut fwd,
    } = command_harness(&coord);

    assert_ready_ok!(svc.poll_ready());
    let response = tokio::spawn(svc.call("add 1 2".to_owned()));
    let (command, send) = inner.next_request().await.unwrap();
    assert_eq!(command, "add 1 2");
    send.send_response("3".to_owned());
    assert_eq!(response.await.unwrap().unwrap(), "3");
    assert_pending!(fwd.poll_request(), "the leader forwarded");
}

#[tokio::test]
async fn a_plain_forwarder_layer_forwards_commands_from_a_follower() {
    let leader = node(2, 5002);
    let coord = follower_of(Some(leader.clone()));
    let CommandHarness {
        mut svc,
        mut inner,
        mut fwd,
    } = command_harness(&coord);

    assert_ready_ok!(svc.poll_ready());
    let response = tokio::spawn(svc.call("add 1 2".to_owned()));
    let (forward, send) = fwd.next_request().await.expect("forwarded");
    assert_eq!(forward.leader, leader);
    assert_eq!(forward.request, "add 1 2");
    assert_eq!(
        forward.hops, 1,
        "a command carries no hop count: 0, plus this hop"
    );
    send.send_response("3 from the leader".to_owned());
    assert_eq!(response.await.unwrap().unwrap(), "3 from the leader");
    assert_pending!(inner.poll_request(), "a follower called inner");
}

#[tokio::test(start_paused = true)]
async fn a_plain_forwarder_layer_returns_failures_as_errors() {
    // No leader: the hold expires as a typed error, not a response.
    let coord = follower_of(None);
    let CommandHarness {
        mut svc,
        inner: _inner, // dropped, the mock would report itself closed
        mut fwd,
    } = command_harness(&coord);
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call("add 1 2".to_owned()).await.unwrap_err();
    assert_eq!(
        downcast::<NotLeader>(&err).reason,
        NotLeaderReason::NoLeader
    );
    assert_pending!(fwd.poll_request());

    // A failed forward comes back as the forwarder's error, never retried.
    let leader = node(2, 5002);
    coord.set_follower(Some(leader.clone()));
    let CommandHarness {
        mut svc,
        inner: _inner, // dropped, the mock would report itself closed
        mut fwd,
    } = command_harness(&coord);
    assert_ready_ok!(svc.poll_ready());
    let response = tokio::spawn(svc.call("add 1 2".to_owned()));
    let (_, send) = fwd.next_request().await.unwrap();
    send.send_error(transport_failure(&leader));
    let err = response.await.unwrap().unwrap_err();
    assert_eq!(
        downcast::<ForwardFailed>(&err).kind,
        ForwardFailureKind::Transport
    );
}
