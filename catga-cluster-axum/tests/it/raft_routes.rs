//! The Raft-backed routes through `Router::oneshot`, on a single-node
//! cluster in memory: key-value store, locks, membership, leadership
//! transfer, Raft RPC and their error paths.

use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::Router;
use catga_cluster_axum::{ClusterRoutes, Limits};
use catga_cluster_core::config::{ClusterConfig, ClusterSecret};
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::{RaftNode, Storage};
use http::{Method, Request};
use serde_json::json;

async fn single_node(secret: Option<&str>) -> RaftNode {
    let mut config = ClusterConfig::single_node(NodeInfo::new(
        NodeId::new(1),
        Endpoint::parse("http://127.0.0.1:1").unwrap(),
    ));
    config.secret = secret.map(ClusterSecret::from);
    let node = RaftNode::builder(config)
        .storage(Storage::Memory)
        .start()
        .await
        .unwrap();
    node.wait_for_leadership(Duration::from_secs(10))
        .await
        .unwrap();
    node
}

fn app(node: &RaftNode, limits: Limits) -> Router {
    from_peer(
        ClusterRoutes::raft(node.clone()).limits(limits).router(),
        loopback(),
    )
}

fn put(uri: &str, value: &'static str) -> Request<Body> {
    request(Method::PUT, uri, value)
}

fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut().insert(name, value.parse().unwrap());
    req
}

/// One `Authorization` rule on every protected route, the Raft RPCs
/// included: the scheme in any case, exactly one space, the secret.
#[tokio::test]
async fn one_bearer_rule_on_every_protected_route() {
    let node = single_node(Some("s3cret")).await;
    let app = from_peer(ClusterRoutes::raft(node.clone()).router(), remote());
    let lock = |auth: &str| {
        let mut req = post_json(
            "/cluster/locks/l/acquire",
            json!({"owner": "o", "ttl_ms": 1000}),
        );
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        req
    };
    let rpc = |auth: &str| {
        let mut req = request(Method::POST, "/cluster/raft/vote", Body::from(&b"\xff"[..]));
        req.headers_mut()
            .insert("x-catga-target-node", "1".parse().unwrap());
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        req
    };
    for accepted in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
        let granted = send(&app, lock(accepted)).await;
        assert_ne!(granted.status, 401, "{accepted}: {:?}", granted.body);
        // Past authentication, the garbage body is what the RPC refuses.
        send(&app, rpc(accepted))
            .await
            .assert_problem(400, "bad-request");
    }
    for refused in [
        "Bearer  s3cret",
        "Bearer s3cret ",
        "Bearer\ts3cret",
        "Basic s3cret",
        "s3cret",
        "Bearer",
    ] {
        send(&app, lock(refused))
            .await
            .assert_problem(401, "unauthorized");
        send(&app, rpc(refused))
            .await
            .assert_problem(401, "unauthorized");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn key_value_store() {
    let node = single_node(None).await;
    let app = app(&node, Limits::default().kv_body(16));

    let missing = send(&app, get("/cluster/kv/orders/1")).await;
    missing.assert_problem(404, "not-found");
    assert_eq!(missing.header("x-catga-revision"), Some("0"));

    let written = send(&app, put("/cluster/kv/orders/1", "pending")).await;
    assert_eq!(written.status, 200);
    let revision: u64 = written.header("x-catga-revision").unwrap().parse().unwrap();
    assert_eq!(
        written.json(),
        json!({"key": "orders/1", "revision": revision})
    );
    assert_eq!(written.header("x-catga-served-by"), Some("1"));

    let read = send(&app, get("/cluster/kv/orders/1")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, "pending");
    assert_eq!(
        read.header("x-catga-revision"),
        Some(revision.to_string().as_str())
    );
    assert_eq!(
        read.header("content-type"),
        Some("application/octet-stream")
    );

    // Compare-and-set.
    let stale = send(
        &app,
        with_header(
            put("/cluster/kv/orders/1", "done"),
            "if-match",
            &(revision + 100).to_string(),
        ),
    )
    .await;
    let doc = stale.assert_problem(412, "revision-mismatch");
    assert_eq!(doc["current_revision"], revision);
    assert_eq!(
        stale.header("x-catga-revision"),
        Some(revision.to_string().as_str())
    );
    let cas = send(
        &app,
        with_header(
            put("/cluster/kv/orders/1", "done"),
            "if-match",
            &format!("\"{revision}\""),
        ),
    )
    .await;
    assert_eq!(cas.status, 200);
    let created = send(
        &app,
        with_header(put("/cluster/kv/orders/2", "new"), "if-match", "0"),
    )
    .await;
    assert_eq!(created.status, 200);
    send(
        &app,
        with_header(put("/cluster/kv/orders/2", "again"), "if-match", "0"),
    )
    .await
    .assert_problem(412, "revision-mismatch");
    send(
        &app,
        with_header(put("/cluster/kv/orders/2", "x"), "if-match", "*"),
    )
    .await
    .assert_problem(400, "bad-request");

    // Values over the limit.
    send(&app, put("/cluster/kv/big", "0123456789abcdefXYZ"))
        .await
        .assert_problem(413, "payload-too-large");
    // Keys over the store's limit.
    let long_key = format!("/cluster/kv/{}", "k".repeat(2000));
    send(&app, put(&long_key, "v"))
        .await
        .assert_problem(400, "bad-request");

    // Delete, conditional and not.
    send(
        &app,
        with_header(
            request(Method::DELETE, "/cluster/kv/orders/1", Body::empty()),
            "if-match",
            "1",
        ),
    )
    .await
    .assert_problem(412, "revision-mismatch");
    let deleted = send(
        &app,
        request(Method::DELETE, "/cluster/kv/orders/1", Body::empty()),
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), json!({"key": "orders/1", "deleted": true}));
    assert_eq!(deleted.header("x-catga-revision"), Some("0"));
    send(
        &app,
        request(Method::DELETE, "/cluster/kv/orders/1", Body::empty()),
    )
    .await
    .assert_problem(404, "not-found");
    send(
        &app,
        request(Method::POST, "/cluster/kv/orders/1", Body::empty()),
    )
    .await
    .assert_problem(405, "method-not-allowed");
    node.shutdown().await;
}

#[tokio::test]
async fn locks() {
    let node = single_node(None).await;
    let app = app(
        &node,
        Limits::default().max_lock_wait(Duration::from_secs(5)),
    );

    let granted = send(
        &app,
        post_json(
            "/cluster/locks/outbox/acquire",
            json!({"owner": "a", "ttl_ms": 60000}),
        ),
    )
    .await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    let token = granted.json()["token"].as_u64().unwrap();
    assert_eq!(granted.json()["ttl_ms"], 60000);

    let held = send(
        &app,
        post_json(
            "/cluster/locks/outbox/acquire",
            json!({"owner": "b", "ttl_ms": 1000, "wait_ms": 0}),
        ),
    )
    .await;
    let doc = held.assert_problem(409, "lock-held");
    assert!(held.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(doc["lock"], "outbox");

    // A waiter gets the lock when the holder releases it.
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move {
            send(
                &app,
                post_json(
                    "/cluster/locks/outbox/acquire",
                    json!({"owner": "b", "wait_ms": 5000}),
                ),
            )
            .await
        })
    };
    eventually(Duration::from_secs(5), "the waiter to wait", || {
        let app = app.clone();
        async move {
            let text = send(&app, get("/metrics")).await.body;
            String::from_utf8_lossy(&text).contains("catga_cluster_lock_waits_total 1")
        }
    })
    .await;

    let renewed = send(
        &app,
        post_json(
            "/cluster/locks/outbox/renew",
            json!({"owner": "a", "token": token, "ttl_ms": 60000}),
        ),
    )
    .await;
    assert_eq!(renewed.status, 200);
    assert_eq!(renewed.json(), json!({"token": token, "ttl_ms": 60000}));
    let released = send(
        &app,
        post_json(
            "/cluster/locks/outbox/release",
            json!({"owner": "a", "token": token}),
        ),
    )
    .await;
    assert_eq!(released.status, 200);
    assert_eq!(released.json(), json!({"released": true, "token": token}));

    let second = waiter.await.unwrap();
    assert_eq!(second.status, 200, "{:?}", second.body);
    let second_token = second.json()["token"].as_u64().unwrap();
    assert!(second_token > token, "fencing tokens grow");
    assert_eq!(second.json()["ttl_ms"], 30000, "the default lease");

    // The old token lost the lock.
    send(
        &app,
        post_json(
            "/cluster/locks/outbox/renew",
            json!({"owner": "a", "token": token}),
        ),
    )
    .await
    .assert_problem(409, "lock-lost");
    send(
        &app,
        post_json(
            "/cluster/locks/outbox/release",
            json!({"owner": "a", "token": token}),
        ),
    )
    .await
    .assert_problem(409, "lock-lost");

    // Malformed requests.
    for body in [
        json!({"owner": ""}),
        json!({"owner": "a", "ttl_ms": 0}),
        json!({"owner": "a", "wait_ms": 60000}),
        json!({"owner": "a", "unknown": 1}),
        json!({"ttl_ms": 5}),
        json!([1, 2]),
    ] {
        send(
            &app,
            post_json("/cluster/locks/outbox/acquire", body.clone()),
        )
        .await
        .assert_problem(400, "bad-request");
    }
    // No body and no content type: not JSON at all.
    send(
        &app,
        request(Method::POST, "/cluster/locks/outbox/acquire", Body::empty()),
    )
    .await
    .assert_problem(415, "unsupported-media-type");
    // An empty JSON body is malformed.
    send(
        &app,
        with_header(
            request(Method::POST, "/cluster/locks/outbox/acquire", Body::empty()),
            "content-type",
            "application/json",
        ),
    )
    .await
    .assert_problem(400, "bad-request");
    send(
        &app,
        post_json(
            "/cluster/locks/outbox/renew",
            json!({"owner": "a", "token": "x"}),
        ),
    )
    .await
    .assert_problem(400, "bad-request");

    let text = String::from_utf8_lossy(&send(&app, get("/metrics")).await.body).into_owned();
    assert!(text.contains("catga_cluster_lock_grants_total 2"), "{text}");
    assert!(
        text.contains("catga_cluster_lock_refusals_total 1"),
        "{text}"
    );
    assert!(text.contains("catga_cluster_raft_last_log_index"), "{text}");
    node.shutdown().await;
}

#[tokio::test]
async fn membership_and_leadership() {
    let node = single_node(None).await;
    let app = app(&node, Limits::default());

    let status = send(&app, get("/cluster/status")).await.json();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["lease_valid"], true);
    assert_eq!(
        status["members"],
        json!([{"id": 1, "endpoint": "http://127.0.0.1:1", "voter": true}])
    );
    assert!(status["last_log_index"].as_u64().unwrap() >= 1);

    send(
        &app,
        request(Method::DELETE, "/cluster/members/9", Body::empty()),
    )
    .await
    .assert_problem(404, "not-found");
    send(
        &app,
        request(Method::DELETE, "/cluster/members/nine", Body::empty()),
    )
    .await
    .assert_problem(400, "bad-request");
    send(
        &app,
        post_json("/cluster/members", json!({"id": 2, "endpoint": "ftp://x"})),
    )
    .await
    .assert_problem(400, "bad-request");
    send(
        &app,
        post_json(
            "/cluster/members",
            json!({"id": "two", "endpoint": "http://x:1"}),
        ),
    )
    .await
    .assert_problem(400, "bad-request");

    // Transfer to itself is a no-op; with no other voter there is nobody
    // to hand over to.
    let to_self = send(
        &app,
        post_json("/cluster/leadership/transfer", json!({"to": 1})),
    )
    .await;
    assert_eq!(to_self.status, 200);
    assert_eq!(
        to_self.json()["leader"],
        json!({"id": 1, "endpoint": "http://127.0.0.1:1"})
    );
    send(
        &app,
        request(Method::POST, "/cluster/leadership/transfer", Body::empty()),
    )
    .await
    .assert_problem(400, "bad-request");
    send(
        &app,
        post_json("/cluster/leadership/transfer", json!({"to": 5})),
    )
    .await
    .assert_problem(400, "bad-request");
    node.shutdown().await;
}

#[tokio::test]
async fn members_are_added_and_removed() {
    use catga_cluster_raft::network::memory::MemoryNetwork;
    use catga_cluster_raft::{NodeOptions, Transport};

    let net = MemoryNetwork::new();
    let info = |id: u64| {
        NodeInfo::new(
            NodeId::new(id),
            Endpoint::parse(&format!("http://127.0.0.1:{id}")).unwrap(),
        )
    };
    let first = RaftNode::builder(ClusterConfig::single_node(info(1)))
        .transport(Transport::Memory(net.clone()))
        .start()
        .await
        .unwrap();
    first
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .unwrap();
    // A new node with empty storage waits to be added.
    let second = RaftNode::builder(ClusterConfig::new(info(2), vec![info(1)]).unwrap())
        .transport(Transport::Memory(net))
        .options(NodeOptions::default().bootstrap(false))
        .start()
        .await
        .unwrap();
    let app = app(&first, Limits::default());

    let added = send(
        &app,
        post_json(
            "/cluster/members",
            json!({"id": 2, "endpoint": "http://127.0.0.1:2"}),
        ),
    )
    .await;
    assert_eq!(added.status, 200, "{:?}", added.body);
    assert_eq!(
        added.json()["members"],
        json!([
            {"id": 1, "endpoint": "http://127.0.0.1:1", "voter": true},
            {"id": 2, "endpoint": "http://127.0.0.1:2", "voter": true},
        ])
    );
    second
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();

    let removed = send(
        &app,
        request(Method::DELETE, "/cluster/members/2", Body::empty()),
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(
        removed.json()["members"],
        json!([{"id": 1, "endpoint": "http://127.0.0.1:1", "voter": true}])
    );
    second.stop_now().await;
    first.shutdown().await;
}

#[tokio::test]
async fn raft_rpc_checks_target_and_body() {
    let node = single_node(Some("s3cret")).await;
    let routes = ClusterRoutes::raft(node.clone());
    let app = from_peer(routes.router(), remote());
    let rpc = |target: Option<&str>, auth: bool, body: &'static [u8]| {
        let mut req = request(Method::POST, "/cluster/raft/vote", Body::from(body));
        if let Some(target) = target {
            req.headers_mut()
                .insert("x-catga-target-node", target.parse().unwrap());
        }
        if auth {
            req.headers_mut()
                .insert("authorization", "Bearer s3cret".parse().unwrap());
        }
        req
    };
    send(&app, rpc(Some("1"), false, b""))
        .await
        .assert_problem(401, "unauthorized");
    send(&app, rpc(None, true, b""))
        .await
        .assert_problem(400, "bad-request");
    send(&app, rpc(Some("2"), true, b""))
        .await
        .assert_problem(421, "misdirected");
    send(&app, rpc(Some("1"), true, b"\xff\xff\xff"))
        .await
        .assert_problem(400, "bad-request");
    // Every documented route is served (and the Raft routes are there).
    let doc = routes.openapi();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/cluster/raft/append",
        "/cluster/raft/vote",
        "/cluster/raft/snapshot",
        "/cluster/members",
        "/cluster/members/{id}",
        "/cluster/leadership/transfer",
        "/cluster/locks/{name}/acquire",
        "/cluster/locks/{name}/renew",
        "/cluster/locks/{name}/release",
        "/cluster/kv/{key}",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
    let kv = &doc["paths"]["/cluster/kv/{key}"];
    for method in ["get", "put", "delete"] {
        assert!(kv[method].is_object(), "{method}");
    }
    // Every status a route can answer is documented, so a schema-driven
    // fuzzer finds no undocumented answer.
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect()
    };
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let have = statuses(path, method);
            let protected = op.get("security").is_some();
            if protected {
                for s in ["401", "403"] {
                    assert!(have.contains(&s.to_owned()), "{method} {path}: {s}");
                }
            }
            let json_body = op["requestBody"]["content"]
                .as_object()
                .is_some_and(|c| c.contains_key("application/json"));
            if json_body {
                for s in ["400", "413", "415"] {
                    assert!(have.contains(&s.to_owned()), "{method} {path}: {s}");
                }
            }
            if path.contains('{') {
                assert!(have.contains(&"400".to_owned()), "{method} {path}: 400");
            }
        }
    }
    for (path, method) in [
        ("/cluster/members/{id}", "delete"),
        ("/cluster/kv/{key}", "delete"),
    ] {
        assert!(statuses(path, method).contains(&"400".to_owned()));
    }
    for (path, method) in [
        ("/cluster/leadership/transfer", "post"),
        ("/cluster/members", "post"),
        ("/cluster/members/{id}", "delete"),
    ] {
        let have = statuses(path, method);
        for s in ["400", "502", "503", "508"] {
            assert!(have.contains(&s.to_owned()), "{method} {path}: {s}");
        }
    }
    // The constraints the server enforces.
    let owner = &doc["components"]["schemas"]["AcquireLock"]["properties"]["owner"];
    assert_eq!(owner["minLength"], 1);
    assert_eq!(owner["maxLength"], 256);
    let wait = &doc["components"]["schemas"]["AcquireLock"]["properties"]["wait_ms"];
    assert_eq!(wait["maximum"], 30_000);
    let target = doc["paths"]["/cluster/raft/vote"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "x-catga-target-node")
        .unwrap();
    assert_eq!(target["schema"]["pattern"], "^[0-9]{1,20}$");
    let local = from_peer(routes.router(), loopback());
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let uri = path
                .replace("{command}", "none")
                .replace("{name}", "l")
                .replace("{key}", "k")
                .replace("{id}", "7");
            let method: Method = method.to_uppercase().parse().unwrap();
            let answer = send(&local, request(method.clone(), &uri, Body::empty())).await;
            assert_ne!(answer.status, 405, "{method} {uri}");
            if answer.status == 404 {
                // Only "no such thing" answers, never "no such route".
                let doc = answer.json();
                assert_ne!(doc["detail"], "no such resource", "{method} {uri}");
            }
        }
    }
    node.shutdown().await;
}

#[tokio::test]
async fn raft_rpc_refuses_trailing_bytes_and_forged_elections() {
    let node = single_node(None).await;
    let routes = ClusterRoutes::raft(node.clone());
    let app = from_peer(routes.router(), loopback());
    let rpc = |path: &str, body: Vec<u8>| {
        let mut req = request(Method::POST, path, Body::from(body));
        req.headers_mut()
            .insert("x-catga-target-node", "1".parse().unwrap());
        req
    };
    let term = node.raft().metrics().borrow().current_term;
    let term = u8::try_from(term).unwrap();
    assert!(term < 0x80, "one varint byte");

    // A vote request (term 1, node 1, not committed, no log) with a byte
    // after it, and empty bodies: refused before Raft sees them.
    let doc = send(&app, rpc("/cluster/raft/vote", vec![1, 1, 0, 0, 7]))
        .await
        .assert_problem(400, "bad-request");
    assert!(doc["detail"].as_str().unwrap().contains("follow"), "{doc}");
    for path in [
        "/cluster/raft/append",
        "/cluster/raft/elect",
        "/cluster/raft/read",
    ] {
        send(&app, rpc(path, Vec::new()))
            .await
            .assert_problem(400, "bad-request");
    }

    // Elect requests naming this node, or a stranger, as the sender.
    let doc = send(&app, rpc("/cluster/raft/elect", vec![1, term]))
        .await
        .assert_problem(409, "rpc-refused");
    assert!(
        doc["detail"].as_str().unwrap().contains("names this node"),
        "{doc}"
    );
    let doc = send(&app, rpc("/cluster/raft/elect", vec![9, term]))
        .await
        .assert_problem(409, "rpc-refused");
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("node 9 is not a voter"),
        "{doc}"
    );
    assert_eq!(node.raft().metrics().borrow().current_term, u64::from(term));
    assert!(node.is_leader());

    // The OpenAPI document lists the refusal for elect only.
    let doc = routes.openapi();
    let responses = |path: &str| doc["paths"][path]["post"]["responses"].clone();
    assert!(responses("/cluster/raft/elect")["409"].is_object());
    assert!(responses("/cluster/raft/elect")["400"].is_object());
    assert!(responses("/cluster/raft/vote")["409"].is_null());
    node.shutdown().await;
}
