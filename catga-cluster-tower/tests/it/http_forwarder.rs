//! `HttpForwarder` behind `ForwardToLeaderLayer` on an axum `Router`, against
//! real axum "leader" servers on `127.0.0.1:0`: what is forwarded, what is
//! stripped, streaming both ways, failures and leader changes.
#![cfg(all(feature = "http-forwarder", feature = "axum"))]
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{BoxError, Endpoint, NodeId, NodeInfo};
use catga_cluster_tower::ForwardToLeaderLayer;
use futures_util::stream;
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::watch;
use tower::ServiceExt;

/// A bound that only a broken test reaches: conditions are awaited with it,
/// never slept for.
const DEADLINE: Duration = Duration::from_secs(20);

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const BIG: usize = 64 * MIB;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An address nobody listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn node_at(id: u64, addr: SocketAddr) -> NodeInfo {
    NodeInfo::new(
        NodeId::new(id),
        Endpoint::parse(&format!("http://{addr}")).unwrap(),
    )
}

fn follower_of(leader: NodeInfo) -> ManualCoordinator {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(leader));
    coord
}

/// The follower's own routes: the same application, but answering
/// "follower", so a test sees whether the leader served the request.
fn follower_routes() -> Router {
    Router::new().fallback(|| async { "served by the follower" })
}

type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn empty() -> ClientBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn body_text(body: Body) -> String {
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn problem(response: Response) -> (StatusCode, HeaderMap, Value) {
    let (parts, body) = response.into_parts();
    assert_eq!(
        parts.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let doc: Value = serde_json::from_str(&body_text(body).await).unwrap();
    assert_eq!(doc["status"], parts.status.as_u16());
    (parts.status, parts.headers, doc)
}

/// Echoes what the leader received, and answers with headers of its own,
/// among them hop-by-hop ones that must not travel back.
async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.to_string())
            .or_default()
            .push(value.to_str().unwrap().to_owned());
    }
    let doc = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": body_text(body).await,
    });
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("x-served-by", "leader")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .header("connection", "x-leader-hop")
        .header("x-leader-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("content-type", "application/json")
        .body(Body::from(doc.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_follower_forwards_the_request_and_passes_the_answer_through() {
    let leader = serve(Router::new().route("/orders/{id}", any(echo))).await;
    let coord = follower_of(node_at(2, leader));
    let app = follower_routes().layer(ForwardToLeaderLayer::new(coord));

    let request = http::Request::post("/orders/7?full=1&tag=a%20b")
        .header("host", "follower.example:8080")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("tracestate", "vendor=1")
        .header("x-custom", "kept")
        .header("content-type", "application/json")
        .header("connection", "x-client-hop, keep-alive")
        .header("x-client-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("upgrade", "h2c")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .body(Body::from(r#"{"customer":"c1"}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();

    // The leader's answer, unchanged apart from hop-by-hop headers.
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let headers = response.headers().clone();
    assert_eq!(headers["x-served-by"], "leader");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(headers["content-type"], "application/json");
    for hop in [
        "connection",
        "x-leader-hop",
        "keep-alive",
        "transfer-encoding",
    ] {
        assert!(!headers.contains_key(hop), "{hop} came back: {headers:?}");
    }
    let seen: Value = serde_json::from_str(&body_text(response.into_body()).await).unwrap();

    // What the leader received.
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/orders/7?full=1&tag=a%20b");
    assert_eq!(seen["body"], r#"{"customer":"c1"}"#);
    let got = &seen["headers"];
    assert_eq!(got[FORWARDED_HEADER], json!(["1"]));
    assert_eq!(
        got["traceparent"],
        json!(["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
    );
    assert_eq!(got["tracestate"], json!(["vendor=1"]));
    assert_eq!(got["x-custom"], json!(["kept"]));
    assert_eq!(got["content-type"], json!(["application/json"]));
    assert_eq!(got["x-forwarded-host"], json!(["follower.example:8080"]));
    assert_eq!(got["host"], json!([leader.to_string()]));
    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(got.get(hop).is_none(), "{hop} was forwarded: {got}");
    }
}

#[tokio::test]
async fn the_leaders_error_answers_pass_through_unchanged() {
    let leader = serve(Router::new().route(
        "/orders/{id}",
        get(|| async {
            (
                StatusCode::NOT_FOUND,
                [("content-type", "application/problem+json")],
                r#"{"type":"not-found","title":"Not found","status":404,"detail":"no order 9"}"#,
            )
        }),
    ))
    .await;
    let app = follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader))));

    let response = app
        .oneshot(http::Request::get("/orders/9").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(doc["type"], "not-found");
    assert_eq!(doc["detail"], "no order 9");
}

#[tokio::test]
async fn the_leader_serves_locally_without_forwarding() {
    let coord = ManualCoordinator::new_leader();
    let app = Router::new()
        .route("/orders", post(|| async { "served here" }))
        .layer(ForwardToLeaderLayer::new(coord));
    let response = app
        .oneshot(
            http::Request::post("/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response.into_body()).await, "served here");
}

/// Streams `total` bytes in chunks; after the first chunk it waits (with a
/// deadline) until `gate` says the far end has received something. A proxy
/// that buffered the whole body would never let that happen, and the
/// stream would fail.
fn gated_stream(
    total: usize,
    gate: watch::Receiver<usize>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
    let chunk = Bytes::from(vec![0xA5u8; CHUNK]);
    stream::unfold((0usize, gate), move |(sent, mut gate)| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            if sent == CHUNK {
                let arrived = matches!(
                    tokio::time::timeout(DEADLINE, gate.wait_for(|n| *n > 0)).await,
                    Ok(Ok(_))
                );
                if !arrived {
                    let err: BoxError =
                        "the first chunk never arrived: the body was buffered".into();
                    return Some((Err(err), (total, gate)));
                }
            }
            let n = CHUNK.min(total - sent);
            Some((Ok(Frame::data(chunk.slice(..n))), (sent + n, gate)))
        }
    })
}

/// Counts a body's bytes frame by frame, publishing the running total.
async fn count(
    mut body: impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug> + Unpin,
    progress: &watch::Sender<usize>,
) -> usize {
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len();
            progress.send_replace(total);
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_body_streams_to_the_leader() {
    let (received_tx, received_rx) = watch::channel(0usize);
    let leader = serve(
        Router::new()
            .route(
                "/upload",
                post(
                    |State(progress): State<watch::Sender<usize>>, body: Body| async move {
                        let total = count(body, &progress).await;
                        total.to_string()
                    },
                ),
            )
            .with_state(received_tx),
    )
    .await;
    let follower =
        serve(follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader)))))
            .await;

    let body = StreamBody::new(gated_stream(BIG, received_rx)).boxed_unsync();
    let request = http::Request::post(format!("http://{follower}/upload"))
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, client().request(request))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(text, BIG.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_streams_back_from_the_leader() {
    let (received_tx, received_rx) = watch::channel(0usize);
    let leader = serve(
        Router::new()
            .route(
                "/download",
                get(|State(gate): State<watch::Receiver<usize>>| async move {
                    Body::new(StreamBody::new(gated_stream(BIG, gate)))
                }),
            )
            .with_state(received_rx),
    )
    .await;
    let follower =
        serve(follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader)))))
            .await;

    let request = http::Request::get(format!("http://{follower}/download"))
        .body(empty())
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, client().request(request))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let total = tokio::time::timeout(DEADLINE, count(response.into_body(), &received_tx))
        .await
        .expect("the body did not finish");
    assert_eq!(total, BIG);
}

#[tokio::test]
async fn an_unreachable_leader_is_a_forward_failed_problem() {
    let leader = closed_port().await;
    let app = follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader))));
    let response = app
        .oneshot(
            http::Request::post("/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(doc["type"], "forward-failed");
    assert!(
        !doc.to_string().contains(&leader.port().to_string()),
        "{doc}"
    );
}

#[tokio::test]
async fn a_slow_leader_is_a_forward_timeout_problem() {
    let leader = serve(Router::new().route(
        "/orders",
        post(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    ))
    .await;
    let layer = ForwardToLeaderLayer::new(follower_of(node_at(2, leader)))
        .timeout(Some(Duration::from_millis(200)));
    let app = follower_routes().layer(layer);
    let response = app
        .oneshot(
            http::Request::post("/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(doc["type"], "forward-timeout");
}

#[tokio::test]
async fn a_new_leader_gets_the_next_request() {
    let a = serve(Router::new().fallback(|| async { "leader a" })).await;
    let b = serve(Router::new().fallback(|| async { "leader b" })).await;
    let coord = follower_of(node_at(2, a));
    let app = follower_routes().layer(ForwardToLeaderLayer::new(coord.clone()));

    let call = |app: Router, method: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri("/orders")
            .body(Body::from(if method == "POST" { "x" } else { "" }))
            .unwrap();
        async move { body_text(app.oneshot(request).await.unwrap().into_body()).await }
    };
    assert_eq!(call(app.clone(), "POST").await, "leader a");
    assert_eq!(call(app.clone(), "GET").await, "leader a");
    coord.set_follower(Some(node_at(3, b)));
    assert_eq!(call(app.clone(), "POST").await, "leader b");
    assert_eq!(call(app.clone(), "GET").await, "leader b");
}

#[tokio::test]
async fn a_forwarded_request_is_not_forwarded_again() {
    let leader = serve(Router::new().fallback(|| async { "leader" })).await;
    let app = follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader))));
    for (hops, status_want, slug) in [("1", 508, "hop-limit"), ("garbage", 400, "bad-request")] {
        let request = http::Request::post("/orders")
            .header(FORWARDED_HEADER, hops)
            .body(Body::from("x"))
            .unwrap();
        let (status, _, doc) = problem(app.clone().oneshot(request).await.unwrap()).await;
        assert_eq!(status.as_u16(), status_want);
        assert_eq!(doc["type"], slug);
        if status_want == 508 {
            assert_eq!(doc["limit"], 1, "a 508 names the real limit");
            assert_eq!(doc["hops"], 1);
        }
    }
}

#[tokio::test]
async fn no_leader_within_the_hold_is_a_no_leader_problem() {
    let coord = ManualCoordinator::new_follower();
    let layer = ForwardToLeaderLayer::new(coord).hold_timeout(Duration::from_millis(50));
    let app = follower_routes().layer(layer);
    let response = app
        .oneshot(
            http::Request::post("/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, headers, doc) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["type"], "no-leader");
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn a_plain_service_fn_can_sit_behind_the_layer() {
    // Not only a Router: any service over http requests with axum bodies.
    let leader = serve(Router::new().fallback(|| async { "leader" })).await;
    let svc = tower::ServiceBuilder::new()
        .layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader))))
        .service_fn(|_req: http::Request<Body>| async {
            Ok::<_, Infallible>("follower".into_response())
        });
    let response = svc
        .oneshot(http::Request::post("/x").body(Body::from("x")).unwrap())
        .await
        .unwrap();
    assert_eq!(body_text(response.into_body()).await, "leader");
}

/// The same as `an_unreachable_leader_is_a_forward_failed_problem` for a
/// GET, which may be retried: with no other leader to retry on, the answer
/// should still be `forward-failed`.
#[tokio::test]
async fn a_get_to_an_unreachable_leader_is_a_forward_failed_problem() {
    let leader = closed_port().await;
    let app = follower_routes().layer(ForwardToLeaderLayer::new(follower_of(node_at(2, leader))));
    let response = app
        .oneshot(http::Request::get("/orders").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(doc["type"], "forward-failed");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

/// A GET that times out is idempotent, so it may be retried; but its
/// deadline has passed, and with no other leader the answer should still be
/// `forward-timeout`.
#[tokio::test]
async fn a_get_to_a_slow_leader_is_a_forward_timeout_problem() {
    let leader = serve(Router::new().route(
        "/orders",
        get(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    ))
    .await;
    let layer = ForwardToLeaderLayer::new(follower_of(node_at(2, leader)))
        .timeout(Some(Duration::from_millis(200)));
    let app = follower_routes().layer(layer);
    let response = app
        .oneshot(http::Request::get("/orders").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, _, doc) = problem(response).await;
    assert_eq!(doc["type"], "forward-timeout");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
}

/// A forwarder of the user's that wraps the HTTP forwarder: no turbofish to
/// delegate readiness, and the response future has a name.
#[derive(Clone, Default)]
struct Recording {
    inner: catga_cluster_tower::AxumForwarder,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(NodeId, u32, String)>>>,
}

impl tower::Service<catga_cluster_core::ForwardRequest<Request>> for Recording {
    type Response = Response;
    type Error = BoxError;
    type Future = catga_cluster_tower::http_forwarder::ResponseFuture<Body>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, forward: catga_cluster_core::ForwardRequest<Request>) -> Self::Future {
        self.seen.lock().unwrap().push((
            forward.leader.id,
            forward.hops,
            forward.request.uri().path().to_owned(),
        ));
        self.inner.call(forward)
    }
}

#[tokio::test]
async fn a_forwarder_that_wraps_the_http_forwarder_forwards_through_it() {
    let leader = serve(Router::new().route("/orders/{id}", any(echo))).await;
    let recording = Recording::default();
    let app = follower_routes().layer(ForwardToLeaderLayer::with_forwarder(
        follower_of(node_at(2, leader)),
        recording.clone(),
    ));

    let response = app
        .oneshot(
            http::Request::post("/orders/7")
                .body(Body::from("payload"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let seen: Value = serde_json::from_str(&body_text(response.into_body()).await).unwrap();
    assert_eq!(seen["body"], "payload", "the leader served it");
    assert_eq!(seen["headers"][FORWARDED_HEADER], json!(["1"]));
    assert_eq!(
        *recording.seen.lock().unwrap(),
        [(NodeId::new(2), 1, "/orders/7".to_owned())]
    );
}

#[tokio::test]
async fn the_layer_of_new_takes_another_forwarder_of_the_same_kind() {
    // `new(..).forwarder(..)`: the replaced forwarder's type is fixed, so the
    // replacement's body type is inferred from the router.
    let leader = serve(Router::new().fallback(|| async { "leader" })).await;
    let layer = ForwardToLeaderLayer::new(follower_of(node_at(2, leader)))
        .forwarder(catga_cluster_tower::HttpForwarder::new());
    let response = follower_routes()
        .layer(layer)
        .oneshot(http::Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(body_text(response.into_body()).await, "leader");
}
