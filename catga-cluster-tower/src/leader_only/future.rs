//! The response future of [`LeaderOnly`](super::LeaderOnly).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use catga_cluster_core::{BoxError, NotLeader};
use pin_project_lite::pin_project;

type StrictFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`LeaderOnly`](super::LeaderOnly).
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
        Strict { future: StrictFuture<T> },
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

    pub(crate) fn strict(future: StrictFuture<T>) -> Self {
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
