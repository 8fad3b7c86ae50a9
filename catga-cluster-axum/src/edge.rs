//! The response side of a cluster-aware route: `x-catga-served-by`,
//! the opt-in redirect mode and forward metrics.
//!
//! [`EdgeLayer`] wraps a route (or a whole router) and, on every response:
//!
//! * sets `x-catga-served-by: <node id>` unless the response already names
//!   a node (a response forwarded from the leader keeps the leader's id);
//! * in **redirect mode**, turns a `not-leader` answer into
//!   `307 Temporary Redirect` with `Location` on the leader's advertised
//!   endpoint, same path and query (never `301`: the leader changes; the
//!   scheme is the one the leader advertises). `no-leader` answers stay as
//!   they are: there is nowhere to send the client;
//! * with [`metrics`](EdgeLayer::metrics), counts forwards by outcome: a
//!   response served by another node is a successful forward,
//!   `forward-failed`, `forward-timeout` and `hop-limit` answers count as
//!   such.
//!
//! ```
//! use axum::{routing::post, Router};
//! use catga_cluster_axum::edge::EdgeLayer;
//! use catga_cluster_core::NodeId;
//!
//! // Followers answer 307 to the leader instead of 503 not-leader.
//! let app: Router = Router::new()
//!     .route("/orders", post(|| async { "created" }))
//!     .route_layer(EdgeLayer::new(NodeId::new(1)).redirect(true));
//! # let _ = app;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::OriginalUri;
use axum::response::Response;
use catga_cluster_core::protocol::{LEADER_HEADER, LEADER_ID_HEADER, SERVED_BY_HEADER};
use catga_cluster_core::{Endpoint, NodeId};
use http::header::LOCATION;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::ClusterMetrics;
use crate::problem::{response_slug, slug};

/// Adds the cluster headers to responses; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    local: NodeId,
    served_by: HeaderValue,
    redirect: bool,
    metrics: Option<ClusterMetrics>,
}

impl EdgeLayer {
    /// Marks responses as served by `local`; no redirects, no metrics.
    pub fn new(local: NodeId) -> Self {
        EdgeLayer {
            local,
            served_by: HeaderValue::from(local.get()),
            redirect: false,
            metrics: None,
        }
    }

    /// Turns `not-leader` answers into `307` redirects to the leader.
    pub fn redirect(mut self, enabled: bool) -> Self {
        self.redirect = enabled;
        self
    }

    /// Counts forwards in `metrics`.
    pub fn metrics(mut self, metrics: ClusterMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`EdgeLayer`]. `poll_ready` is the inner service's.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

impl<S> Edge<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = if self.layer.redirect {
            let uri = req
                .extensions()
                .get::<OriginalUri>()
                .map_or_else(|| req.uri(), |o| &o.0);
            uri.path_and_query().cloned()
        } else {
            None
        };
        EdgeFuture {
            future: self.inner.call(req),
            layer: Some(self.layer.clone()),
            path,
        }
    }
}

pin_project! {
    /// The response future of [`Edge`].
    pub struct EdgeFuture<F> {
        #[pin]
        future: F,
        layer: Option<EdgeLayer>,
        path: Option<PathAndQuery>,
    }
}

impl<F> fmt::Debug for EdgeFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        let Some(layer) = this.layer.take() else {
            return Poll::Ready(Ok(response));
        };
        if let Some(metrics) = &layer.metrics {
            metrics.observe_response(&response, layer.local);
        }
        if layer.redirect {
            if let Some(redirect) = redirect_for(&response, layer.local, this.path.as_ref()) {
                response = redirect;
            }
        }
        let served_by = HeaderName::from_static(SERVED_BY_HEADER);
        if !response.headers().contains_key(&served_by) {
            response
                .headers_mut()
                .insert(served_by, layer.served_by.clone());
        }
        Poll::Ready(Ok(response))
    }
}

/// The `307` for a `not-leader` answer that names another leader's
/// endpoint.
fn redirect_for(
    response: &Response,
    local: NodeId,
    path: Option<&PathAndQuery>,
) -> Option<Response> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    if response_slug(response).is_some_and(|s| s != slug::NOT_LEADER) {
        return None;
    }
    let headers = response.headers();
    let endpoint = headers
        .get(LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Endpoint::parse(v).ok())?;
    let leader_id = headers
        .get(LEADER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(NodeId::new);
    if leader_id == Some(local) {
        return None;
    }
    let path = path.map_or("/", PathAndQuery::as_str);
    let location = HeaderValue::from_str(&format!("{}{path}", endpoint.as_str())).ok()?;
    let mut redirect = Response::new(axum::body::Body::empty());
    *redirect.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let out = redirect.headers_mut();
    out.insert(LOCATION, location);
    for name in [LEADER_HEADER, LEADER_ID_HEADER] {
        if let Some(value) = headers.get(name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    Some(redirect)
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use catga_cluster_core::{NotLeader, NotLeaderReason};

    use super::*;
    use crate::problem::Problem;

    fn not_leader(id: u64) -> Response {
        Problem::from(
            NotLeader::new(NotLeaderReason::NotLeader)
                .with_leader_id(NodeId::new(id))
                .with_leader_endpoint(Endpoint::parse("https://leader.example:8443").unwrap()),
        )
        .into_response()
    }

    #[test]
    fn redirects_keep_path_and_query_and_the_leader_scheme() {
        let path = PathAndQuery::from_static("/orders?x=1");
        let r = redirect_for(&not_leader(2), NodeId::new(1), Some(&path)).unwrap();
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            r.headers()[LOCATION],
            "https://leader.example:8443/orders?x=1"
        );
        assert_eq!(r.headers()[LEADER_ID_HEADER], "2");
    }

    #[test]
    fn no_redirect_to_self_or_without_a_leader() {
        assert!(redirect_for(&not_leader(1), NodeId::new(1), None).is_none());
        let none = Problem::from(NotLeader::new(NotLeaderReason::NoLeader)).into_response();
        assert!(redirect_for(&none, NodeId::new(1), None).is_none());
        let other = Problem::shutting_down().into_response();
        assert!(redirect_for(&other, NodeId::new(1), None).is_none());
    }
}
