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
