//! Forwarded vs direct requests over loopback HTTP: an axum "leader" with a
//! trivial handler; *direct* is a hyper-util client talking to the leader,
//! *forwarded* is the same client talking to a follower whose router has
//! `ForwardToLeaderLayer` (with the default `HttpForwarder`), which proxies
//! to the leader; *bare proxy hop* is a follower that only passes the
//! request on with a hyper-util client (the cost of the hop itself). Latency p50/p99 and throughput at 1 and 32 concurrent
//! clients, for `GET /ping` (no body) and `POST /echo` (1 KiB body).
//!
//! Each case runs `ROUNDS` times (default 3) for `SECONDS` each (default
//! 1.5, after a 0.3 s warm-up), the paths taking turns so that load from
//! elsewhere on the machine affects them alike; figures pool the rounds.
//!
//! Run with `cargo bench -p catga-cluster-tower --bench forwarding`
//! (`ROUNDS=5 SECONDS=3` to measure longer).
#![allow(missing_docs, clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{Endpoint, NodeId, NodeInfo};
use catga_cluster_tower::ForwardToLeaderLayer;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

const WARM_UP: Duration = Duration::from_millis(300);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn app() -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/echo",
            post(|body: Body| async move {
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                bytes.len().to_string()
            }),
        )
}

/// The least a proxy hop can cost: a handler that sends the request on to
/// the leader with a pooled hyper-util client and returns its answer, with
/// no leadership check, header work or error mapping. It tells the cost of
/// the extra hop from the cost of the middleware.
fn bare_proxy(leader: SocketAddr) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    Router::new().fallback(move |req: Request| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("http://{leader}{path}").parse().unwrap();
            let response = client
                .request(http::Request::from_parts(parts, body))
                .await
                .unwrap();
            response.map(Body::new)
        }
    })
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As a production server would: no Nagle delay on answers.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[derive(Clone, Copy)]
enum Kind {
    Get,
    Post,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Get => "GET /ping",
            Kind::Post => "POST /echo (1 KiB)",
        }
    }

    fn request(self, target: SocketAddr, payload: &Bytes) -> http::Request<Full<Bytes>> {
        let (method, path, body) = match self {
            Kind::Get => (Method::GET, "/ping", Bytes::new()),
            Kind::Post => (Method::POST, "/echo", payload.clone()),
        };
        http::Request::builder()
            .method(method)
            .uri(format!("http://{target}{path}"))
            .body(Full::new(body))
            .unwrap()
    }
}

async fn one(client: &HttpClient, kind: Kind, target: SocketAddr, payload: &Bytes) {
    let response = client.request(kind.request(target, payload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
}

/// `clients` concurrent loops until `until`; the latencies of the requests
/// that started after `measure_from`, and how long that window was.
async fn run(
    client: &HttpClient,
    kind: Kind,
    target: SocketAddr,
    clients: usize,
    seconds: Duration,
) -> (Vec<Duration>, Duration) {
    let payload = Bytes::from(vec![b'x'; 1024]);
    let measure_from = Instant::now() + WARM_UP;
    let until = measure_from + seconds;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                one(&client, kind, target, &payload).await;
                if started >= measure_from {
                    samples.push(started.elapsed());
                }
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    // The window ends when the last request finishes, a little after `until`.
    let window = Instant::now().saturating_duration_since(measure_from);
    (samples, window)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = Duration::from_secs_f64(env("SECONDS", 1.5));
    let rounds = env("ROUNDS", 3.0) as usize;

    let leader = serve(app()).await;
    let coord = ManualCoordinator::new_follower();
    coord.set_follower(Some(NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse(&format!("http://{leader}")).unwrap(),
    )));
    let follower = serve(app().layer(ForwardToLeaderLayer::new(coord))).await;
    let hop = serve(bare_proxy(leader)).await;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);

    println!(
        "{rounds} rounds of {:.1} s per case, the paths taking turns",
        seconds.as_secs_f64()
    );
    println!();
    println!("| request | clients | path | req/s | p50 | p99 | vs direct |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for kind in [Kind::Get, Kind::Post] {
        let paths = [
            ("direct", leader),
            ("bare proxy hop", hop),
            ("forwarded", follower),
        ];
        for clients in [1usize, 32] {
            let mut results: Vec<(Vec<Duration>, Duration)> =
                vec![(Vec::new(), Duration::ZERO); paths.len()];
            for _ in 0..rounds {
                for (i, (_, target)) in paths.iter().enumerate() {
                    let (samples, window) = run(&client, kind, *target, clients, seconds).await;
                    results[i].0.extend(samples);
                    results[i].1 += window;
                }
            }
            let mut direct_rate = 0.0;
            for ((path, _), (mut samples, window)) in paths.iter().zip(results) {
                samples.sort();
                let rate = samples.len() as f64 / window.as_secs_f64();
                let ratio = if *path == "direct" {
                    direct_rate = rate;
                    String::new()
                } else {
                    format!("{:.2}", rate / direct_rate)
                };
                println!(
                    "| {} | {clients} | {path} | {rate:.0} | {} | {} | {ratio} |",
                    kind.label(),
                    micros(percentile(&samples, 0.50)),
                    micros(percentile(&samples, 0.99)),
                );
            }
        }
    }
}
