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

/// Decodes a JSON body, which must be an object (every route body is one);
/// an empty body decodes as `empty` when given.
///
/// serde reads a struct from a JSON array of its fields in order as well
/// (`["worker-1", 30000]` for `{"owner": "worker-1", "ttl_ms": 30000}`);
/// the routes document objects, so an array is refused here.
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    empty: Option<T>,
) -> Result<T, Problem> {
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        if let Some(default) = empty {
            return Ok(default);
        }
        return Err(Problem::bad_request("a JSON body is required"));
    };
    if *first != b'{' {
        return Err(Problem::bad_request(
            "the body is not valid: expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Acquire {
        owner: String,
        ttl_ms: Option<u64>,
    }

    #[test]
    fn a_body_must_be_an_object_not_an_array_of_the_fields() {
        let object: Acquire = parse_json(br#" {"owner":"w","ttl_ms":5}"#, None).unwrap();
        assert_eq!(object.owner, "w");
        for body in [
            &br#"["w",5]"#[..],
            br#" ["w", null]"#,
            br#""w""#,
            b"5",
            b"null",
        ] {
            let refused = parse_json::<Acquire>(body, None).unwrap_err();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{body:?}");
        }
        assert_eq!(
            parse_json::<Option<Acquire>>(b" \n", Some(None)).unwrap(),
            None
        );
    }
}
