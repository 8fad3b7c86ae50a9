//! Every generic route and error path through `Router::oneshot`, with a
//! `ManualCoordinator`: no sockets, no Raft.

use std::convert::Infallible;
use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use catga_cluster_axum::commands::CommandRegistry;
use catga_cluster_axum::health::HealthOptions;
use catga_cluster_axum::{handle_error, ClusterRoutes, EdgeLayer, Limits, Problem};
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{BoxError, ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_tower::LeaderOnlyLayer;
use http::{Method, Request, StatusCode};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(serde::Serialize)]
struct Sum {
    sum: i64,
}

fn commands() -> CommandRegistry {
    let mut commands = CommandRegistry::new();
    commands
        .register(
            "add",
            tower::service_fn(
                |cmd: Add| async move { Ok::<_, Infallible>(Sum { sum: cmd.a + cmd.b }) },
            ),
        )
        .unwrap()
        .register(
            "refuse",
            tower::service_fn(|_: serde_json::Value| async move {
                Err::<Sum, _>(Problem::not_found("order 7 does not exist"))
            }),
        )
        .unwrap()
        .register(
            "fail",
            tower::service_fn(|_: serde_json::Value| async move {
                Err::<Sum, BoxError>(
                    std::io::Error::other("disk /var/lib/secret-path is full").into(),
                )
            }),
        )
        .unwrap()
        .register(
            "panic",
            tower::service_fn(|_: serde_json::Value| async move {
                if true {
                    panic!("boom");
                }
                Ok::<Sum, Infallible>(Sum { sum: 0 })
            }),
        )
        .unwrap()
        .register(
            "slow",
            tower::service_fn(|_: serde_json::Value| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<Sum, Infallible>(Sum { sum: 0 })
            }),
        )
        .unwrap();
    commands
}

fn other_node() -> NodeInfo {
    NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse("https://node2.example:8443").unwrap(),
    )
}

fn routes(coord: &ManualCoordinator) -> ClusterRoutes {
    ClusterRoutes::new(coord.clone()).commands(commands())
}

fn app(coord: &ManualCoordinator) -> Router {
    from_peer(routes(coord).router(), loopback())
}

#[tokio::test]
async fn health_follows_the_coordinator() {
    let coord = ManualCoordinator::new_follower();
    let app = app(&coord);

    // No leader: live, but not ready, not leader.
    let live = send(&app, get("/health/live")).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["status"], "healthy");
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, 503);
    let doc = ready.json();
    assert_eq!(doc["status"], "unhealthy");
    assert_eq!(doc["reason"], "no-leader");
    assert_eq!(doc["leader"], serde_json::Value::Null);
    assert_eq!(doc["role"], "follower");
    assert_eq!(send(&app, get("/health/leader")).await.status, 503);

    // A leader elsewhere: ready and healthy.
    coord.set_follower(Some(other_node()));
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, 200);
    let doc = ready.json();
    assert_eq!(doc["status"], "healthy");
    assert_eq!(doc["reason"], serde_json::Value::Null);
    assert_eq!(doc["leader"]["id"], 2);
    assert_eq!(doc["leader"]["endpoint"], "https://node2.example:8443");
    let leader = send(&app, get("/health/leader")).await;
    assert_eq!(leader.status, 503);
    assert_eq!(leader.json()["is_leader"], false);

    // Leading.
    coord.set_leader();
    let leader = send(&app, get("/health/leader")).await;
    assert_eq!(leader.status, 200);
    assert_eq!(leader.json()["is_leader"], true);
    assert_eq!(leader.json()["node"]["id"], 1);
    assert_eq!(
        send(&app, get("/health/ready")).await.json()["status"],
        "healthy"
    );

    // Lease lapsed: degraded, still ready, no longer leader.
    coord.expire_lease();
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "degraded");
    assert_eq!(ready.json()["reason"], "lease-expired");
    assert_eq!(send(&app, get("/health/leader")).await.status, 503);

    // Shut down: unhealthy, but still live (not a fatal error).
    coord.shutdown();
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "raft-stopped");
    assert_eq!(send(&app, get("/health/live")).await.status, 200);
}

#[tokio::test]
async fn flapping_elections_degrade_and_a_fatal_probe_kills_liveness() {
    let coord = ManualCoordinator::new_follower();
    let routes = ClusterRoutes::new(coord.clone())
        .health_options(HealthOptions::default().flap_threshold(3));
    let app = from_peer(routes.router(), loopback());
    let a = other_node();
    let b = NodeInfo::new(
        NodeId::new(3),
        Endpoint::parse("http://127.0.0.1:3").unwrap(),
    );
    for (i, leader) in [a.clone(), b, a].into_iter().enumerate() {
        coord.set_follower(Some(leader));
        let want = format!("catga_cluster_leader_changes_total {}", i + 1);
        eventually(
            Duration::from_secs(5),
            "the tracker to see the change",
            || {
                let app = app.clone();
                let want = want.clone();
                async move {
                    let text = send(&app, get("/metrics")).await.body;
                    String::from_utf8_lossy(&text).contains(&want)
                }
            },
        )
        .await;
    }
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "degraded");
    assert_eq!(ready.json()["reason"], "elections-flapping");

    // A backend that stopped on a fatal error: not live, not ready.
    let coord = ManualCoordinator::new_leader();
    let routes = ClusterRoutes::new(coord)
        .health_probe(|| catga_cluster_axum::health::ProbeFacts::running().fatal(true));
    let app = from_peer(routes.router(), loopback());
    let live = send(&app, get("/health/live")).await;
    assert_eq!(live.status, 503);
    assert_eq!(live.json()["status"], "unhealthy");
    assert_eq!(live.json()["reason"], "raft-failed");
    assert_eq!(send(&app, get("/health/ready")).await.status, 503);

    // A lagging backend is degraded.
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader())
        .health_probe(|| catga_cluster_axum::health::ProbeFacts::running().apply_lag(5000));
    let app = from_peer(routes.router(), loopback());
    assert_eq!(
        send(&app, get("/health/ready")).await.json()["reason"],
        "lagging"
    );
}

#[tokio::test]
async fn status_openapi_and_metrics() {
    let coord = ManualCoordinator::new_leader();
    let app = app(&coord);
    let status = send(&app, get("/cluster/status")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.header("x-catga-served-by"), Some("1"));
    let doc = status.json();
    assert_eq!(
        doc["node"],
        json!({"id": 1, "endpoint": "http://127.0.0.1:1"})
    );
    assert_eq!(doc["role"], "leader");
    assert_eq!(doc["term"], 1);
    assert_eq!(doc["leader"]["id"], 1);
    assert_eq!(doc["lease_valid"], true);
    for field in ["members", "last_log_index", "last_applied"] {
        assert!(doc.get(field).is_some(), "{field}");
    }

    let openapi = send(&app, get("/cluster/openapi.json")).await;
    assert_eq!(openapi.status, 200);
    let doc = openapi.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/health/live",
        "/health/ready",
        "/health/leader",
        "/cluster/status",
        "/cluster/openapi.json",
        "/metrics",
        "/cluster/forward/{command}",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
    let forward = &doc["paths"]["/cluster/forward/{command}"]["post"];
    assert_eq!(forward["security"], json!([{"clusterSecret": []}]));
    assert!(forward["responses"]["401"].is_object());
    assert!(forward["responses"]["508"].is_object());
    let names = &forward["parameters"][0]["schema"]["enum"];
    assert!(names.as_array().unwrap().contains(&json!("add")), "{names}");
    assert!(doc["paths"]["/health/live"]["get"]["security"].is_null());

    let metrics = send(&app, get("/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "catga_cluster_role{role=\"leader\"} 1",
        "catga_cluster_role{role=\"follower\"} 0",
        "catga_cluster_is_leader 1",
        "catga_cluster_term 1",
        "catga_cluster_health_status{status=\"healthy\"} 1",
        "catga_cluster_leaderless_seconds_total",
        "catga_cluster_hop_limit_rejects_total 0",
        "catga_cluster_lock_grants_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let mut req = get("/metrics");
    req.headers_mut().insert(
        "accept",
        "application/openmetrics-text; version=1.0.0"
            .parse()
            .unwrap(),
    );
    let om = send(&app, req).await;
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(String::from_utf8_lossy(&om.body)
        .trim_end()
        .ends_with("# EOF"));
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let coord = ManualCoordinator::new_leader();
    let routes = routes(&coord);
    let app = app(&coord);
    let doc = routes.openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{command}", "add");
            let method: Method = method.to_uppercase().parse().unwrap();
            if path.ends_with("/events") {
                // An event stream does not end: its status only.
                let response = app
                    .clone()
                    .oneshot(request(method.clone(), &uri, Body::empty()))
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{method} {uri}");
                continue;
            }
            let answer = send(&app, request(method.clone(), &uri, Body::from("{}"))).await;
            assert_ne!(
                answer.status, 404,
                "{method} {uri} is documented but not served"
            );
            assert_ne!(
                answer.status, 405,
                "{method} {uri} is documented but not served"
            );
        }
    }
}

#[tokio::test]
async fn forwarded_commands_on_the_leader() {
    let coord = ManualCoordinator::new_leader();
    let app = app(&coord);

    let ok = send(
        &app,
        post_json("/cluster/forward/add", json!({"a": 2, "b": 3})),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), json!({"sum": 5}));
    assert_eq!(ok.header("x-catga-served-by"), Some("1"));

    send(&app, post_json("/cluster/forward/nope", json!({})))
        .await
        .assert_problem(404, "not-found");
    send(&app, post_json("/cluster/forward/add", json!({"a": 1})))
        .await
        .assert_problem(400, "bad-request");
    send(
        &app,
        post_json("/cluster/forward/add", json!({"a": 1, "b": 2, "c": 3})),
    )
    .await
    .assert_problem(400, "bad-request");
    let mut not_json = request(Method::POST, "/cluster/forward/add", "{not json");
    not_json
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    send(&app, not_json)
        .await
        .assert_problem(400, "bad-request");
    // A handler's own problem passes through.
    let refused = send(&app, post_json("/cluster/forward/refuse", json!({}))).await;
    let doc = refused.assert_problem(404, "not-found");
    assert_eq!(doc["detail"], "order 7 does not exist");
    // Unknown errors say nothing about their cause.
    let failed = send(&app, post_json("/cluster/forward/fail", json!({}))).await;
    let doc = failed.assert_problem(500, "internal");
    assert!(!doc.to_string().contains("secret-path"), "{doc}");
    // A panic is an internal error, not a dropped connection.
    send(&app, post_json("/cluster/forward/panic", json!({})))
        .await
        .assert_problem(500, "internal");
    // Wrong method: a problem naming the allowed one.
    let wrong = send(&app, get("/cluster/forward/add")).await;
    wrong.assert_problem(405, "method-not-allowed");
    assert_eq!(wrong.header("allow"), Some("POST"));
    assert_eq!(wrong.header("x-catga-served-by"), Some("1"));
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413() {
    let coord = ManualCoordinator::new_leader();
    let routes = routes(&coord).limits(Limits::default().command_body(64).json_body(16));
    let app = from_peer(routes.router(), loopback());
    let big = format!("{{\"a\": 1, \"b\": 2, \"pad\": \"{}\"}}", "x".repeat(100));

    // Announced by Content-Length: refused before the body is read.
    let announced = Request::builder()
        .method(Method::POST)
        .uri("/cluster/forward/add")
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    send(&app, announced)
        .await
        .assert_problem(413, "payload-too-large");

    // Streamed without a length: refused while reading.
    let chunks: Vec<Result<Bytes, Infallible>> = big
        .as_bytes()
        .chunks(10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Request::builder()
        .method(Method::POST)
        .uri("/cluster/forward/add")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let answer = send(&app, streamed).await;
    answer.assert_problem(413, "payload-too-large");
    assert_eq!(answer.header("x-catga-served-by"), Some("1"));

    // Even routes without a body have a limit.
    let health = Request::builder()
        .uri("/health/live")
        .header("content-length", 1000)
        .body(Body::from(vec![b' '; 1000]))
        .unwrap();
    send(&app, health)
        .await
        .assert_problem(413, "payload-too-large");
}

#[tokio::test(start_paused = true)]
async fn slow_routes_answer_504_timeout() {
    let coord = ManualCoordinator::new_leader();
    let routes = routes(&coord)
        .forward_hold(Duration::ZERO)
        .forward_timeout(Duration::from_millis(10));
    let app = from_peer(routes.router(), loopback());
    send(&app, post_json("/cluster/forward/slow", json!({})))
        .await
        .assert_problem(504, "timeout");
}

#[tokio::test]
async fn protected_routes_need_the_secret_or_a_loopback_peer() {
    let coord = ManualCoordinator::new_leader();
    let body = || post_json("/cluster/forward/add", json!({"a": 1, "b": 1}));

    // No secret: loopback passes, others are told how to set one.
    let open = routes(&coord).router();
    assert_eq!(
        send(&from_peer(open.clone(), loopback()), body())
            .await
            .status,
        200
    );
    let v6 = from_peer(open.clone(), "[::1]:9".parse().unwrap());
    assert_eq!(send(&v6, body()).await.status, 200);
    let refused = send(&from_peer(open.clone(), remote()), body()).await;
    let doc = refused.assert_problem(401, "unauthorized");
    assert!(
        doc["detail"].as_str().unwrap().contains("Cluster__Secret"),
        "{doc}"
    );
    // Without ConnectInfo the peer is unknown: refused (fail closed).
    send(&open, body())
        .await
        .assert_problem(401, "unauthorized");
    // Open routes stay open.
    assert_eq!(
        send(&from_peer(open, remote()), get("/health/live"))
            .await
            .status,
        200
    );

    // With a secret: the bearer token decides, wherever the peer is.
    let secret = ClusterSecret::from("correct horse battery staple");
    let guarded = routes(&coord).secret(Some(secret.clone())).router();
    let remote_app = from_peer(guarded.clone(), remote());
    let missing = send(&remote_app, body()).await;
    missing.assert_problem(401, "unauthorized");
    assert!(missing
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let mut wrong = body();
    wrong
        .headers_mut()
        .insert("authorization", "Bearer correct horse".parse().unwrap());
    let answer = send(&remote_app, wrong).await;
    let doc = answer.assert_problem(401, "unauthorized");
    assert!(!doc.to_string().contains("battery"), "{doc}");
    let local_app = from_peer(guarded.clone(), loopback());
    send(&local_app, body())
        .await
        .assert_problem(401, "unauthorized");
    let mut right = body();
    right.headers_mut().insert(
        "authorization",
        "Bearer correct horse battery staple".parse().unwrap(),
    );
    assert_eq!(send(&remote_app, right).await.status, 200);
    assert_eq!(send(&remote_app, get("/cluster/status")).await.status, 200);

    // Debug output never shows the secret.
    let debug = format!("{:?}", routes(&coord).secret(Some(secret)));
    assert!(!debug.contains("battery"), "{debug}");
}

#[tokio::test]
async fn followers_forward_and_refuse_forged_hops() {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(NodeInfo::new(
        NodeId::new(2),
        // Nothing listens here: a forward fails to connect.
        Endpoint::parse("http://127.0.0.1:1").unwrap(),
    )));
    let routes = routes(&coord).forward_hold(Duration::from_millis(10));
    let app = from_peer(routes.router(), loopback());

    // A request that was forwarded already is not forwarded again.
    let mut forged = post_json("/cluster/forward/add", json!({"a": 1, "b": 1}));
    forged
        .headers_mut()
        .insert("x-catga-forwarded", "1".parse().unwrap());
    send(&app, forged).await.assert_problem(508, "hop-limit");
    let mut garbage = post_json("/cluster/forward/add", json!({}));
    garbage
        .headers_mut()
        .insert("x-catga-forwarded", "many".parse().unwrap());
    let answer = send(&app, garbage).await;
    let doc = answer.assert_problem(400, "bad-request");
    assert!(doc["detail"]
        .as_str()
        .unwrap()
        .contains("x-catga-forwarded"));

    // The leader cannot be reached.
    send(
        &app,
        post_json("/cluster/forward/add", json!({"a": 1, "b": 1})),
    )
    .await
    .assert_problem(502, "forward-failed");

    // No leader known: held, then no-leader.
    coord.set_follower(None);
    let answer = send(
        &app,
        post_json("/cluster/forward/add", json!({"a": 1, "b": 1})),
    )
    .await;
    answer.assert_problem(503, "no-leader");
    assert_eq!(answer.header("retry-after"), Some("1"));

    let text = String::from_utf8_lossy(&send(&app, get("/metrics")).await.body).into_owned();
    assert!(
        text.contains("catga_cluster_hop_limit_rejects_total 1"),
        "{text}"
    );
    assert!(
        text.contains("catga_cluster_forwards_total{outcome=\"failed\"} 1"),
        "{text}"
    );
}

/// A leader-only route of the application, with the cluster's error
/// handling and edge layer.
fn leader_only_app(coord: &ManualCoordinator, redirect: bool) -> Router {
    let routes = ClusterRoutes::new(coord.clone()).redirect(redirect);
    let jobs = Router::new()
        .route(
            "/jobs",
            post(|| async { "started" }).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(handle_error))
                    .layer(LeaderOnlyLayer::new(coord.clone())),
            ),
        )
        .route_layer(routes.edge_layer());
    from_peer(routes.mount(jobs), loopback())
}

#[tokio::test]
async fn not_leader_answers_and_redirect_mode() {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(other_node()));

    let plain = leader_only_app(&coord, false);
    let answer = send(&plain, request(Method::POST, "/jobs?x=1", Body::empty())).await;
    let doc = answer.assert_problem(503, "not-leader");
    assert_eq!(
        answer.header("x-catga-leader"),
        Some("https://node2.example:8443")
    );
    assert_eq!(answer.header("x-catga-leader-id"), Some("2"));
    assert_eq!(answer.header("retry-after"), Some("0"));
    assert_eq!(answer.header("x-catga-served-by"), Some("1"));
    assert_eq!(doc["reason"], "not-leader");

    let redirecting = leader_only_app(&coord, true);
    let answer = send(
        &redirecting,
        request(Method::POST, "/jobs?x=1", Body::empty()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        answer.header("location"),
        Some("https://node2.example:8443/jobs?x=1")
    );
    assert_eq!(answer.header("x-catga-leader-id"), Some("2"));

    // No leader known: nowhere to redirect to.
    coord.set_follower(None);
    send(&redirecting, request(Method::POST, "/jobs", Body::empty()))
        .await
        .assert_problem(503, "no-leader");

    // On the leader the route runs.
    coord.set_leader();
    let answer = send(&redirecting, request(Method::POST, "/jobs", Body::empty())).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "started");
    assert_eq!(answer.header("x-catga-served-by"), Some("1"));
}

#[tokio::test]
async fn redirect_mode_with_a_custom_edge_layer() {
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(other_node()));
    let app: Router = Router::new()
        .route(
            "/only-here",
            post(|| async {
                Problem::from(catga_cluster_core::coordinator::not_leader_for(
                    &ManualCoordinator::new_follower(),
                ))
            }),
        )
        .route(
            "/elsewhere",
            post({
                let coord = coord.clone();
                move || async move {
                    Problem::from(catga_cluster_core::coordinator::not_leader_for(&coord))
                }
            }),
        )
        .route_layer(EdgeLayer::new(coord.node().id).redirect(true));
    let answer = send(&app, request(Method::POST, "/elsewhere", Body::empty())).await;
    assert_eq!(answer.status, 307);
    assert_eq!(
        answer.header("location"),
        Some("https://node2.example:8443/elsewhere")
    );
    send(&app, request(Method::POST, "/only-here", Body::empty()))
        .await
        .assert_problem(503, "no-leader");
}
