//! The response futures of [`LeaderOnly`](super::LeaderOnly).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(feature = "http-forwarder")]
use crate::problem::Problem;
use catga_cluster_core::{BoxError, NotLeader};
use pin_project_lite::pin_project;

type StrictFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

pin_project! {
    /// The response future of [`LeaderOnly`](super::LeaderOnly) when it
    /// refuses with an error ([`RefuseWithError`](super::RefuseWithError)).
    pub struct ResponseFuture<F, T> {
        #[pin]
        kind: Kind<F, T>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, T> {
        Inner { #[pin] future: F },
        Rejected { refusal: Option<NotLeader> },
        Strict { future: StrictFuture<T, BoxError> },
    }
}

impl<F, T> ResponseFuture<F, T> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(refusal: NotLeader) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn strict(future: StrictFuture<T, BoxError>) -> Self {
        ResponseFuture {
            kind: Kind::Strict { future },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { refusal } => Poll::Ready(Err(match refusal.take() {
                Some(refusal) => refusal.into(),
                None => "response future polled after completion".into(),
            })),
            KindProj::Strict { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, T> fmt::Debug for ResponseFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(feature = "http-forwarder")]
pin_project! {
    /// The response future of [`LeaderOnly`](super::LeaderOnly) when it
    /// answers refusals with the `503` problem
    /// ([`RefuseWithProblem`](super::RefuseWithProblem)): the inner
    /// service's answer or error, or the problem response.
    pub struct ProblemResponseFuture<F, B, E> {
        #[pin]
        kind: ProblemKind<F, B, E>,
    }
}

#[cfg(feature = "http-forwarder")]
pin_project! {
    #[project = ProblemKindProj]
    enum ProblemKind<F, B, E> {
        Inner { #[pin] future: F },
        Refused { refusal: Option<NotLeader> },
        Strict { future: StrictFuture<http::Response<B>, E> },
    }
}

#[cfg(feature = "http-forwarder")]
impl<F, B, E> ProblemResponseFuture<F, B, E> {
    pub(crate) fn inner(future: F) -> Self {
        ProblemResponseFuture {
            kind: ProblemKind::Inner { future },
        }
    }

    pub(crate) fn refused(refusal: NotLeader) -> Self {
        ProblemResponseFuture {
            kind: ProblemKind::Refused {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn strict(future: StrictFuture<http::Response<B>, E>) -> Self {
        ProblemResponseFuture {
            kind: ProblemKind::Strict { future },
        }
    }
}

#[cfg(feature = "http-forwarder")]
impl<F, B, E> Future for ProblemResponseFuture<F, B, E>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: From<bytes::Bytes>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ProblemKindProj::Inner { future } => future.poll(cx),
            ProblemKindProj::Refused { refusal } => Poll::Ready(Ok(match refusal.take() {
                Some(refusal) => super::problem_response(&refusal),
                // A caller's bug: the usual answer to an unexpected error.
                None => {
                    let misuse = BoxError::from("response future polled after completion");
                    Problem::from_error(misuse.as_ref()).response_with(B::from)
                }
            })),
            ProblemKindProj::Strict { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(feature = "http-forwarder")]
impl<F, B, E> fmt::Debug for ProblemResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProblemResponseFuture")
            .finish_non_exhaustive()
    }
}
