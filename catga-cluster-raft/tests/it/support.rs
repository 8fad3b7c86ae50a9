//! A cluster of Raft nodes in one process, over the in-memory network.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::network::memory::MemoryNetwork;
use catga_cluster_raft::{NodeOptions, RaftNode, Storage, Transport};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn node_info(i: u64) -> NodeInfo {
    NodeInfo::new(
        NodeId::new(i),
        Endpoint::parse(&format!("http://node{i}.test:{}", 5000 + i)).unwrap(),
    )
}

pub fn config(i: u64, members: &[u64]) -> ClusterConfig {
    let others = members
        .iter()
        .filter(|m| **m != i)
        .map(|m| node_info(*m))
        .collect();
    ClusterConfig::new(node_info(i), others).unwrap()
}

pub struct Cluster {
    pub net: MemoryNetwork,
    pub nodes: BTreeMap<u64, RaftNode>,
    pub members: Vec<u64>,
    pub dir: Option<tempfile::TempDir>,
    pub options: NodeOptions,
    /// Adjusts each node's configuration (timings, secret) before it starts.
    pub configure: fn(&mut ClusterConfig),
    changed: Arc<Notify>,
}

impl Cluster {
    pub async fn start(n: u64, durable: bool) -> Cluster {
        Cluster::start_with(n, durable, NodeOptions::default()).await
    }

    pub async fn start_with(n: u64, durable: bool, options: NodeOptions) -> Cluster {
        Cluster::start_configured(n, durable, options, |_| {}).await
    }

    /// [`start_with`](Cluster::start_with), each node's configuration
    /// adjusted by `configure` first.
    pub async fn start_configured(
        n: u64,
        durable: bool,
        options: NodeOptions,
        configure: fn(&mut ClusterConfig),
    ) -> Cluster {
        let mut cluster = Cluster {
            net: MemoryNetwork::new(),
            nodes: BTreeMap::new(),
            members: (0..n).collect(),
            dir: durable.then(|| tempfile::tempdir().unwrap()),
            options,
            configure,
            changed: Arc::new(Notify::new()),
        };
        for i in 0..n {
            cluster.start_node(i).await;
        }
        cluster
    }

    pub fn data_dir(&self, i: u64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join(format!("node{i}")))
    }

    pub async fn start_node(&mut self, i: u64) -> RaftNode {
        self.start_node_with(i, self.options.clone()).await
    }

    pub async fn start_node_with(&mut self, i: u64, options: NodeOptions) -> RaftNode {
        let storage = match self.data_dir(i) {
            Some(dir) => Storage::Disk(dir),
            None => Storage::Memory,
        };
        let mut config = config(i, &self.members);
        (self.configure)(&mut config);
        let node = RaftNode::builder(config)
            .transport(Transport::Memory(self.net.clone()))
            .storage(storage)
            .options(options)
            .start()
            .await
            .unwrap_or_else(|e| panic!("node {i} failed to start: {e}"));
        self.watch(&node);
        self.nodes.insert(i, node.clone());
        node
    }

    /// Wakes condition waiters on every leadership or Raft metrics change.
    fn watch(&self, node: &RaftNode) {
        let mut leadership = node.subscribe();
        let mut metrics = node.raft().metrics();
        let mut applied = node.state_machine().subscribe();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = leadership.changed() => if r.is_err() { break },
                    r = metrics.changed() => if r.is_err() { break },
                    r = applied.changed() => if r.is_err() { break },
                }
                changed.notify_waiters();
            }
        });
    }

    /// Waits until `cond` holds, re-checking on every change, up to the
    /// deadline.
    pub async fn wait_until(&self, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }

    /// The running node whose `is_leader()` holds, if exactly one.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_leader())
            .map(|(i, _)| *i)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits for one leader that every running node knows.
    pub async fn wait_for_leader(&self) -> u64 {
        self.wait_until("a leader that all nodes agree on", |c| {
            c.leader().is_some_and(|l| {
                c.nodes
                    .values()
                    .all(|n| n.leadership().leader_id() == Some(NodeId::new(l)))
            })
        })
        .await;
        self.leader().unwrap()
    }

    pub fn node(&self, i: u64) -> &RaftNode {
        &self.nodes[&i]
    }

    pub async fn stop_now(&mut self, i: u64) {
        let node = self.nodes.remove(&i).unwrap();
        node.stop_now().await;
    }

    pub async fn stop_all(&mut self) {
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.stop_now().await;
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        self.wait_until(&format!("all nodes applied {index}"), |c| {
            c.nodes
                .values()
                .all(|n| n.state_machine().last_applied().map_or(0, |l| l.index) >= index)
        })
        .await;
    }
}

/// Retries `f` with a short pause until it succeeds or the deadline passes.
/// For operations that fail while an election is under way.
pub async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f().await {
            Ok(t) => return t,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what} failed: {e}"),
        }
    }
}
