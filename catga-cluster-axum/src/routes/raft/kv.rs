//! The key-value store: linearizable reads, writes, deletes, and
//! compare-and-set with `If-Match: <revision>`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use catga_cluster_core::protocol::REVISION_HEADER;
use catga_cluster_raft::state_machine::limits::MAX_TTL_MS;
use catga_cluster_raft::CasOutcome;
use http::header::{CONTENT_TYPE, IF_MATCH};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{finish, node, observed};
use crate::api::{KvDeletedDto, KvWrittenDto};
use crate::problem::Problem;
use crate::response::{json, read_body};
use crate::routes::state::AppState;

fn revision_header(revision: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(REVISION_HEADER),
        HeaderValue::from(revision),
    )
}

/// `If-Match: <revision>` (optionally quoted, as an entity tag).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match must be a revision number"))?
        .trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<u64>().map(Some).map_err(|_| {
        Problem::bad_request(format!(
            "If-Match must be a revision number (0: only if absent), not `{text}`"
        ))
    })
}

pub(super) async fn kv_get(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let result = observed(&state, node, node.get(&key)).await;
            match result? {
                Some(value) => {
                    let mut response = Response::new(Body::from(Bytes::from(value.value)));
                    let headers = response.headers_mut();
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    let (name, value) = revision_header(value.revision);
                    headers.insert(name, value);
                    Ok(response)
                }
                None => {
                    let (name, value) = revision_header(0);
                    Err(Problem::not_found(format!("no key `{key}`")).with_header(name, value))
                }
            }
        }
        .await,
    )
}

/// The query of `PUT /cluster/kv/{key}`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct PutQuery {
    /// The key's time to live, in milliseconds.
    ttl_ms: Option<u64>,
}

pub(super) async fn kv_put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    query: Result<Query<PutQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
            let expected = if_match(&headers)?;
            if let Some(ttl_ms) = query.ttl_ms {
                if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
                    return Err(Problem::bad_request(format!(
                        "ttl_ms must be 1 to {MAX_TTL_MS}, not {ttl_ms}"
                    )));
                }
            }
            let value = read_body(body).await?.to_vec();
            let write = async {
                match (query.ttl_ms, expected) {
                    (Some(ttl_ms), expected) => {
                        let ttl = std::time::Duration::from_millis(ttl_ms);
                        node.put_with_ttl(&key, value, ttl, expected).await
                    }
                    (None, None) => node.put(&key, value).await.map(CasOutcome::Written),
                    (None, Some(expected)) => node.compare_and_set(&key, expected, value).await,
                }
            };
            let result = observed(&state, node, write).await;
            match result? {
                CasOutcome::Written(revision) => {
                    let mut response = json(
                        StatusCode::OK,
                        &KvWrittenDto {
                            key: key.clone(),
                            revision,
                        },
                    );
                    let (name, value) = revision_header(revision);
                    response.headers_mut().insert(name, value);
                    Ok(response)
                }
                CasOutcome::Mismatch(current) => Err(Problem::revision_mismatch(&key, current)),
            }
        }
        .await,
    )
}

pub(super) async fn kv_delete(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let expected = if_match(&headers)?;
            let result = observed(&state, node, node.delete(&key, expected)).await;
            match result? {
                Ok(true) => {
                    let mut response = json(
                        StatusCode::OK,
                        &KvDeletedDto {
                            key: key.clone(),
                            deleted: true,
                        },
                    );
                    let (name, value) = revision_header(0);
                    response.headers_mut().insert(name, value);
                    Ok(response)
                }
                Ok(false) => Err(Problem::not_found(format!("no key `{key}`"))),
                Err(current) => Err(Problem::revision_mismatch(&key, current)),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        for (text, want) in [("5", 5), ("\"7\"", 7), ("W/\"9\"", 9), (" 0 ", 0)] {
            h.insert(IF_MATCH, HeaderValue::from_str(text).unwrap());
            assert_eq!(if_match(&h).unwrap(), Some(want), "{text}");
        }
        for bad in ["*", "abc", "-1", "\"x\""] {
            h.insert(IF_MATCH, HeaderValue::from_str(bad).unwrap());
            assert_eq!(if_match(&h).unwrap_err().slug(), "bad-request", "{bad}");
        }
    }
}
