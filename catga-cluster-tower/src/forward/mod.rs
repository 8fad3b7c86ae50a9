//! Middleware that serves requests on the leader and forwards them there
//! from any other node.
//!
//! [`ForwardToLeader`] calls the inner service when this node leads. On a
//! follower it hands the request to a *forwarder*: any tower service that
//! takes a [`ForwardRequest`] (the leader, the request, the hop count and
//! the deadline). [`HttpForwarder`](crate::HttpForwarder), a streaming
//! reverse proxy, is the default for `http::Request`s; a custom forwarder
//! (gRPC, a queue) is just another service. The layer's constructor picks
//! the [`ForwardPolicy`] by request type: see [`ForwardToLeaderLayer`].
//!
//! * **No leader known** (an election, a hand-over): the request is held,
//!   waiting on leadership changes (no polling), up to the hold time; then it
//!   fails with `NotLeader(no-leader)`.
//! * **Loops are impossible**: a request that arrives forwarded as often as
//!   the hop limit allows (default 1) is refused with [`HopLimit`] instead of
//!   forwarded again, and a node never forwards to itself. One exception
//!   keeps hand-overs from failing requests: a node that is handing
//!   leadership over (its snapshot says `transferring`) was the right
//!   destination when the request was sent, so it may pass it on to its
//!   successor once more (hop limit + 1 at most).
//! * **Retries** happen only when the request cannot have reached the leader
//!   (no connection could be made) or when the [`ForwardPolicy`] says it is
//!   idempotent, and only for requests the policy can copy (never a
//!   streaming body).
//! * **Deadlines** propagate: the forwarder receives the request's deadline.
//!
//! The decision is made before the request body is touched, so streaming
//! bodies are never buffered.
//!
//! # Readiness
//!
//! `poll_ready` covers the inner service only (the leader's path). The
//! forwarder is cloned per forwarded request and driven to readiness inside
//! the response future ([`tower::util::Oneshot`]).
//!
//! # Allocation
//!
//! Serving on the leader and forwarding to a known leader do not box; the
//! held path (no leader known, or a retry possible) boxes its future.
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::ForwardRequest;
//! use catga_cluster_tower::ForwardToLeaderLayer;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let coord = ManualCoordinator::new_leader();
//! // A hand-written forwarder: any service over ForwardRequest.
//! let forwarder = service_fn(|f: ForwardRequest<String>| async move {
//!     Ok::<_, std::convert::Infallible>(format!("{} via node {}", f.request, f.leader.id))
//! });
//! // Strings are not `http::Request`s: the plain policy.
//! let layer = ForwardToLeaderLayer::with_plain_forwarder(coord.clone(), forwarder)
//!     .hold_timeout(Duration::from_millis(100));
//! let svc = layer.layer(service_fn(|r: String| async move {
//!     Ok::<_, std::convert::Infallible>(format!("{r} served locally"))
//! }));
//! assert_eq!(svc.oneshot("hello".to_owned()).await.unwrap(), "hello served locally");
//! # });
//! ```

mod layer;
mod policy;

pub mod future;

use std::task::{Context, Poll};
use std::time::Duration;

use catga_cluster_core::{
    BoxError, ClusterCoordinator, ForwardRequest, Leadership, NodeId, NodeInfo, NotLeader,
    NotLeaderReason,
};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

pub use self::future::ResponseFuture;
pub use self::layer::ForwardToLeaderLayer;
pub use self::policy::{parse_hop_count, ForwardPolicy, HttpPolicy, MapError, PlainPolicy};
use crate::error::{ForwardFailed, HopLimit};

const TARGET: &str = "catga_cluster::forward";

/// The layer's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) hop_limit: u32,
    pub(crate) hold: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hop_limit: 1,
            hold: Duration::from_millis(600),
            timeout: Some(Duration::from_secs(30)),
            max_retries: 1,
        }
    }
}

/// Serves on the leader, forwards from followers; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct ForwardToLeader<S, C, F, P = HttpPolicy> {
    inner: S,
    coordinator: C,
    forwarder: F,
    policy: P,
    settings: Settings,
    broken: Option<String>,
}

impl<S, C, F, P> ForwardToLeader<S, C, F, P> {
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

/// Where a request should go, from a leadership snapshot.
enum Target {
    Local,
    Remote(NodeInfo),
    Unknown,
}

fn target(snapshot: &Leadership, me: NodeId) -> Target {
    if snapshot.is_leader() {
        return Target::Local;
    }
    match &snapshot.leader {
        Some(leader) if leader.id != me => match &leader.endpoint {
            Some(endpoint) => Target::Remote(NodeInfo::new(leader.id, endpoint.clone())),
            None => Target::Unknown,
        },
        _ => Target::Unknown,
    }
}

impl<S, C, F, P, Req> Service<Req> for ForwardToLeader<S, C, F, P>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send + 'static,
    F: Service<ForwardRequest<Req>, Response = S::Response> + Clone + Send + 'static,
    F::Error: Into<BoxError>,
    F::Future: Send,
    C: ClusterCoordinator + Clone,
    P: ForwardPolicy<Req> + MapError<S::Response>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = <P as MapError<S::Response>>::Error;
    type Future =
        ResponseFuture<S::Future, tower::util::Oneshot<F, ForwardRequest<Req>>, S::Response, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            // An inner service that failed readiness is broken; the policy
            // decides whether that is an error or an answer, and an answer
            // here would be lost, so report readiness and fail the call.
            Poll::Ready(Err(e)) => {
                self.broken = Some(e.into().to_string());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let policy = self.policy.clone();
        if let Some(broken) = self.broken.take() {
            return ResponseFuture::failed(broken.into(), policy);
        }
        // A malformed hop count is refused wherever it arrives, the leader
        // included: the same request must not succeed or fail depending on
        // which node it reached.
        let hops = match self.policy.hops(&req) {
            Ok(hops) => hops,
            Err(malformed) => return ResponseFuture::failed(malformed.into(), policy),
        };
        if self.coordinator.is_leader() {
            return ResponseFuture::inner(self.inner.call(req), policy);
        }
        // The hand-over grace hop: a node that is handing leadership over
        // (or retiring) was the right destination when the request was
        // sent; it may pass the request on to its successor once more.
        let snapshot = self.coordinator.leadership();
        let me = self.coordinator.node().id;
        let grace = snapshot.transferring && hops < self.settings.hop_limit.saturating_add(1);
        // A node that was just elected has no lease yet: a request forwarded
        // to it waits (bounded) for its leadership to be confirmed.
        let local_only = hops >= self.settings.hop_limit
            && !grace
            && snapshot.leader_id() == Some(me)
            && !snapshot.transferring;
        if hops >= self.settings.hop_limit && !grace && !local_only {
            tracing::warn!(target: TARGET, hops, limit = self.settings.hop_limit, "hop limit reached; not forwarding");
            return ResponseFuture::failed(
                HopLimit::new(hops, self.settings.hop_limit).into(),
                policy,
            );
        }
        let deadline = self.settings.timeout.map(|t| Instant::now() + t);
        let spare = if self.settings.max_retries > 0 {
            self.policy.clone_for_retry(&req)
        } else {
            None
        };
        let me = self.coordinator.node().id;
        if let (Target::Remote(leader), None) = (target(&self.coordinator.leadership(), me), &spare)
        {
            tracing::debug!(target: TARGET, leader_id = %leader.id, hops = hops + 1, "forwarding to the leader");
            let forward = ForwardRequest::new(leader, req, hops + 1, deadline);
            return ResponseFuture::forward(self.forwarder.clone().oneshot(forward), policy);
        }
        // The slow path: wait for a leader, or keep a copy for a retry.
        let clone = self.inner.clone();
        let held = Held {
            inner: std::mem::replace(&mut self.inner, clone),
            coordinator: self.coordinator.clone(),
            forwarder: self.forwarder.clone(),
            policy: self.policy.clone(),
            settings: self.settings,
            hops,
            deadline,
            local_only,
        };
        ResponseFuture::held(Box::pin(held.run(req, spare)), policy)
    }
}

struct Held<S, C, F, P> {
    inner: S,
    coordinator: C,
    forwarder: F,
    policy: P,
    settings: Settings,
    hops: u32,
    deadline: Option<Instant>,
    /// Serve here once leadership is confirmed, never forward.
    local_only: bool,
}

impl<S, C, F, P> Held<S, C, F, P> {
    async fn run<Req>(self, mut req: Req, mut spare: Option<Req>) -> Result<S::Response, BoxError>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
        F: Service<ForwardRequest<Req>, Response = S::Response> + Clone,
        F::Error: Into<BoxError>,
        C: ClusterCoordinator,
        P: ForwardPolicy<Req>,
    {
        let me = self.coordinator.node().id;
        let mut rx = self.coordinator.subscribe();
        let mut attempts = 0;
        let mut failed_leader: Option<NodeId> = None;
        // The error of a failed forward, answered if no retry can be made.
        let mut last_error: Option<BoxError> = None;
        loop {
            // Wait (bounded, and never past the request's deadline) for
            // somewhere to send the request.
            let mut hold_until = Instant::now() + self.settings.hold;
            if let Some(deadline) = self.deadline {
                hold_until = hold_until.min(deadline);
            }
            let destination = loop {
                let snapshot = rx.borrow_and_update().clone();
                match target(&snapshot, me) {
                    Target::Remote(leader) if Some(leader.id) == failed_leader => {}
                    Target::Unknown => {}
                    found => break found,
                }
                let changed = tokio::time::timeout_at(hold_until, rx.changed()).await;
                if !matches!(changed, Ok(Ok(()))) {
                    if let Some(error) = last_error {
                        // No other leader to retry with: the failure stands.
                        return Err(error);
                    }
                    tracing::info!(target: TARGET, hold = ?self.settings.hold, "no leader within the hold time");
                    return Err(NotLeader::new(NotLeaderReason::NoLeader).into());
                }
            };
            let leader = match destination {
                Target::Local => return self.inner.oneshot(req).await.map_err(Into::into),
                Target::Remote(_) if self.local_only => {
                    return Err(HopLimit::new(self.hops, self.settings.hop_limit).into())
                }
                Target::Remote(leader) => leader,
                Target::Unknown => return Err(NotLeader::new(NotLeaderReason::NoLeader).into()),
            };
            let idempotent = self.policy.is_idempotent(&req);
            let forward = ForwardRequest::new(leader.clone(), req, self.hops + 1, self.deadline);
            let error: BoxError = match self.forwarder.clone().oneshot(forward).await {
                Ok(response) => return Ok(response),
                Err(e) => e.into(),
            };
            let unsent = error
                .downcast_ref::<ForwardFailed>()
                .is_some_and(ForwardFailed::is_connect);
            let retry = attempts < self.settings.max_retries && (unsent || idempotent);
            match spare.take() {
                Some(next) if retry => {
                    attempts += 1;
                    tracing::info!(target: TARGET, leader_id = %leader.id, %error, "forward failed; retrying");
                    failed_leader = Some(leader.id);
                    spare = self.policy.clone_for_retry(&next);
                    req = next;
                    last_error = Some(error);
                }
                _ => return Err(error),
            }
        }
    }
}
