//! `ServiceBuilderExt`: the one-liners compile and do what the layers do.
#![cfg(all(feature = "leader-only", feature = "http-forwarder", feature = "axum"))]
#![allow(missing_docs)]

use std::convert::Infallible;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{Endpoint, NodeId, NodeInfo, NotLeader};
use catga_cluster_tower::ServiceBuilderExt;
use http::StatusCode;
use tower::{service_fn, ServiceBuilder, ServiceExt};

fn other() -> NodeInfo {
    NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse("http://127.0.0.1:9").unwrap(),
    )
}

#[tokio::test]
async fn leader_only_from_the_builder() {
    let coord = ManualCoordinator::new_leader();
    let svc = ServiceBuilder::new()
        .leader_only(coord.clone())
        .service(service_fn(
            |n: u32| async move { Ok::<_, Infallible>(n + 1) },
        ));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 2);

    coord.set_follower(Some(other()));
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<NotLeader>().unwrap().leader_id,
        Some(NodeId::new(2))
    );
}

#[tokio::test]
async fn forward_to_leader_from_the_builder() {
    let coord = ManualCoordinator::new_leader();
    let svc = ServiceBuilder::new()
        .forward_to_leader(coord.clone())
        .service(service_fn(|_req: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::from("local")))
        }));
    let response = svc
        .clone()
        .oneshot(http::Request::post("/a").body(Body::from("x")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // On a follower, an already forwarded request is refused, not forwarded.
    coord.set_follower(Some(other()));
    let request = http::Request::post("/a")
        .header(FORWARDED_HEADER, "1")
        .body(Body::from("x"))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 508);
}

#[tokio::test]
async fn the_builder_stack_is_a_router_layer() {
    let coord = ManualCoordinator::new_leader();
    let app = Router::new()
        .route("/orders", post(|| async { "created" }))
        .layer(ServiceBuilder::new().forward_to_leader(coord));
    let response = app
        .oneshot(
            http::Request::post("/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], b"created");
}
