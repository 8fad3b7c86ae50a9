//! The workload against a real three-node cluster in this process (the
//! example application over loopback TCP): its history is linearizable and
//! keeps every invariant, without faults and through a leader crash.
//!
//! `CATGA_WORKLOAD_SEED` replays a seed; `CATGA_WORKLOAD_SECS` runs longer;
//! `CATGA_WORKLOAD_DUMP` writes the history to the temporary directory even
//! when it passes (a failing one always is).

use std::time::{Duration, Instant};

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_tests::checker::{check_with, CheckOptions};
use catga_cluster_tests::history::{FinalReads, History, Stats};
use catga_cluster_tests::invariants::check_all;
use catga_cluster_tests::workload::{read_back, Workload, WorkloadConfig};
use order_system::app::RunningNode;

struct Cluster {
    endpoints: Vec<String>,
    nodes: Vec<Option<RunningNode>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let infos: Vec<NodeInfo> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                NodeInfo::new(
                    NodeId::new(i as u64),
                    Endpoint::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap(),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let others = infos
                .iter()
                .filter(|n| n.id.get() != i as u64)
                .cloned()
                .collect();
            let mut config = ClusterConfig::new(infos[i].clone(), others).unwrap();
            config.persistent_state_path = Some(dir.path().join(format!("node-{i}")));
            nodes.push(Some(RunningNode::start(config, listener).await.unwrap()));
        }
        let endpoints = infos
            .iter()
            .map(|i| i.endpoint.to_string().trim_end_matches('/').to_owned())
            .collect();
        Cluster {
            endpoints,
            nodes,
            _dir: dir,
        }
    }

    fn live(&self) -> impl Iterator<Item = &RunningNode> {
        self.nodes.iter().flatten()
    }

    /// Kills the leader abruptly; returns its index.
    async fn kill_leader(&mut self) -> usize {
        let leader = self.leader().await;
        self.nodes[leader].take().unwrap().kill().await;
        leader
    }

    async fn leader(&self) -> usize {
        self.settled().await;
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.node.is_leader()))
            .unwrap()
    }

    /// Waits until every node follows one leader.
    async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leader = self
                .nodes
                .iter()
                .position(|n| n.as_ref().is_some_and(|n| n.node.is_leader()));
            if let Some(leader) = leader {
                if self
                    .live()
                    .all(|n| n.node.leadership().leader.map(|l| l.id.get()) == Some(leader as u64))
                {
                    return;
                }
            }
            if Instant::now() >= deadline {
                let views: Vec<_> = self
                    .nodes
                    .iter()
                    .map(|n| n.as_ref().map(|n| n.node.leadership()))
                    .collect();
                panic!("no leader within 20 s: {views:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One cluster at a time: two clusters' elections and workloads on a small
/// machine slow each other down.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Checks a run's history and final reads; dumps the history on failure.
fn check(history: &History, finals: &FinalReads, seed: u64) -> Stats {
    let stats = history.stats();
    eprintln!(
        "calls: {}",
        serde_json::to_string_pretty(&stats).unwrap_or_default()
    );
    let started = Instant::now();
    let report = check_with(history, Some(finals), &CheckOptions::default());
    eprintln!(
        "linearizability ({:?}): {}",
        started.elapsed(),
        report.summary()
    );
    let violations = check_all(history, Some(finals));
    if !report.passed()
        || !violations.is_empty()
        || std::env::var_os("CATGA_WORKLOAD_DUMP").is_some()
    {
        let path = std::env::temp_dir().join(format!("catga-workload-{seed}.json"));
        let _ = history.dump(&path);
        eprintln!("history written to {}", path.display());
    }
    assert!(report.passed(), "{}", report.summary());
    assert!(violations.is_empty(), "{violations:#?}");
    stats
}

fn seed_and_secs(default_secs: u64) -> (u64, u64) {
    let seed = env_u64("CATGA_WORKLOAD_SEED").unwrap_or_else(|| fastrand::u64(..));
    let secs = env_u64("CATGA_WORKLOAD_SECS").unwrap_or(default_secs);
    eprintln!("workload seed {seed} (replay with CATGA_WORKLOAD_SEED={seed}), {secs} s");
    (seed, secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_on_a_healthy_cluster_is_linearizable_and_keeps_the_invariants() {
    let _one = ONE_CLUSTER.lock().await;
    let (seed, secs) = seed_and_secs(4);
    let cluster = Cluster::start(3).await;
    cluster.settled().await;
    let config = WorkloadConfig {
        seed,
        ..WorkloadConfig::new(cluster.endpoints.clone())
    };
    let running = Workload::start(config.clone());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let history = running.stop().await;
    let finals = read_back(&config, &history).await;
    let stats = check(&history, &finals, seed);

    // Without faults, every kind of call is exercised and succeeds.
    for kind in [
        "kv_read",
        "kv_put",
        "kv_cas",
        "lock_acquire",
        "lock_release",
        "order_create",
    ] {
        let ok = stats
            .calls
            .get(kind)
            .and_then(|c| c.get("ok"))
            .copied()
            .unwrap_or(0);
        assert!(ok > 0, "no {kind} succeeded: {stats:?}");
    }
    assert!(stats.grants > 0 && stats.fences_accepted > 0, "{stats:?}");
    assert!(
        stats.increments.get("acknowledged").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    for node in cluster.nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

/// The leader killed mid-run: calls in flight get unknown outcomes, which
/// the checker takes as such, and the survivors carry on.
///
/// (Not restarted: `RunningNode::kill` aborts the server's accept loop, but
/// connections it accepted live on, answering from the stopped node, so a
/// peer's pooled connection would never reach a node restarted on the same
/// port.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_through_a_leader_crash_is_linearizable_and_keeps_the_invariants() {
    let _one = ONE_CLUSTER.lock().await;
    let (seed, secs) = seed_and_secs(4);
    let mut cluster = Cluster::start(3).await;
    cluster.settled().await;
    let config = WorkloadConfig {
        seed,
        ..WorkloadConfig::new(cluster.endpoints.clone())
    };
    let running = Workload::start(config.clone());
    tokio::time::sleep(Duration::from_millis(secs * 400)).await;
    let killed = cluster.kill_leader().await;
    eprintln!("killed node {killed} at {:?}", running.elapsed());
    tokio::time::sleep(Duration::from_millis(secs * 600)).await;
    let history = running.stop().await;
    cluster.settled().await;
    let survivors = WorkloadConfig {
        endpoints: (0..3)
            .filter(|i| *i != killed)
            .map(|i| cluster.endpoints[i].clone())
            .collect(),
        ..config
    };
    let finals = read_back(&survivors, &history).await;
    let stats = check(&history, &finals, seed);
    let unknown: u64 = stats.calls.values().filter_map(|c| c.get("unknown")).sum();
    eprintln!("{unknown} calls with unknown outcomes");
    for node in cluster.nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}
