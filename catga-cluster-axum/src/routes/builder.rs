//! [`ClusterRoutes`]: the builder that turns the route table into a
//! router, with each route's limits, deadline, protection and forwarding.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::routing::MethodRouter;
use axum::Router;
use bytes::Bytes;
use catga_cluster_core::ClusterCoordinator;
use catga_cluster_core::ClusterSecret;
use catga_cluster_tower::{AxumForwarder, ForwardToLeaderLayer};
use http::StatusCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::middleware::{
    is_admin_route, is_peer_route, panic_response, require_json, require_json_if_present,
};
use super::state::{AppState, Shared};
use super::table::{self, Route};
use crate::auth::ClusterAuthLayer;
use crate::commands::CommandRegistry;
use crate::edge::EdgeLayer;
use crate::health::{ClusterView, HealthOptions, HealthProbe, HealthReport};
use crate::limits::Limits;
use crate::metrics::ClusterMetrics;
use crate::openapi::{self, BodyDoc};
use crate::problem_responses::ProblemResponsesLayer;
use crate::shutdown::ShutdownHook;

/// How requests travel to the leader on the forwarding routes.
#[derive(Debug, Clone, Copy)]
struct ForwardSettings {
    hop_limit: u32,
    hold: Duration,
    timeout: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            hop_limit: 1,
            hold: Duration::from_millis(600),
            timeout: Duration::from_secs(30),
        }
    }
}

type Forwarding = Arc<
    dyn Fn(MethodRouter<AppState>, ForwardSettings, AxumForwarder) -> MethodRouter<AppState>
        + Send
        + Sync,
>;

/// The cluster routes of one node; see the [module docs](super), and the
/// [crate docs](crate) for the whole serving recipe (your routes forwarded
/// to the leader, [`edge_layer`](Self::edge_layer), `serve` with the
/// [`shutdown_hook`](Self::shutdown_hook)).
///
/// ```
/// use axum::{routing::get, Router};
/// use catga_cluster_axum::ClusterRoutes;
/// use catga_cluster_core::testing::ManualCoordinator;
///
/// let coord = ManualCoordinator::new_leader();
/// let app: Router = ClusterRoutes::new(coord)
///     .mount(Router::new().route("/orders", get(|| async { "[]" })));
/// # let _ = app;
/// ```
pub struct ClusterRoutes {
    view: Arc<ClusterView>,
    metrics: ClusterMetrics,
    secret: Option<ClusterSecret>,
    auth: ClusterAuthLayer,
    commands: CommandRegistry,
    redirect: bool,
    limits: Limits,
    forward: ForwardSettings,
    forwarding: Forwarding,
    /// One connection pool for every forwarding route.
    forwarder: AxumForwarder,
    #[cfg(feature = "raft")]
    raft: Option<catga_cluster_raft::RaftNode>,
}

impl fmt::Debug for ClusterRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRoutes")
            .field("node", self.view.node())
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("commands", &self.commands)
            .field("redirect", &self.redirect)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ClusterRoutes {
    /// The routes for any coordinator: health, status, metrics, OpenAPI and
    /// forwarded commands. Without a secret the protected routes answer
    /// loopback peers only (see [`crate::auth`]).
    pub fn new<C>(coordinator: C) -> Self
    where
        C: ClusterCoordinator + Clone,
    {
        let view = Arc::new(ClusterView::new(Arc::new(coordinator.clone())));
        let metrics = ClusterMetrics::new().with_view(&view);
        let forwarding: Forwarding =
            Arc::new(move |route, settings: ForwardSettings, forwarder| {
                route.route_layer::<_>(
                    ForwardToLeaderLayer::new(coordinator.clone())
                        .forwarder(forwarder)
                        .hop_limit(settings.hop_limit)
                        .hold_timeout(settings.hold)
                        .timeout(Some(settings.timeout)),
                )
            });
        let auth = ClusterAuthLayer::new(None).allow_host(view.node().endpoint.host());
        let routes = ClusterRoutes {
            view,
            metrics,
            secret: None,
            auth,
            commands: CommandRegistry::new(),
            redirect: false,
            limits: Limits::default(),
            forward: ForwardSettings::default(),
            forwarding,
            forwarder: AxumForwarder::new(),
            #[cfg(feature = "raft")]
            raft: None,
        };
        routes.view.tracker.ensure_started(&routes.view.coord);
        routes
    }

    /// Every route, backed by a Raft node: adds Raft RPC, membership,
    /// leadership transfer, locks and the key-value store, takes the
    /// cluster secret from the node's configuration, and reports Raft's
    /// health (fatal errors, apply lag, log indexes).
    #[cfg(feature = "raft")]
    pub fn raft(node: catga_cluster_raft::RaftNode) -> Self {
        let secret = node.config().secret.clone();
        let mut routes = ClusterRoutes::new(node.clone())
            .secret(secret)
            .health_probe(node.clone());
        // The configured members' hosts, and members added at run time.
        for member in &node.config().members {
            routes.auth = routes.auth.allow_host(member.endpoint.host());
        }
        let members = node.clone();
        routes.auth = routes.auth.allow_hosts_where(move |host| {
            members
                .status()
                .members
                .iter()
                .any(|m| m.node.endpoint.host().eq_ignore_ascii_case(host))
        });
        let election_max = node.config().election_timeout_max;
        routes.forward.hold = (election_max * 2).max(Duration::from_millis(600));
        routes.raft = Some(node);
        routes
    }

    /// Requires `secret` on the protected routes (`None`: loopback peers
    /// only). Replaces the secret taken from a Raft node's configuration
    /// for the routes; the node's Raft RPC handler still checks its own
    /// configured secret too.
    pub fn secret(mut self, secret: Option<ClusterSecret>) -> Self {
        self.secret = secret;
        self
    }

    /// Accepts requests carrying `Origin: <origin>` on the protected routes
    /// (by default any `Origin` is refused with `403 forbidden`, since only
    /// browsers send one; see [`crate::auth`]). For a browser-based admin
    /// tool you trust.
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.auth = self.auth.allow_origin(origin);
        self
    }

    /// Accepts `Host: <host>` on the protected routes in protected mode (no
    /// secret), besides loopback names and the cluster's endpoints (see
    /// [`crate::auth`]).
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        self.auth = self.auth.allow_host(host);
        self
    }

    /// Serves these typed commands on `POST /cluster/forward/{command}`.
    pub fn commands(mut self, commands: CommandRegistry) -> Self {
        self.commands = commands;
        self
    }

    /// Redirect mode for every cluster route: `307` to the leader instead
    /// of `503 not-leader` (see [`crate::edge`]).
    pub fn redirect(mut self, enabled: bool) -> Self {
        self.redirect = enabled;
        self
    }

    /// Replaces the body limits and deadlines.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the thresholds of the degraded state.
    pub fn health_options(self, options: HealthOptions) -> Self {
        self.view.set_options(options);
        self
    }

    /// Adds what the backend knows about its health (a `RaftNode` is a
    /// probe; [`ClusterRoutes::raft`] adds it).
    pub fn health_probe(self, probe: impl HealthProbe) -> Self {
        self.view.set_probe(Arc::new(probe));
        self
    }

    /// How often a request may have been forwarded before a node refuses
    /// to forward it again (default 1).
    pub fn hop_limit(mut self, limit: u32) -> Self {
        self.forward.hop_limit = limit;
        self
    }

    /// How long a forwarding route waits for an election when no leader is
    /// known (default 600 ms, or twice the maximum election timeout with a
    /// Raft node).
    pub fn forward_hold(mut self, hold: Duration) -> Self {
        self.forward.hold = hold;
        self
    }

    /// The deadline of a forwarded request (default 30 s); the admin
    /// routes forward under [`Limits::admin_timeout`] instead.
    pub fn forward_timeout(mut self, timeout: Duration) -> Self {
        self.forward.timeout = timeout;
        self
    }

    /// The node's health right now.
    pub fn health(&self) -> HealthReport {
        self.view.report()
    }

    /// The metrics registry served on `/metrics`.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// The layer for your own cluster-aware routes: `x-catga-served-by`,
    /// forward metrics and, if enabled here, redirect mode.
    ///
    /// Put it on your router with `route_layer`, outside the forwarder,
    /// which wraps the handlers it forwards (see the [crate docs](crate)):
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use catga_cluster_axum::ClusterRoutes;
    /// use catga_cluster_core::testing::ManualCoordinator;
    /// use catga_cluster_tower::ForwardToLeaderLayer;
    ///
    /// let node = ManualCoordinator::new_leader(); // a RaftNode in production
    /// let routes = ClusterRoutes::new(node.clone());
    /// let orders: Router = Router::new()
    ///     .route(
    ///         "/orders",
    ///         post(|| async { "created" }).route_layer(ForwardToLeaderLayer::new(node.clone())),
    ///     )
    ///     .route_layer(routes.edge_layer());
    /// # let _ = routes.mount(orders);
    /// ```
    pub fn edge_layer(&self) -> EdgeLayer {
        EdgeLayer::new(self.view.node().id)
            .redirect(self.redirect)
            .metrics(self.metrics.clone())
    }

    /// The layer that protects a route like the cluster's protected routes
    /// (the secret, or loopback peers only; the cross-site rules of
    /// [`crate::auth`]).
    pub fn auth_layer(&self) -> ClusterAuthLayer {
        self.peer_auth_layer().without_member_certificate()
    }

    /// The layer of the routes only peers call (Raft RPC, forwarded
    /// commands): [`auth_layer`](Self::auth_layer) plus, with mutual TLS,
    /// a member's client certificate.
    pub fn peer_auth_layer(&self) -> ClusterAuthLayer {
        self.auth.clone().secret(self.secret.clone())
    }

    /// Mutual TLS between peers: the Raft RPC and forwarded-command routes
    /// accept only requests whose client certificate chain passes `check`
    /// (see [`ClusterAuthLayer::require_member_certificate`]), whatever
    /// bearer token they send. With [`ClusterRoutes::raft`],
    /// [`tls`](Self::tls) sets it from the node's TLS material.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn require_member_certificate(
        mut self,
        check: impl Fn(&[rustls::pki_types::CertificateDer<'static>]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.auth = self.auth.require_member_certificate(check);
        self
    }

    /// TLS from the node's material (`catga_cluster_core::tls::ClusterTls`,
    /// loaded from `Cluster.Tls`): the cluster routes forward to `https://`
    /// leaders with its client configuration and, when it requires client
    /// certificates, Raft RPCs and forwarded commands accept only clients
    /// whose certificate chains to the cluster CA and is valid for the host
    /// of this node's or a current member's endpoint (decisions are cached
    /// per certificate for a few seconds; membership changes take effect
    /// within that time). Serve with
    /// `HandshakeListener::new(tcp, tls::rustls_acceptor(material.server_config()))`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, material: &catga_cluster_core::tls::ClusterTls) -> Self {
        self = self.forward_tls(material.client_config());
        if material.requires_client_certificate() {
            let hosts = self.member_hosts();
            let members = crate::tls::MemberCertificates::new(material.clone(), hosts);
            self = self.require_member_certificate(move |chain| members.accepts(chain));
        }
        self
    }

    /// The hosts of this node's and the members' endpoints, now.
    #[cfg(feature = "tls")]
    fn member_hosts(&self) -> Arc<dyn Fn() -> Vec<String> + Send + Sync> {
        let local = self.view.node().endpoint.host().to_owned();
        #[cfg(feature = "raft")]
        if let Some(node) = self.raft.clone() {
            return Arc::new(move || {
                let mut hosts: Vec<String> = node
                    .status()
                    .members
                    .iter()
                    .map(|m| m.node.endpoint.host().to_owned())
                    .collect();
                hosts.push(local.clone());
                hosts.sort();
                hosts.dedup();
                hosts
            });
        }
        Arc::new(move || vec![local.clone()])
    }

    /// Forwards the cluster routes' requests to the leader over TLS with
    /// `config` (for `https://` leaders; it should present this node's
    /// client certificate when the cluster uses mutual TLS).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn forward_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.forwarder = AxumForwarder::with_tls(config);
        self
    }

    /// What [`serve`](crate::serve()) runs on shutdown: readiness turns to
    /// `503`, a Raft leader hands leadership over, and Raft stops once the
    /// connections are drained. Pass it to `serve` with the router these
    /// routes are mounted in.
    pub fn shutdown_hook(&self) -> ShutdownHook {
        ShutdownHook::new(
            self.view.draining.clone(),
            #[cfg(feature = "raft")]
            self.raft.clone(),
        )
    }

    /// The OpenAPI 3.1 document of the routes, as served on
    /// `GET /cluster/openapi.json`.
    pub fn openapi(&self) -> serde_json::Value {
        self.document(&self.route_table())
    }

    fn document(&self, table: &[Route]) -> serde_json::Value {
        let commands: Vec<&str> = self.commands.names().collect();
        openapi::document(
            table.iter().map(|route| &route.doc),
            self.view.node(),
            &commands,
            self.limits.max_lock_wait,
        )
    }

    /// The cluster routes as a router to merge into yours (or to nest; the
    /// Raft RPC and forwarded-command paths must stay where peers expect
    /// them, so nest only the routes your deployment reaches under a
    /// prefix).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let table = self.route_table();
        let openapi = self.document(&table);
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            let needed = node.membership_change_bound() + self.forward.hold;
            if self.limits.admin_timeout < needed {
                tracing::warn!(
                    target: "catga_cluster::axum",
                    admin_timeout_ms = self.limits.admin_timeout.as_millis() as u64,
                    needed_ms = needed.as_millis() as u64,
                    "Limits::admin_timeout is shorter than a membership change may take; \
                     a slow change will answer 504 timeout before its own outcome"
                );
            }
        }
        let state = AppState(Arc::new(Shared {
            view: self.view.clone(),
            metrics: self.metrics.clone(),
            commands: self.commands.clone(),
            limits: self.limits,
            openapi: Bytes::from(openapi.to_string()),
            #[cfg(feature = "raft")]
            raft: self.raft.clone(),
        }));
        let mut router: Router<AppState> = Router::new();
        for route in table {
            let doc = route.doc;
            let mut handler = route.handler;
            // `route_layer`: a method the route does not serve is answered
            // 405 here, never forwarded or checked for a body.
            if doc.forwarded {
                let mut settings = self.forward;
                if is_admin_route(&doc.path) {
                    settings.timeout = self.limits.admin_timeout;
                }
                handler = (self.forwarding)(handler, settings, self.forwarder.clone());
            }
            match doc.body {
                BodyDoc::Json(_) | BodyDoc::AnyJson => {
                    handler = handler.route_layer(middleware::from_fn(require_json));
                }
                BodyDoc::OptionalJson(_) => {
                    handler = handler.route_layer(middleware::from_fn(require_json_if_present));
                }
                BodyDoc::None | BodyDoc::Octets => {}
            }
            handler = handler
                .layer::<_, Infallible>(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    route.timeout,
                ))
                .layer::<_, Infallible>(RequestBodyLimitLayer::new(route.limit));
            if doc.protected {
                // Raft RPCs and forwarded commands come from peers only:
                // with mutual TLS they need a member's certificate.
                let auth = if is_peer_route(&doc.path) {
                    self.peer_auth_layer()
                } else {
                    self.auth_layer()
                };
                handler = handler.layer::<_, Infallible>(auth);
            }
            router = router.route(&doc.path, handler);
        }
        router
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(ProblemResponsesLayer::new())
            .layer(self.edge_layer())
            .with_state(state)
    }

    /// Merges the cluster routes into `app`: the one call a service needs.
    /// Serve the result with this [`shutdown_hook`](Self::shutdown_hook):
    /// `serve(listener, app, routes.shutdown_hook(), signal)`.
    pub fn mount<S>(&self, app: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        app.merge(self.router())
    }

    /// The route table: every cluster route, how it is served and
    /// documented, sorted by path.
    fn route_table(&self) -> Vec<Route> {
        let l = self.limits;
        let forward_timeout = self.forward.timeout + self.forward.hold + Duration::from_secs(5);
        let mut table = table::routes(&l, forward_timeout);
        #[cfg(feature = "raft")]
        if self.raft.is_some() {
            table.extend(super::raft::routes(&l, l.admin_timeout));
        }
        table.sort_by(|a, b| a.doc.path.cmp(&b.doc.path));
        table
    }
}
