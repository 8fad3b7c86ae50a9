//! Reading request bodies and writing JSON answers, for the route handlers
//! and the typed commands. Failures become [`Problem`]s.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;

use crate::problem::Problem;

/// A JSON answer.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(target: "catga_cluster::axum", %error, "cannot encode an answer");
            Problem::internal().into_response()
        }
    }
}

/// Reads a request body (its limit is enforced by the route's layer).
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Problem> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let problem = Problem::from_error(&error);
            if problem.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Err(problem)
            } else {
                Err(Problem::bad_request("the request body could not be read"))
            }
        }
    }
}

/// Decodes a JSON body; an empty body decodes as `empty` when given.
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    empty: Option<T>,
) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(default) = empty {
            return Ok(default);
        }
        return Err(Problem::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not valid: {e}")))
}
