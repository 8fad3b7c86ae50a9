//! `HttpForwarder` with its boxed body, `ForwardToLeaderLayer::http`, in
//! front of a plain tower service (no axum types on the follower), against
//! a real "leader" server on `127.0.0.1:0`. Needs `http-forwarder` only:
//! the type a service written without the `axum` feature sees is the type
//! it sees with it.
#![cfg(feature = "http-forwarder")]
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{BoxError, Endpoint, NodeId, NodeInfo};
use catga_cluster_tower::http_forwarder::DefaultResponseBody;
use catga_cluster_tower::{ForwardToLeaderLayer, HttpForwarder};
use http::StatusCode;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};

type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

fn boxed(text: &'static str) -> UnsyncBoxBody<Bytes, BoxError> {
    Full::from(text).map_err(Into::into).boxed_unsync()
}

fn request(uri: &str, body: &'static str) -> http::Request<RequestBody> {
    http::Request::post(uri).body(boxed(body)).unwrap()
}

async fn text(body: DefaultResponseBody) -> String {
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The follower's own service: answers "follower" with the boxed body.
fn local() -> impl Service<
    http::Request<RequestBody>,
    Response = http::Response<DefaultResponseBody>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send
       + 'static {
    service_fn(|_req: http::Request<RequestBody>| async {
        Ok::<_, BoxError>(http::Response::new(boxed("served by the follower")))
    })
}

/// A leader that answers with the hop count it received and the body.
async fn leader() -> SocketAddr {
    use axum::extract::Request;
    let app = axum::Router::new().fallback(|req: Request| async move {
        let hops = req.headers()[FORWARDED_HEADER].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            StatusCode::CREATED,
            format!(
                "leader got {} at hop {hops}",
                String::from_utf8_lossy(&body)
            ),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn follower_of(addr: SocketAddr) -> ManualCoordinator {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse(&format!("http://{addr}")).unwrap(),
    )));
    coord
}

#[tokio::test]
async fn a_follower_forwards_with_the_boxed_body() {
    let addr = leader().await;
    let svc = ForwardToLeaderLayer::http(follower_of(addr)).layer(local());
    let response = svc.oneshot(request("/orders", "an order")).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        text(response.into_body()).await,
        "leader got an order at hop 1"
    );
}

#[tokio::test]
async fn the_leader_serves_with_the_boxed_body() {
    let svc = ForwardToLeaderLayer::http(ManualCoordinator::new_leader()).layer(local());
    let response = svc.oneshot(request("/orders", "an order")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response.into_body()).await, "served by the follower");
}

#[tokio::test]
async fn failures_are_problem_documents_in_the_boxed_body() {
    let svc = ForwardToLeaderLayer::http(ManualCoordinator::new_follower())
        .hold_timeout(Duration::from_millis(50))
        .layer(local());
    let response = svc.oneshot(request("/orders", "an order")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let doc: serde_json::Value = serde_json::from_str(&text(response.into_body()).await).unwrap();
    assert_eq!(doc["type"], "no-leader");
}

#[tokio::test]
async fn a_named_forwarder_is_the_boxed_one() {
    // `HttpForwarder` in type position is `HttpForwarder<DefaultResponseBody>`
    // whichever features are on.
    let addr = leader().await;
    let forwarder: HttpForwarder = HttpForwarder::new();
    let svc = ForwardToLeaderLayer::with_forwarder(follower_of(addr), forwarder).layer(local());
    let response = svc.oneshot(request("/x", "y")).await.unwrap();
    assert_eq!(text(response.into_body()).await, "leader got y at hop 1");
}
