//! One layer that makes every error answer of a router a problem document.
//!
//! axum and tower-http answer some errors themselves, with plain-text or
//! empty bodies: `404` for an unknown path, `405` for a method a route does
//! not serve, extractor rejections (`400` for a path that does not decode,
//! such as `/orders/%ff`, `415` for a JSON body without
//! `Content-Type: application/json`, `422` for JSON of the wrong shape,
//! `413` for a body over the limit), timeouts. [`ProblemResponsesLayer`]
//! turns each of them into `application/problem+json` with the slug the
//! HTTP contract gives that status:
//!
//! | status | slug |
//! |---|---|
//! | 400, 422 (answered as 400) and other 4xx | `bad-request` |
//! | 403 | `forbidden` |
//! | 404 | `not-found` |
//! | 405 | `method-not-allowed` (keeps `Allow`) |
//! | 408, 504 | `timeout` |
//! | 413 | `payload-too-large` |
//! | 415 | `unsupported-media-type` |
//! | 5xx | `internal` (the body never leaks) |
//!
//! Answers that are already problems, and handlers' own JSON (health
//! bodies), pass unchanged: only answers without a `Content-Type` or with
//! `text/plain` are rewritten. The cluster routes use it; put it on your
//! own router (with [`Router::layer`](axum::Router::layer), so the
//! fallback's `404` is covered too):
//!
//! ```
//! use axum::{routing::post, Router};
//! use catga_cluster_axum::ProblemResponsesLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders", post(|| async { "created" }))
//!     .layer(ProblemResponsesLayer::new());
//! # let _ = app;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::problem::{slug, Problem};

/// Rewrites plain error answers as problem documents; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemResponsesLayer {
    _private: (),
}

impl ProblemResponsesLayer {
    /// The layer.
    pub fn new() -> Self {
        ProblemResponsesLayer::default()
    }
}

impl<S> Layer<S> for ProblemResponsesLayer {
    type Service = ProblemResponses<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemResponses { inner }
    }
}

/// The service of [`ProblemResponsesLayer`]. `poll_ready` is the inner
/// service's.
#[derive(Debug, Clone)]
pub struct ProblemResponses<S> {
    inner: S,
}

impl<S> ProblemResponses<S> {
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

impl<S, B> Service<Request<B>> for ProblemResponses<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ProblemResponsesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ProblemResponsesFuture {
            state: State::Inner {
                future: self.inner.call(req),
            },
        }
    }
}

type Rewrite = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    /// The response future of [`ProblemResponses`]. It boxes only when an
    /// answer is rewritten (its plain-text detail is read first).
    pub struct ProblemResponsesFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Rewriting { future: Rewrite },
    }
}

impl<F> fmt::Debug for ProblemResponsesFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProblemResponsesFuture")
            .finish_non_exhaustive()
    }
}

impl<F, E> Future for ProblemResponsesFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    if !needs_rewrite(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    State::Rewriting {
                        future: Box::pin(rewrite(response)),
                    }
                }
                StateProj::Rewriting { future } => {
                    return future.as_mut().poll(cx).map(Ok);
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// An error answer that axum or tower-http produced: no body type, or
/// plain text. Handlers' JSON and problems stay as they are.
fn needs_rewrite(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
}

/// The problem document for a plain error answer, keeping its other headers.
pub(crate) async fn rewrite(response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    // Rejections describe the input, never internals; 5xx bodies are
    // never shown.
    let text = if status.is_client_error() {
        http_body_util::Limited::new(body, 1024)
            .collect()
            .await
            .ok()
            .and_then(|c| String::from_utf8(c.to_bytes().to_vec()).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    } else {
        None
    };
    let detail = |fallback: &str| text.clone().unwrap_or_else(|| fallback.to_owned());
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => Problem::method_not_allowed(
            parts
                .headers
                .get(ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Problem::unsupported_media_type(detail("this route accepts application/json only"))
        }
        StatusCode::FORBIDDEN => Problem::forbidden(detail("this request is not allowed")),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Problem::timeout(None),
        StatusCode::NOT_FOUND => Problem::not_found(detail("no such resource")),
        // The contract answers a body of the wrong shape as 400.
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            Problem::bad_request(detail("the request is malformed"))
        }
        s if s.is_client_error() => Problem::new(
            s,
            slug::BAD_REQUEST,
            "Bad request",
            detail(s.canonical_reason().unwrap_or("bad request")),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => Problem::internal(),
        s => Problem::new(
            s,
            slug::INTERNAL,
            "Internal error",
            s.canonical_reason().unwrap_or("the request failed"),
        ),
    };
    let mut out = problem.into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH && !out.headers().contains_key(name) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
