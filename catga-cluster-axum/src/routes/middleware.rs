//! The middleware of the cluster router: JSON content-type checks, the
//! panic handler, and which routes are peer-only or administrative.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use catga_cluster_core::protocol::FORWARD_PATH_PREFIX;
use http::header::CONTENT_TYPE;
use http::HeaderValue;

use super::paths;
use crate::problem::Problem;

pub(super) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(target: "catga_cluster::axum", "a cluster route panicked");
    Problem::internal().into_response()
}

/// Whether a content type is JSON: `application/json` or
/// `application/<something>+json`, with any parameters.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn unsupported(content_type: Option<&HeaderValue>) -> Response {
    let detail = match content_type.and_then(|v| v.to_str().ok()) {
        Some(given) => format!(
            "this route accepts `Content-Type: application/json` only, not `{}`",
            given.chars().take(100).collect::<String>()
        ),
        None => "this route needs a JSON body with `Content-Type: application/json`".to_owned(),
    };
    Problem::unsupported_media_type(detail).into_response()
}

/// A JSON route: the body must be `application/json` (`415` otherwise),
/// checked before the body is read.
pub(super) async fn require_json(request: Request, next: Next) -> Response {
    match request.headers().get(CONTENT_TYPE) {
        Some(v) if is_json(v) => next.run(request).await,
        other => unsupported(other),
    }
}

/// A route whose JSON body is optional: with no body and no
/// `Content-Type` it runs; any body or `Content-Type` must be JSON.
pub(super) async fn require_json_if_present(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let content_type = headers.get(CONTENT_TYPE);
    let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    match content_type {
        Some(v) if is_json(v) => next.run(request).await,
        None if !has_body => next.run(request).await,
        other => unsupported(other),
    }
}

/// The routes only peers call: Raft RPC, the leader watch and forwarded
/// commands.
pub(super) fn is_peer_route(path: &str) -> bool {
    path.starts_with(FORWARD_PATH_PREFIX)
        || path == catga_cluster_core::protocol::RAFT_WATCH_PATH
        || catga_cluster_core::protocol::RaftRpc::ALL
            .iter()
            .any(|rpc| catga_cluster_core::protocol::raft_rpc_path(*rpc) == path)
}

/// The admin routes: the whole request, forwarding included, runs under
/// [`Limits::admin_timeout`](crate::Limits::admin_timeout).
pub(super) fn is_admin_route(path: &str) -> bool {
    matches!(
        path,
        paths::MEMBERS | paths::MEMBER | paths::LEADERSHIP_TRANSFER
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/merge-patch+json ; x=y",
        ] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/+json",
            "json",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(refused)), "{refused}");
        }
    }
}
