//! Durable log append + fsync: the write-ahead log behind `LogStore` against
//! redb, on this machine.
//!
//! Each operation appends one batch of entries (1, 16 or 64 entries of about
//! 200 encoded bytes) and makes it durable before the next starts:
//!
//! * WAL: `LogStore::append` through openraft's `blocking_append`, on a tokio
//!   runtime; one record and one `fdatasync` per batch, run on the blocking
//!   pool (the real code path, including the hand-off to the pool).
//! * redb: one write transaction per batch (`Durability::Immediate`, the
//!   default), called directly.
//!
//! It also times the small atomically replaced files (vote, committed):
//! write temp, fsync, rename, fsync the directory.
//!
//! ```text
//! cargo bench -p catga-cluster-raft --bench store_append
//! STORE_BENCH_DIR=/some/disk STORE_BENCH_ROUNDS=5 cargo bench -p catga-cluster-raft --bench store_append
//! ```
//!
//! The output is a Markdown table (`docs/benchmarks.md` keeps the figures).
#![allow(clippy::print_stdout)] // a benchmark report goes to stdout

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use catga_cluster_core::NodeId;
use catga_cluster_raft::log_store::{LogStore, LogStoreOptions, StoreIdentity};
use catga_cluster_raft::types::{Command, Entry, LogId, Operation, Vote};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use redb::{Database, TableDefinition};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// (entries per batch, batches per round)
const CASES: [(u64, usize); 3] = [(1, 1500), (16, 400), (64, 150)];
const WARMUP: usize = 20;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, NodeId::new(1)), index),
        payload: EntryPayload::Normal(Command {
            request_id: Some(format!("req-{index:012}")),
            leader_time_ms: 1_700_000_000_000 + index,
            op: Operation::Put {
                key: format!("service/instances/{:08}", index % 10_000),
                value: vec![b'x'; 140],
                expected_revision: None,
            },
        }),
    }
}

fn batches(batch: u64, count: usize, first_index: u64) -> Vec<Vec<Entry>> {
    (0..count as u64)
        .map(|b| {
            let first = first_index + b * batch;
            (first..first + batch).map(entry).collect()
        })
        .collect()
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    total: Duration,
    entries: u64,
}

impl Samples {
    fn add(&mut self, took: Duration, entries: u64) {
        self.latencies.push(took);
        self.total += took;
        self.entries += entries;
    }

    fn row(&mut self, name: &str, batch: u64) -> String {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1e6
        };
        let secs = self.total.as_secs_f64();
        format!(
            "| {name} | {batch} | {:.0} | {:.0} | {:.0} | {:.0} |",
            n as f64 / secs,
            self.entries as f64 / secs,
            pct(0.50),
            pct(0.99),
        )
    }
}

fn bench_wal(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    batch: u64,
    count: usize,
    out: &mut Samples,
) {
    let identity = StoreIdentity::new(1, "bench");
    let mut store =
        LogStore::open_with(dir, &identity, LogStoreOptions::new()).expect("open the log store");
    let mut next = 1;
    for b in batches(batch, WARMUP, next) {
        rt.block_on(store.blocking_append(b)).expect("append");
    }
    next += WARMUP as u64 * batch;
    for b in batches(batch, count, next) {
        let start = Instant::now();
        rt.block_on(store.blocking_append(b)).expect("append");
        out.add(start.elapsed(), batch);
    }
}

fn bench_redb(dir: &Path, batch: u64, count: usize, out: &mut Samples) {
    let db = Database::create(dir.join("log.redb")).expect("create the redb database");
    let append = |entries: Vec<Entry>| {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(LOG).expect("open table");
            for e in &entries {
                let bytes = postcard::to_stdvec(e).expect("encode");
                table
                    .insert(e.log_id.index, bytes.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    };
    let mut next = 1;
    for b in batches(batch, WARMUP, next) {
        append(b);
    }
    next += WARMUP as u64 * batch;
    for b in batches(batch, count, next) {
        let start = Instant::now();
        append(b);
        out.add(start.elapsed(), batch);
    }
}

fn bench_small_files(rt: &tokio::runtime::Runtime, dir: &Path, count: usize) -> (Samples, Samples) {
    let identity = StoreIdentity::new(1, "bench");
    let options = LogStoreOptions::new().committed_flush_interval(1);
    let mut store = LogStore::open_with(dir, &identity, options).expect("open the log store");
    let mut votes = Samples::default();
    let mut committed = Samples::default();
    for i in 0..count as u64 {
        let start = Instant::now();
        rt.block_on(store.save_vote(&Vote::new(i + 1, NodeId::new(1))))
            .expect("save vote");
        votes.add(start.elapsed(), 1);
        let start = Instant::now();
        rt.block_on(store.save_committed(Some(LogId::new(
            CommittedLeaderId::new(1, NodeId::new(1)),
            i,
        ))))
        .expect("save committed");
        committed.add(start.elapsed(), 1);
    }
    (votes, committed)
}

fn main() {
    let base: PathBuf = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rounds: usize = std::env::var("STORE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let root = tempfile::Builder::new()
        .prefix("store-append-bench-")
        .tempdir_in(&base)
        .expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let encoded = postcard::to_stdvec(&entry(12_345)).expect("encode").len();
    println!(
        "store_append: {} cores, directory {}, {rounds} rounds, entry = {encoded} bytes encoded",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        root.path().display(),
    );
    println!();
    println!("| store | entries/append | appends/s | entries/s | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut run = 0;
    for (batch, count) in CASES {
        let mut wal = Samples::default();
        let mut redb = Samples::default();
        // Alternate the two stores so that drift of the disk hits both.
        for _ in 0..rounds {
            run += 1;
            let dir = root.path().join(format!("wal-{run}"));
            bench_wal(&rt, &dir, batch, count, &mut wal);
            let dir = root.path().join(format!("redb-{run}"));
            std::fs::create_dir_all(&dir).expect("create dir");
            bench_redb(&dir, batch, count, &mut redb);
        }
        println!("{}", wal.row("WAL (LogStore)", batch));
        println!("{}", redb.row("redb", batch));
    }
    let (mut votes, mut committed) =
        bench_small_files(&rt, &root.path().join("small-files"), 300 * rounds);
    println!("{}", votes.row("save_vote (atomic file)", 1));
    println!(
        "{}",
        committed.row("save_committed, flush interval 1 (atomic file)", 1)
    );
}
