//! The keys under a prefix: `GET /cluster/kv?prefix=P` lists them
//! (linearizable), and with `watch=true` streams their changes as
//! Server-Sent Events.
//!
//! # Event ids and resumption
//!
//! Each event's `id:` is its revision. The writes of one batched log entry
//! share its revision, so one revision can carry several events under the
//! prefix: an event that does not complete its revision gets the id
//! `R.n` instead (revision `R`, the `n`-th event of it), and only the last
//! one is plain `R`. A client's `Last-Event-ID` therefore always says
//! exactly what it received: `R` resumes at revision `R + 1`, `R.n` at the
//! event after the `n`-th of revision `R`; nothing is skipped or repeated.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use catga_cluster_raft::watch::{KeyEvent, WatchError, WatchStream};
use futures_util::stream::{self, Stream};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{finish, node, observed};
use crate::api::{KvEntryDto, KvListDto};
use crate::problem::Problem;
use crate::response::json;
use crate::routes::state::AppState;

/// The most keys a listing answers.
pub(crate) const MAX_LIST: usize = 10_000;

/// The keys a listing answers when the request names no `limit`.
pub(crate) const DEFAULT_LIST: usize = 1_000;

/// The query of `GET /cluster/kv`.
#[derive(Debug, Deserialize)]
pub(crate) struct KvQuery {
    prefix: Option<String>,
    #[serde(default)]
    watch: bool,
    from_revision: Option<u64>,
    limit: Option<usize>,
}

/// Where a watch starts: a revision, and how many of its events the client
/// has already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    revision: u64,
    skip: usize,
}

/// Reads `Last-Event-ID`: `R` (revision `R` received in full) or `R.n`
/// (`n` events of revision `R` received).
pub(crate) fn last_event_id(text: &str) -> Option<Start> {
    let text = text.trim();
    match text.split_once('.') {
        None => {
            let revision: u64 = text.parse().ok()?;
            Some(Start {
                revision: revision.checked_add(1)?,
                skip: 0,
            })
        }
        Some((revision, n)) => Some(Start {
            revision: revision.parse().ok()?,
            skip: n.parse().ok()?,
        }),
    }
}

pub(super) async fn kv_prefix(
    State(state): State<AppState>,
    query: Result<Query<KvQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    finish(
        async {
            let node = node(&state)?;
            let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
            let prefix = query.prefix.unwrap_or_default();
            if !query.watch {
                let limit = query.limit.unwrap_or(DEFAULT_LIST);
                if limit == 0 || limit > MAX_LIST {
                    return Err(Problem::bad_request(format!(
                        "limit must be 1 to {MAX_LIST}, not {limit}"
                    )));
                }
                let (mut entries, revision) =
                    observed(&state, node, node.list_at_revision(&prefix, limit + 1)).await?;
                let truncated = entries.len() > limit;
                entries.truncate(limit);
                let keys = entries
                    .into_iter()
                    .map(|(key, v)| KvEntryDto::new(key, Some(&v.value), v.revision))
                    .collect();
                return Ok(json(
                    StatusCode::OK,
                    &KvListDto {
                        prefix,
                        revision,
                        keys,
                        truncated,
                    },
                ));
            }
            let resume = match headers.get("last-event-id") {
                Some(value) => Some(
                    value
                        .to_str()
                        .ok()
                        .and_then(last_event_id)
                        .ok_or_else(|| {
                            Problem::bad_request(
                                "Last-Event-ID must be a revision R or R.n, as the stream names its events",
                            )
                        })?,
                ),
                None => query.from_revision.map(|revision| Start { revision, skip: 0 }),
            };
            let watch = match node.watch(&prefix, resume.map(|s| s.revision)).await {
                Ok(watch) => watch,
                Err(WatchError::Compacted { oldest_revision }) => {
                    return Err(Problem::compacted(oldest_revision))
                }
                Err(WatchError::Cluster(e)) => return Err(e.into()),
                Err(other) => return Err(Problem::from(catga_cluster_core::BoxError::from(other.to_string()))),
            };
            let skip = resume.map_or(0, |s| s.skip);
            let drained = state.view.draining.begun();
            Ok(Sse::new(key_events(watch, skip, drained))
                .keep_alive(KeepAlive::new().interval(crate::routes::HEARTBEAT))
                .into_response())
        }
        .await,
    )
}

/// The SSE events of a watch, until it ends or the server drains.
fn key_events(
    watch: WatchStream,
    skip: usize,
    drained: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    struct S {
        watch: WatchStream,
        /// Events of the start revision still to skip.
        skip: usize,
        /// The revision of the last event sent, and how many of it.
        at: (u64, usize),
        drained: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        done: bool,
    }
    let start = watch.start_revision();
    let s = S {
        watch,
        skip,
        at: (0, 0),
        drained: Box::pin(drained),
        done: false,
    };
    stream::unfold(s, move |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let next = tokio::select! {
                biased;
                () = &mut s.drained => return None,
                next = s.watch.next_event() => next,
            };
            let event = match next {
                None => return None,
                Some(Err(WatchError::Lagged { last_revision })) => {
                    s.done = true;
                    let data = serde_json::json!({ "last_revision": last_revision });
                    let event = Event::default().event("lagged").data(data.to_string());
                    return Some((Ok(event), s));
                }
                Some(Err(_)) => return None,
                Some(Ok(event)) => event,
            };
            let revision = event.revision();
            if revision == start && s.skip > 0 {
                s.skip -= 1;
                s.at = (revision, s.at.1 + 1);
                continue;
            }
            let n = if s.at.0 == revision { s.at.1 + 1 } else { 1 };
            s.at = (revision, n);
            let id = if s.watch.completes_revision(&event) {
                revision.to_string()
            } else {
                format!("{revision}.{n}")
            };
            let (kind, dto) = match event {
                KeyEvent::Put {
                    key,
                    value,
                    revision,
                } => ("put", KvEntryDto::new(key, Some(&value), revision)),
                KeyEvent::Delete { key, revision } => {
                    ("delete", KvEntryDto::new(key, None, revision))
                }
            };
            let data = serde_json::to_string(&dto).unwrap_or_default();
            return Some((Ok(Event::default().id(id).event(kind).data(data)), s));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids() {
        assert_eq!(
            last_event_id("7"),
            Some(Start {
                revision: 8,
                skip: 0
            })
        );
        assert_eq!(
            last_event_id(" 7.2 "),
            Some(Start {
                revision: 7,
                skip: 2
            })
        );
        for bad in ["", "x", "7.", ".2", "-1", "7.2.1"] {
            assert_eq!(last_event_id(bad), None, "{bad}");
        }
    }
}
