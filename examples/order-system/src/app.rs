//! One running node: the Raft node, its HTTP server and its outbox.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use catga_cluster_axum::{ClusterRoutes, HandshakeListener, ProblemResponsesLayer, ShutdownHook};
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::protocol::problem as slug;
use catga_cluster_core::singleton::{SingletonHandle, SingletonRunner};
use catga_cluster_core::tls::{ClusterTls, ReloadGuard, TlsError};
use catga_cluster_core::{DistributedLock, LockGuard};
use catga_cluster_raft::{NodeOptions, RaftLock, RaftNode};
use catga_cluster_tower::problem::Problem;
use catga_cluster_tower::{AxumForwarder, ForwardToLeaderLayer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

use crate::orders::{create_order, get_order, list_orders, AppState};
use crate::outbox::OutboxProcessor;

/// `POST /maintenance/critical`: the seed's "critical operation", run under
/// the replicated lock with its fencing token.
async fn critical_operation(State(state): State<AppState>) -> Response {
    let locks = RaftLock::new(state.node.clone());
    let acquired = locks
        .try_acquire(
            "critical-operation",
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await;
    match acquired {
        Ok(Some(guard)) => {
            let token = guard.token().get();
            tracing::info!(token, "critical operation runs under the lock");
            // The protected work would pass `token` to the resource it changes.
            match guard.release().await {
                Ok(()) => Json(serde_json::json!({ "token": token, "done": true })).into_response(),
                Err(e) => Problem::from_error(&e).into_response::<axum::body::Body>(),
            }
        }
        Ok(None) => Problem::new(
            StatusCode::CONFLICT,
            slug::LOCK_HELD,
            "Lock held",
            "the critical operation is running elsewhere; try again later",
        )
        .into_response::<axum::body::Body>(),
        Err(e) => Problem::from_error(&e).into_response::<axum::body::Body>(),
    }
}

/// The largest order body, in bytes: a follower refuses a larger one
/// (`413`) itself, also while streaming it to the leader.
pub const MAX_ORDER_BODY: usize = 64 * 1024;

/// The application's routes plus the cluster routes, over plain HTTP.
pub fn router(node: RaftNode) -> Router {
    router_with_tls(node, None).0
}

/// The application's routes plus the cluster routes, and the hook that
/// `serve` runs on shutdown (drain, hand leadership over, stop Raft); with
/// `tls`, forwards reach the leader over HTTPS and, with mutual TLS, Raft
/// RPCs and forwarded commands need a member's client certificate.
pub fn router_with_tls(node: RaftNode, tls: Option<&ClusterTls>) -> (Router, ShutdownHook) {
    let mut routes = ClusterRoutes::raft(node.clone());
    let mut forward = ForwardToLeaderLayer::new(node.clone()).hold_timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        routes = routes.tls(tls);
        forward = forward.forwarder(AxumForwarder::with_tls(tls.client_config()));
    }
    let state = AppState { node: node.clone() };
    let orders = Router::new()
        .route(
            "/orders",
            // `route_layer`: only POST is forwarded; a method the route does
            // not serve is answered 405 here. A write waits up to 3 s for an
            // election or hand-over to finish instead of failing (the
            // default hold is 600 ms).
            post(create_order)
                .route_layer(forward)
                .route_layer(RequestBodyLimitLayer::new(MAX_ORDER_BODY))
                .get(list_orders),
        )
        .route("/orders/{id}", get(get_order))
        .route("/maintenance/critical", post(critical_operation))
        .with_state(state)
        // `x-catga-served-by`: the node that executed the request (a
        // forwarded answer keeps the leader's).
        .route_layer(routes.edge_layer());
    // Every rejection of the whole application (404s, 405s, extractor
    // rejections, 413s) as application/problem+json.
    let app = routes.mount(orders).layer(ProblemResponsesLayer::new());
    (app, routes.shutdown_hook())
}

/// The TLS material the configuration names (`Cluster.Tls`), loaded and
/// checked (files, key, expiry, the node's host, the CA), or `None`
/// without a `Tls` section.
pub fn load_tls(config: &ClusterConfig) -> Result<Option<ClusterTls>, TlsError> {
    config
        .tls
        .as_ref()
        .map(|tls| ClusterTls::from_config(tls, config.node.endpoint.host()))
        .transpose()
}

/// A node with its HTTP server and outbox.
#[derive(Debug)]
pub struct RunningNode {
    /// The Raft node.
    pub node: RaftNode,
    /// The outbox (its counters).
    pub outbox: OutboxProcessor,
    runner: SingletonHandle,
    stop: CancellationToken,
    server: JoinHandle<()>,
    /// Re-reads the certificate files while the node runs.
    _reloader: Option<ReloadGuard>,
}

impl RunningNode {
    /// Starts Raft, the outbox runner and the HTTP server on `listener`,
    /// with TLS when the configuration has a `Tls` section.
    pub async fn start(
        config: ClusterConfig,
        listener: TcpListener,
    ) -> Result<RunningNode, Box<dyn std::error::Error + Send + Sync>> {
        let tls = load_tls(&config)?;
        RunningNode::start_with_tls(config, listener, tls).await
    }

    /// [`start`](Self::start) with TLS material loaded already (see
    /// [`load_tls`]).
    pub async fn start_with_tls(
        config: ClusterConfig,
        listener: TcpListener,
        tls: Option<ClusterTls>,
    ) -> Result<RunningNode, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(warning) = config.insecure_transport_warning() {
            tracing::warn!("{warning}");
        }
        let reload_every = config.tls.as_ref().map(|t| t.reload_interval);
        let mut options = NodeOptions::default();
        if let Some(tls) = &tls {
            options = options.tls(tls.client_config());
        }
        let node = RaftNode::builder(config).options(options).start().await?;
        let outbox = OutboxProcessor::new(node.clone());
        let runner = SingletonRunner::new(node.clone(), outbox.clone()).spawn();
        let stop = CancellationToken::new();
        let (app, hook) = router_with_tls(node.clone(), tls.as_ref());
        let reloader = match (&tls, reload_every) {
            (Some(tls), Some(every)) => Some(tls.spawn_reloader(every)),
            _ => None,
        };
        let acceptor = tls
            .as_ref()
            .map(|tls| catga_cluster_axum::tls::rustls_acceptor(tls.server_config()));
        let server = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let shutdown = async move { stop.cancelled().await };
                let served = match acceptor {
                    Some(acceptor) => match HandshakeListener::new(listener, acceptor) {
                        Ok(listener) => {
                            catga_cluster_axum::serve(listener, app, hook, shutdown).await
                        }
                        Err(e) => Err(e),
                    },
                    None => catga_cluster_axum::serve(listener, app, hook, shutdown).await,
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP server failed");
                }
            })
        };
        Ok(RunningNode {
            node,
            outbox,
            runner,
            stop,
            server,
            _reloader: reloader,
        })
    }

    /// Stops abruptly, without a hand-over: the server goes, then Raft.
    /// The process runs on, so this is not a process death to the other
    /// nodes: the server tells the node its listener closes (it stops
    /// claiming leadership and heartbeats), and the followers elect a
    /// successor by the timers, not by the crash fast path, which needs the
    /// process itself to die.
    pub async fn kill(self) {
        self.server.abort();
        self.node.stop_now().await;
        self.runner.shutdown().await;
    }

    /// Stops gracefully: leader-only work stops, leadership is handed over
    /// while the server still accepts, requests in flight finish, Raft stops.
    pub async fn shutdown(self) {
        self.runner.shutdown().await;
        self.stop.cancel();
        let _ = self.server.await;
        // `serve` stopped Raft after the hand-over; this is a no-op then.
        self.node.shutdown().await;
    }
}
