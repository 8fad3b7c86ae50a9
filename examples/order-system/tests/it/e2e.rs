//! End to end: the example binary as three OS processes on free loopback
//! ports. Orders through every node, a SIGKILLed leader, the outbox's
//! exactly-once processing, a SIGTERMed leader handing over during a stream
//! of writes, and a restart that rejoins. Also the command line: the seed's
//! local cluster with a secret from `Cluster__Secret`, configurations that
//! cannot form one cluster refused at start with exit code 2, and the
//! `certs` and `probe` commands' output and exit codes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::processes::{
    command, count, free_consecutive_ports, free_ports, run_to_end, Cluster, DEADLINE,
};
use crate::ONE_CLUSTER_AT_A_TIME;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_fail_over_hand_over_and_process_orders_once() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    scenario(&mut cluster).await;
}

async fn scenario(cluster: &mut Cluster) {
    for i in 0..3 {
        cluster.spawn(i);
    }
    let leader = cluster.wait_leader().await;

    // `order-system probe`, the containers' health check: 0 on a 2xx, 1 on
    // another answer.
    let probe = |path: &str| {
        let url = cluster.url(leader, path);
        run_to_end(command(cluster.dir.path(), &["probe", &url], &[]), &url)
    };
    let (code, stdout, stderr) = probe("/health/live");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("200 OK"), "{stdout}");
    let (code, stdout, _) = probe("/no-such-route");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("404 Not Found"), "{stdout}");

    // Orders through every node; the leader serves each.
    let mut ids = Vec::new();
    for via in 0..3u64 {
        let answer = cluster
            .post_order(via, &format!("customer-{via}"))
            .await
            .expect("answer");
        assert_eq!(answer.status, 201, "via node {via}: {}", answer.body);
        assert_eq!(answer.served_by, Some(leader), "served by the leader");
        ids.push(answer.body["id"].as_str().unwrap().to_owned());
    }

    // Idempotency-Key: a retried POST creates one order.
    let order =
        serde_json::json!({ "customer": "idem", "items": [{ "sku": "SKU-9", "quantity": 3 }] });
    let mut first = None;
    for _ in 0..2 {
        let request = http::Request::builder()
            .method("POST")
            .uri(cluster.url((leader + 1) % 3, "/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", "order-abc")
            .body(Full::new(Bytes::from(order.to_string())))
            .unwrap();
        let response = cluster.http.request(request).await.unwrap();
        assert!(response.status().is_success());
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(*first.get_or_insert(id.clone()), id);
    }
    ids.push(first.unwrap());

    // SIGKILL the leader: writes succeed again through the survivors.
    cluster.signal(leader, "KILL");
    cluster.wait_exit(leader);
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(a) = cluster.post_order(survivor, "after-crash").await {
            if a.status == 201 {
                ids.push(a.body["id"].as_str().unwrap().to_owned());
                break;
            }
        }
        assert!(Instant::now() < deadline, "no fail-over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    for id in &ids {
        let a = cluster
            .send(
                "GET",
                &cluster.url(survivor, &format!("/orders/{id}")),
                None,
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "order {id} survived the crash");
    }

    // The killed node restarts from disk and rejoins.
    cluster.spawn(leader);
    cluster.wait_leader().await;

    // The outbox processes each order exactly once.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let a = cluster
            .send("GET", &cluster.url(survivor, "/orders"), None)
            .await
            .unwrap();
        let orders = a.body.as_array().cloned().unwrap_or_default();
        let all = orders.len() >= ids.len() && orders.iter().all(|o| o["status"] == "processed");
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders not processed: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each transition is logged by the outbox that made it, after its
    // compare-and-set committed: never twice. (Zero is possible for an order
    // processed by the leader that was killed right after the commit.)
    let logs = cluster.logs();
    let orders = cluster
        .send("GET", &cluster.url(survivor, "/orders"), None)
        .await
        .unwrap();
    for order in orders.body.as_array().unwrap() {
        let id = order["id"].as_str().unwrap();
        assert!(
            order["processing"]["by_node"].is_u64(),
            "order {id} records who processed it"
        );
        let lines = count(&logs, &format!("order processed order_id={id}"));
        assert!(lines <= 1, "order {id} processed {lines} times");
    }

    // SIGTERM the leader during a stream of writes through another node: it
    // hands over, and no write fails.
    let leader = cluster.wait_leader().await;
    let writer_node = (0..3).find(|i| *i != leader).unwrap();
    let writes = {
        let http = cluster.http.clone();
        let url = cluster.url(writer_node, "/orders");
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..60 {
                let body = serde_json::json!({ "customer": format!("stream-{n}"), "items": [{ "sku": "S", "quantity": 1 }] });
                let request = http::Request::builder()
                    .method("POST")
                    .uri(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let status = match http.request(request).await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        (status, String::from_utf8_lossy(&body).into_owned())
                    }
                    Err(e) => (0, e.to_string()),
                };
                statuses.push(status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.signal(leader, "TERM");
    let status = cluster.wait_exit(leader);
    assert!(status.success(), "graceful exit: {status:?}");
    let statuses = writes.await.unwrap();
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        failed.is_empty(),
        "writes failed during the hand-over: {failed:?}"
    );
    let successor = cluster.wait_leader().await;
    assert_ne!(successor, leader);
    // The leaving leader ended its watches properly: no survivor took the
    // crash fast path, the hand-over elected the successor.
    let status = cluster
        .send("GET", &cluster.url(successor, "/cluster/status"), None)
        .await
        .unwrap();
    assert_eq!(
        status.body["failover"]["last"]["path"], "handover",
        "{}",
        status.body
    );
    assert_eq!(status.body["failover"]["last"]["previous_leader"], leader);
}

/// The seed's local cluster (`--cluster --port … --node-id nodeN`, no
/// topology configured) takes its secret from `Cluster__Secret`: the nodes
/// form one cluster (their Raft RPCs carry the secret) and the protected
/// routes require it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_takes_its_secret_from_the_environment() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let ports = free_consecutive_ports(3);
    let base = ports[0].to_string();
    let mut cluster = Cluster::on_ports(ports);
    let secret = vec![("Cluster__Secret".to_owned(), "s3cret".to_owned())];
    for i in 0..3u64 {
        let port = cluster.nodes[&i].port.to_string();
        let name = format!("node{i}");
        let args = [
            "--cluster",
            "--port",
            &port,
            "--node-id",
            &name,
            "--base-port",
            &base,
        ];
        cluster.spawn_with(i, &args, &secret);
    }
    let leader = cluster.wait_leader().await;
    let status = cluster
        .send("GET", &cluster.url(leader, "/cluster/status"), None)
        .await
        .unwrap();
    let members = status.body["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(members.len(), 3, "{}", status.body);
    assert_eq!(status.body["node"]["id"], leader, "node ids are 0, 1, 2");

    // A follower forwards the write to the leader; both need the secret.
    let via = (leader + 1) % 3;
    let key = cluster.url(via, "/cluster/kv/greeting");
    let value = Some(Value::from("hello"));
    for bearer in [None, Some("wrong")] {
        let answer = cluster
            .send_as(bearer, "PUT", &key, value.clone())
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "bearer {bearer:?}: {}", answer.body);
        assert_eq!(answer.body["type"], "unauthorized");
    }
    let put = cluster
        .send_as(Some("s3cret"), "PUT", &key, value.clone())
        .await
        .unwrap();
    assert_eq!(put.status, 200, "{}", put.body);
    let read = cluster.url((leader + 2) % 3, "/cluster/kv/greeting");
    let unauthorized = cluster.send("GET", &read, None).await.unwrap();
    assert_eq!(unauthorized.status, 401);
    let got = cluster
        .send_as(Some("s3cret"), "GET", &read, None)
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, Value::from("hello"));
}

/// Configurations whose nodes could never agree on ids are refused at
/// start: exit code 2 and a message naming the disagreement, instead of
/// nodes that stay candidates forever.
#[test]
fn inconsistent_cluster_configurations_exit_with_code_2() {
    let ports = free_ports(3);
    let url = |i: usize| format!("http://localhost:{}", ports[i]);
    let var = |k: &str, v: String| (k.to_owned(), v);
    let port = ports[1].to_string();
    struct Case<'a> {
        name: &'a str,
        args: Vec<&'a str>,
        vars: Vec<(String, String)>,
        expected: Vec<String>,
    }
    let case = |name, args, vars, expected| Case {
        name,
        args,
        vars,
        expected,
    };
    let cases = [
        case(
            "--node-id with plain-URL members",
            vec!["--cluster", "--port", &port, "--node-id", "node1"],
            vec![
                var("Cluster__LocalNodeEndpoint", url(1)),
                var("Cluster__Members__0", url(0)),
                var("Cluster__Members__1", url(2)),
                var("Cluster__Secret", "s3cret".into()),
            ],
            vec![
                "--node-id node1 makes this node's id 1".into(),
                "plain URLs".into(),
                format!(
                    "as id {}, not 1",
                    catga_cluster_core::NodeId::from_endpoint(
                        &catga_cluster_core::Endpoint::parse(&url(1)).unwrap()
                    )
                ),
            ],
        ),
        case(
            "this node among its members",
            vec!["--port", &port],
            vec![
                var("Cluster__LocalNodeEndpoint", url(1)),
                var("Cluster__Members__0", url(0)),
                var(
                    "Cluster__Members__1",
                    format!("http://127.0.0.1:{}", ports[1]),
                ),
            ],
            vec!["Cluster.Members[1]".into(), "is this node".into()],
        ),
        case(
            "two members with one id",
            vec!["--port", &port, "--node-id", "node1"],
            vec![
                var("Cluster__LocalNodeEndpoint", url(1)),
                var("Cluster__Members__0__Id", "node0".into()),
                var("Cluster__Members__0__Endpoint", url(0)),
                var("Cluster__Members__1__Id", "node0".into()),
                var("Cluster__Members__1__Endpoint", url(2)),
            ],
            vec!["Cluster.Members[1]: id 0 is already used by Cluster.Members[0]".into()],
        ),
        case(
            "the local id equal to a member's",
            vec!["--port", &port, "--node-id", "node0"],
            vec![
                var("Cluster__LocalNodeEndpoint", url(1)),
                var("Cluster__Members__0__Id", "node0".into()),
                var("Cluster__Members__0__Endpoint", url(0)),
            ],
            vec![
                "id 0 is the local node's id".into(),
                "--node-id node0".into(),
            ],
        ),
        case(
            "a partial topology with --cluster",
            vec!["--cluster", "--port", &port, "--node-id", "node1"],
            vec![var("Cluster__Members__0", url(0))],
            vec!["Cluster.LocalNodeEndpoint is not".into()],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for Case {
        name: case,
        args,
        vars,
        expected,
    } in cases
    {
        let mut child = command(dir.path(), &args, &vars)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example binary starts");
        // Refused before anything starts; a node that ran instead would
        // never exit on its own, so the wait is bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{case}: the node started instead of refusing the configuration");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{case}: {stderr}");
        for part in expected {
            assert!(
                stderr.contains(&part),
                "{case}: {part:?} missing from {stderr}"
            );
        }
        assert!(
            !stderr.contains("s3cret"),
            "{case}: the secret leaked: {stderr}"
        );
    }
}

/// `order-system certs` and `probe` as commands: what they print and their
/// exit codes (2 for bad input, as for a bad flag).
#[test]
fn certs_and_probe_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_to_end(command(dir.path(), args, &[]), &args.join(" "));
    let pki = ["certs", "--out", "pki", "--nodes", "2"];

    let (code, stdout, stderr) = run(&pki);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("Cluster__Tls__CertificatePath=pki/node1.pem"),
        "{stdout}"
    );
    for file in ["ca.pem", "ca-key.pem", "node0.pem", "node1-key.pem"] {
        assert!(dir.path().join("pki").join(file).is_file(), "{file}");
    }
    let (code, _, stderr) = run(&pki);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pki/ca.pem already exists"), "{stderr}");
    let (code, stdout, stderr) = run(&[&pki[..], &["--if-missing"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("nothing written"), "{stdout}");
    for bad in [
        &["certs", "--out", "pki", "--nodes", "0"][..],
        &["certs", "--out", "pki", "--nodes", "100"],
        &["certs", "--out", "pki", "--nodes", "2", "--host", "a b"],
        &[
            "certs",
            "--out",
            "pki",
            "--nodes",
            "2",
            "--force",
            "--if-missing",
        ],
    ] {
        let (code, _, stderr) = run(bad);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{bad:?}: {stderr}");
    }

    // Nobody listens on a freed port: no answer, exit code 1.
    let url = format!("https://127.0.0.1:{}/health/ready", free_ports(1)[0]);
    let (code, _, stderr) = run(&["probe", &url, "--ca", "pki/ca.pem"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    let (code, _, stderr) = run(&["probe", &url]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("give --ca FILE"), "{stderr}");
}
