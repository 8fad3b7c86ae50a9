//! The response future of [`ForwardToLeader`](super::ForwardToLeader).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use catga_cluster_core::BoxError;
use pin_project_lite::pin_project;

use super::MapError;

type HeldFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`ForwardToLeader`](super::ForwardToLeader).
    pub struct ResponseFuture<I, F, T, P> {
        #[pin]
        kind: Kind<I, F, T>,
        policy: P,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<I, F, T> {
        Inner { #[pin] future: I },
        Forward { #[pin] future: F },
        Held { future: HeldFuture<T> },
        Failed { error: Option<BoxError> },
    }
}

impl<I, F, T, P> ResponseFuture<I, F, T, P> {
    pub(crate) fn inner(future: I, policy: P) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
            policy,
        }
    }

    pub(crate) fn forward(future: F, policy: P) -> Self {
        ResponseFuture {
            kind: Kind::Forward { future },
            policy,
        }
    }

    pub(crate) fn held(future: HeldFuture<T>, policy: P) -> Self {
        ResponseFuture {
            kind: Kind::Held { future },
            policy,
        }
    }

    pub(crate) fn failed(error: BoxError, policy: P) -> Self {
        ResponseFuture {
            kind: Kind::Failed { error: Some(error) },
            policy,
        }
    }
}

impl<I, F, T, P, E1, E2> Future for ResponseFuture<I, F, T, P>
where
    I: Future<Output = Result<T, E1>>,
    F: Future<Output = Result<T, E2>>,
    E1: Into<BoxError>,
    E2: Into<BoxError>,
    P: MapError<T>,
{
    type Output = Result<T, P::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result: Result<T, BoxError> = match this.kind.project() {
            KindProj::Inner { future } => ready!(future.poll(cx)).map_err(Into::into),
            KindProj::Forward { future } => ready!(future.poll(cx)).map_err(Into::into),
            KindProj::Held { future } => ready!(future.as_mut().poll(cx)),
            KindProj::Failed { error } => Err(error
                .take()
                .unwrap_or_else(|| "response future polled after completion".into())),
        };
        Poll::Ready(result.or_else(|e| this.policy.map_error(e)))
    }
}

impl<I, F, T, P> fmt::Debug for ResponseFuture<I, F, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
