//! The cost of the leader check on the synchronous path: `poll_ready` +
//! `call` + one poll of the response future, with a noop waker (no tokio
//! scheduling in the measurement), for
//!
//! * the bare inner service (`service_fn` answering a ready future),
//! * `LeaderOnly` over it with a leading `ManualCoordinator`,
//! * `LeaderOnly` over it with a real single-node `RaftNode` leader,
//! * `ForwardToLeader`'s leader path (`PlainPolicy`) with both
//!   coordinators,
//! * and `is_leader()` alone for both coordinators, and the clock read that
//!   the Raft node's lease check adds.
//!
//! Run with `cargo bench -p catga-cluster-tower --bench middleware_overhead`.
#![allow(missing_docs, clippy::print_stdout)]

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{ClusterCoordinator, Endpoint, ForwardRequest, NodeId, NodeInfo};
use catga_cluster_raft::RaftNode;
use catga_cluster_tower::{ForwardToLeaderLayer, LeaderOnlyLayer, PlainPolicy};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, Layer, Service};

/// Requests that did not complete on the synchronous path, or were refused.
/// Must stay 0, or the figures measure the wrong path.
static MISSES: AtomicU64 = AtomicU64::new(0);

fn inner(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>>
       + Clone
       + Send
       + 'static {
    service_fn(|n: u64| ready(Ok::<_, Infallible>(n)))
}

/// A forwarder that is never called on the leader path.
fn forwarder() -> impl Service<
    ForwardRequest<u64>,
    Response = u64,
    Error = Infallible,
    Future = Ready<Result<u64, Infallible>>,
> + Clone
       + Send
       + 'static {
    service_fn(|f: ForwardRequest<u64>| ready(Ok::<_, Infallible>(f.request)))
}

/// One request: readiness, the call, one poll of the response future.
#[inline]
fn once<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>, n: u64) -> u64 {
    if !matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))) {
        MISSES.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let future = pin!(svc.call(n));
    match future.poll(cx) {
        Poll::Ready(Ok(v)) => v,
        _ => {
            MISSES.fetch_add(1, Ordering::Relaxed);
            0
        }
    }
}

fn bench_service<S: Service<u64, Response = u64>>(c: &mut Criterion, name: &str, mut svc: S) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(once(&mut svc, &mut cx, black_box(n)))
        })
    });
}

fn raft_leader(rt: &tokio::runtime::Runtime) -> RaftNode {
    rt.block_on(async {
        let me = NodeInfo::new(
            NodeId::new(1),
            Endpoint::parse("http://127.0.0.1:1").unwrap(),
        );
        let node = RaftNode::builder(ClusterConfig::single_node(me))
            .start()
            .await
            .expect("the single-node Raft node starts");
        node.wait_for_leadership(Duration::from_secs(10))
            .await
            .expect("a single node elects itself");
        node
    })
}

fn overhead(c: &mut Criterion) {
    // The Raft node's tasks (heartbeats, the lease watcher) run on their own
    // thread; the measured calls run on this one.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let raft = raft_leader(&rt);
    let manual = ManualCoordinator::new_leader();
    assert!(raft.is_leader() && manual.is_leader());

    bench_service(c, "bare service_fn", inner());
    bench_service(
        c,
        "LeaderOnly / ManualCoordinator",
        LeaderOnlyLayer::new(manual.clone()).layer(inner()),
    );
    bench_service(
        c,
        "LeaderOnly / RaftNode",
        LeaderOnlyLayer::new(raft.clone()).layer(inner()),
    );
    bench_service(
        c,
        "ForwardToLeader leader path / ManualCoordinator",
        ForwardToLeaderLayer::with_forwarder(manual.clone(), forwarder())
            .policy(PlainPolicy)
            .layer(inner()),
    );
    bench_service(
        c,
        "ForwardToLeader leader path / RaftNode",
        ForwardToLeaderLayer::with_forwarder(raft.clone(), forwarder())
            .policy(PlainPolicy)
            .layer(inner()),
    );
    c.bench_function("is_leader() / ManualCoordinator", |b| {
        b.iter(|| black_box(black_box(&manual).is_leader()))
    });
    c.bench_function("is_leader() / RaftNode", |b| {
        b.iter(|| black_box(black_box(&raft).is_leader()))
    });
    // The part of the Raft node's check that the manual one skips: its
    // snapshot has a lease deadline, compared with the clock.
    c.bench_function("tokio::time::Instant::now()", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });

    let misses = MISSES.load(Ordering::Relaxed);
    assert_eq!(misses, 0, "{misses} calls were refused or did not complete");
    assert!(
        raft.is_leader(),
        "the Raft node lost its lease during the run"
    );
    rt.block_on(raft.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = overhead
}
criterion_main!(benches);
