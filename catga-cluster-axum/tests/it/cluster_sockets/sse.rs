//! The event streams over real sockets, read incrementally as a
//! Server-Sent Events client does: key events of a prefix (resumed with
//! `Last-Event-ID`, `410 compacted` when too old) and leadership events,
//! which end when the server drains.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_raft::state_machine::StateMachineConfig;
use catga_cluster_raft::NodeOptions;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{Cluster, Http, DEADLINE};
use crate::common::SERIAL;

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An open event stream, parsed as its frames arrive.
struct SseClient {
    body: Incoming,
    buffer: String,
}

impl SseClient {
    async fn open(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseClient, (StatusCode, Bytes)> {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{addr}{path}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        let response = tokio::time::timeout(
            DEADLINE,
            client.request(builder.body(Empty::new()).unwrap()),
        )
        .await
        .expect("an answer in time")
        .expect("the request is answered");
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            return Err((status, body));
        }
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Ok(SseClient {
            body: response.into_body(),
            buffer: String::new(),
        })
    }

    /// The next event (comments skipped), or `None` when the stream ends.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_owned());
                    }
                }
                match data {
                    Some(d) => {
                        event.data = serde_json::from_str(&d).expect("JSON data");
                        return Some(event);
                    }
                    None => continue, // a heartbeat comment
                }
            }
            let frame = tokio::time::timeout(DEADLINE, self.body.frame())
                .await
                .expect("a frame in time")?;
            let frame = frame.expect("the stream reads");
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

async fn put(http: &Http, addr: SocketAddr, key: &str, value: &str) -> u64 {
    let reply = http
        .call(Method::PUT, addr, &format!("/cluster/kv/{key}"), &[], value)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    body["revision"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_events_stream_and_resume_with_last_event_id() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader_id = cluster.leader().await.id;
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();

    let mut stream = SseClient::open(follower.addr, "/cluster/kv?prefix=w/&watch=true", None)
        .await
        .unwrap();
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(&http, follower.addr, &format!("w/{i}"), &format!("v{i}")).await);
    }
    put(&http, follower.addr, "other/x", "no").await;
    let reply = http
        .call(Method::DELETE, follower.addr, "/cluster/kv/w/0", &[], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    let mut events = Vec::new();
    for _ in 0..6 {
        events.push(stream.next().await.expect("the stream goes on"));
    }
    for (i, e) in events[..5].iter().enumerate() {
        assert_eq!(e.event, "put");
        assert_eq!(e.id.as_deref(), Some(revisions[i].to_string().as_str()));
        assert_eq!(e.data["key"], format!("w/{i}"));
        assert_eq!(e.data["value"], format!("v{i}"));
        assert_eq!(e.data["revision"], revisions[i]);
    }
    assert_eq!(events[5].event, "delete");
    assert_eq!(events[5].data["key"], "w/0");
    assert!(events[5].data.get("value").is_none());
    drop(stream);

    // Resume after the third event: the rest, exactly, on another node.
    let last = events[2].id.clone().unwrap();
    let leader = cluster.leader().await;
    let mut resumed = SseClient::open(leader.addr, "/cluster/kv?prefix=w/&watch=true", Some(&last))
        .await
        .unwrap();
    for want in &events[3..] {
        assert_eq!(&resumed.next().await.unwrap(), want);
    }
    // And from_revision in the query starts at that revision.
    let path = format!(
        "/cluster/kv?prefix=w/&watch=true&from_revision={}",
        revisions[4]
    );
    let mut from = SseClient::open(follower.addr, &path, None).await.unwrap();
    assert_eq!(&from.next().await.unwrap(), &events[4]);

    // Without watch: the keys, linearizable, with the revision read at.
    let reply = http
        .call(Method::GET, follower.addr, "/cluster/kv?prefix=w/", &[], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let list: Value = serde_json::from_slice(&reply.body).unwrap();
    let keys: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["w/1", "w/2", "w/3", "w/4"]);
    assert_eq!(list["keys"][0]["value"], "v1");
    assert!(list["revision"].as_u64().unwrap() >= events[5].data["revision"].as_u64().unwrap());
    assert_eq!(list["truncated"], false);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_the_history_is_gone() {
    let _serial = SERIAL.lock().await;
    let options = NodeOptions::default().state_machine(StateMachineConfig {
        watch_history_events: 2,
        ..StateMachineConfig::default()
    });
    let cluster = Cluster::start_with(options).await;
    let http = Http::new();
    let leader = cluster.leader().await;
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(&http, leader.addr, &format!("w/{i}"), "v").await);
    }
    let path = format!(
        "/cluster/kv?prefix=w/&watch=true&from_revision={}",
        revisions[0]
    );
    let (status, body) = SseClient::open(leader.addr, &path, None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::GONE);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["type"], "compacted", "{doc}");
    assert_eq!(doc["oldest_revision"], revisions[3], "{doc}");
    // Where it says, a watch starts.
    let path = format!(
        "/cluster/kv?prefix=w/&watch=true&from_revision={}",
        revisions[3]
    );
    let mut stream = SseClient::open(leader.addr, &path, None).await.unwrap();
    assert_eq!(stream.next().await.unwrap().data["key"], "w/3");
    // A Last-Event-ID too old is gone as well.
    let id = revisions[0].to_string();
    let (status, _) = SseClient::open(leader.addr, "/cluster/kv?prefix=w/&watch=true", Some(&id))
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::GONE);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_events_follow_changes_and_end_when_the_server_drains() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start().await;
    let leader_id = cluster.leader().await.id;
    let follower = cluster
        .nodes
        .iter()
        .position(|n| n.id != leader_id)
        .unwrap();
    let addr = cluster.nodes[follower].addr;
    let mut stream = SseClient::open(addr, "/cluster/leadership/events", None)
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    assert_eq!(first.event, "leadership");
    assert_eq!(first.data["role"], "follower", "{first:?}");
    assert_eq!(first.data["leader"]["id"], leader_id.get());
    assert_eq!(first.data["lease_valid"], false);

    // The leader hands over: the follower's stream shows the change.
    let leader = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader_id)
        .unwrap();
    let _ = cluster.nodes[leader].stop.take().unwrap().send(());
    let changed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.next().await {
                Some(e) if e.data["leader"]["id"] != leader_id.get() => return e,
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    })
    .await
    .expect("a change in time");
    assert_ne!(changed.data["term"], first.data["term"]);

    // The follower's server drains: the stream ends, well before the drain
    // timeout (10 s), and the server returns.
    let started = tokio::time::Instant::now();
    let _ = cluster.nodes[follower].stop.take().unwrap().send(());
    while tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap()
        .is_some()
    {}
    let server = cluster.nodes[follower].server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(8), server)
        .await
        .expect("the server returns before its drain timeout")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(8));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_batched_revision_resume_exactly_after_any_of_them() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader = cluster.leader().await;
    let mut stream = SseClient::open(leader.addr, "/cluster/kv?prefix=b/&watch=true", None)
        .await
        .unwrap();
    // Concurrent writes: the leader groups them into shared entries.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let http = http.clone();
        let addr = leader.addr;
        tasks.push(tokio::spawn(async move {
            put(&http, addr, &format!("b/{i}"), "v").await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut events = Vec::new();
    for _ in 0..40 {
        events.push(stream.next().await.unwrap());
    }
    let partial = events
        .iter()
        .filter(|e| e.id.as_deref().unwrap().contains('.'))
        .count();
    assert!(partial > 0, "no revision carried two events: {events:?}");
    for (i, e) in events.iter().enumerate() {
        let revision = e.data["revision"].as_u64().unwrap();
        let id = e.id.as_deref().unwrap();
        let completes = events
            .get(i + 1)
            .is_none_or(|n| n.data["revision"].as_u64().unwrap() != revision);
        if completes {
            assert_eq!(id, revision.to_string());
        } else {
            assert!(id.starts_with(&format!("{revision}.")), "{id}");
        }
    }
    // Resuming after any event gives exactly the events after it.
    for i in 0..events.len() - 1 {
        let id = events[i].id.clone().unwrap();
        let mut resumed =
            SseClient::open(leader.addr, "/cluster/kv?prefix=b/&watch=true", Some(&id))
                .await
                .unwrap();
        for want in &events[i + 1..] {
            assert_eq!(&resumed.next().await.unwrap(), want, "resumed after {id}");
        }
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_put_with_a_ttl_expires_as_a_delete_event() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader_id = cluster.leader().await.id;
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();
    let mut stream = SseClient::open(follower.addr, "/cluster/kv?prefix=t/&watch=true", None)
        .await
        .unwrap();
    for bad in ["0", "86400001", "x"] {
        let reply = http
            .call(
                Method::PUT,
                follower.addr,
                &format!("/cluster/kv/t/a?ttl_ms={bad}"),
                &[],
                "v",
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "ttl_ms={bad}");
    }
    let revision = put(&http, follower.addr, "t/a?ttl_ms=300", "v").await;
    let put_event = stream.next().await.unwrap();
    assert_eq!(put_event.event, "put");
    assert_eq!(put_event.data["key"], "t/a");
    assert_eq!(put_event.data["revision"], revision);
    let expired = stream.next().await.unwrap();
    assert_eq!(expired.event, "delete");
    assert_eq!(expired.data["key"], "t/a");
    let reply = http
        .call(Method::GET, follower.addr, "/cluster/kv/t/a", &[], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    cluster.stop_all().await;
}
