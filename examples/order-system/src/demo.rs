#![allow(clippy::print_stdout)] // the demo narrates on stdout
//! `order-system demo`: a 3-node cluster in one process over real loopback
//! HTTP, narrated.

use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::protocol::SERVED_BY_HEADER;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::app::RunningNode;
use crate::orders::{Order, OrderStatus};

type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// A tiny HTTP client for the narration.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: u16,
    served_by: Option<String>,
    body: Bytes,
}

impl Http {
    fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn send(&self, method: &str, url: &str, body: Option<&str>) -> Result<Answer, DemoError> {
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await??;
        let status = response.status().as_u16();
        let served_by = response
            .headers()
            .get(SERVED_BY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            served_by,
            body,
        })
    }
}

fn step(n: u32, title: &str) {
    println!();
    println!("[{n}] {title}");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Waits until one node leads and every running node knows it.
async fn wait_for_leader(
    nodes: &[Option<RunningNode>],
    deadline: Duration,
) -> Result<(usize, u64), DemoError> {
    let until = Instant::now() + deadline;
    loop {
        let leader = nodes.iter().enumerate().find_map(|(i, n)| {
            n.as_ref()
                .filter(|n| n.node.is_leader())
                .map(|n| (i, n.node.leadership().term))
        });
        if let Some((i, term)) = leader {
            let agreed = nodes
                .iter()
                .flatten()
                .all(|n| n.node.leadership().leader_id().map(|l| l.get()) == Some(i as u64));
            if agreed {
                return Ok((i, term));
            }
        }
        if Instant::now() > until {
            return Err("no leader was elected in time".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs the demo; `Ok` means every step did what it says.
pub async fn run() -> Result<(), DemoError> {
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    let mut infos = Vec::new();
    for i in 0..3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = Endpoint::parse(&format!("http://{}", listener.local_addr()?))?;
        infos.push(NodeInfo::new(NodeId::new(i), endpoint));
        listeners.push(listener);
    }
    let config_of = |i: usize| -> Result<ClusterConfig, DemoError> {
        let others = infos
            .iter()
            .filter(|n| n.id.get() != i as u64)
            .cloned()
            .collect();
        let mut config = ClusterConfig::new(infos[i].clone(), others)?;
        config.persistent_state_path = Some(dir.path().join(format!("node-{i}")));
        Ok(config)
    };

    println!("catga-cluster demo: the seed's OrderSystem on three nodes");
    step(
        1,
        "Starting three nodes over loopback HTTP, durable state in a temporary directory",
    );
    let started = Instant::now();
    let mut nodes: Vec<Option<RunningNode>> = Vec::new();
    let mut outboxes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let node = RunningNode::start(config_of(i)?, listener).await?;
        outboxes.push(node.outbox.clone());
        println!("    node {i} listens on {}", infos[i].endpoint);
        nodes.push(Some(node));
    }
    let (leader, term) = wait_for_leader(&nodes, Duration::from_secs(10)).await?;
    println!(
        "    node {leader} elected leader in {} (term {term})",
        ms(started.elapsed())
    );

    let http = Http::new();
    let follower = (0..3).find(|i| *i != leader).ok_or("no follower")?;
    step(2, &format!("POST /orders to follower node {follower}"));
    let order_json = r#"{"customer":"alice","items":[{"sku":"BOOK-42","quantity":2}]}"#;
    let answer = http
        .send(
            "POST",
            &format!("{}/orders", infos[follower].endpoint),
            Some(order_json),
        )
        .await?;
    if answer.status != 201 {
        return Err(format!(
            "order not created: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    let order: Order = serde_json::from_slice(&answer.body)?;
    println!(
        "    201 Created: order {} ({}), served by node {}",
        order.id,
        order.customer,
        answer.served_by.as_deref().unwrap_or("?")
    );
    if answer.served_by.as_deref() != Some(leader.to_string().as_str()) {
        return Err("the order was not served by the leader".into());
    }

    step(
        3,
        &format!(
            "Stopping leader node {leader} abruptly (no hand-over; its process lives on, \
             so the timers elect, not the crash fast path of a process that dies)"
        ),
    );
    let killed_at = Instant::now();
    if let Some(n) = nodes[leader].take() {
        n.kill().await;
    }
    let survivor = follower;
    let fail_over = loop {
        let answer = http
            .send(
                "POST",
                &format!("{}/orders", infos[survivor].endpoint),
                Some(r#"{"customer":"bob","items":[{"sku":"PEN-7","quantity":1}]}"#),
            )
            .await;
        if let Ok(a) = answer {
            if a.status == 201 {
                let second = serde_json::from_slice::<Order>(&a.body).ok();
                break (a.served_by, killed_at.elapsed(), second);
            }
        }
        if killed_at.elapsed() > Duration::from_secs(10) {
            return Err("no fail-over within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let path = fail_over
        .0
        .as_deref()
        .and_then(|id| id.parse::<usize>().ok())
        .and_then(|id| nodes.get(id)?.as_ref())
        .and_then(|n| n.node.failover_status().last)
        .map_or("?", |f| f.path.as_str());
    println!(
        "    node {} leads now (elected by the {path} path); a write was accepted again {} after the stop",
        fail_over.0.as_deref().unwrap_or("?"),
        ms(fail_over.1)
    );

    step(4, "The first order survived the fail-over");
    let answer = http
        .send(
            "GET",
            &format!("{}/orders/{}", infos[survivor].endpoint, order.id),
            None,
        )
        .await?;
    if answer.status != 200 {
        return Err(format!("order {} is gone: {}", order.id, answer.status).into());
    }
    println!("    GET /orders/{} on node {survivor}: 200 OK", order.id);

    step(
        5,
        "The outbox singleton (on the leader only) processes each order exactly once",
    );
    let ids: Vec<String> = std::iter::once(order.id.clone())
        .chain(fail_over.2.map(|o| o.id))
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    for id in &ids {
        let processed = loop {
            let answer = http
                .send(
                    "GET",
                    &format!("{}/orders/{id}", infos[survivor].endpoint),
                    None,
                )
                .await?;
            let current: Order = serde_json::from_slice(&answer.body)?;
            if current.status == OrderStatus::Processed {
                break current;
            }
            if Instant::now() > until {
                return Err(format!("the outbox did not process order {id}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(p) = &processed.processing {
            println!(
                "    order {id}: processed by node {} under leadership fence {}:{}",
                p.by_node, p.fence_term, p.fence_index
            );
        }
    }
    let total: u64 = outboxes.iter().map(|o| o.processed()).sum();
    println!(
        "    outbox transitions on all nodes, the crashed one included: {total} for {} orders",
        ids.len()
    );
    if total != ids.len() as u64 {
        return Err("an order was processed more or less than once".into());
    }

    step(
        6,
        "Graceful hand-over: the leader steps down for a successor",
    );
    let (leader, _) = wait_for_leader(&nodes, Duration::from_secs(10)).await?;
    let node = nodes[leader]
        .as_ref()
        .ok_or("leader vanished")?
        .node
        .clone();
    let mut rx = node.subscribe();
    let handing = tokio::spawn(async move { node.transfer_leadership(None).await });
    let _ = rx.wait_for(|l| !l.is_leader()).await;
    let opened = Instant::now();
    let (new_leader, _) = wait_for_leader(&nodes, Duration::from_secs(10)).await?;
    let window = opened.elapsed();
    handing.await??;
    println!(
        "    node {leader} handed over to node {new_leader}; leaderless window {}",
        ms(window)
    );

    step(7, "Stopping the cluster");
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
    println!("    done: all steps passed");
    Ok(())
}
