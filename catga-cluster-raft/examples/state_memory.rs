//! What the state machine holds in memory under a put load, and what a
//! snapshot adds: the figures of `docs/benchmarks.md`, "Memory".
//!
//! ```text
//! cargo run --release -p catga-cluster-raft --example state_memory -- [KEYS] [OPTIONS]
//! ```
//!
//! It applies `KEYS` puts (600,000 by default) of new keys shaped like the
//! benchmark's (`bench/c12/123456`, 64 interleaved runs of increasing
//! numbers) with 128-byte values, 256 to a batch as group commit makes
//! them, straight to a state machine with a durable snapshot store; then
//! builds a snapshot, first alone and then while more puts go on; reads it
//! back as for a lagging follower; and restores a state machine from it in
//! a fresh process. It reports the resident set size (`VmRSS`) after each
//! step and its peak (`VmHWM`, reset before each step), so it needs Linux.
//!
//! Options:
//!
//! * `--no-ids`: the puts carry no request id, so the de-duplication
//!   table stays empty (the key-value store alone);
//! * `--dedup N`: remember at most `N` request ids (default 100,000, the
//!   default of `StateMachineConfig::dedup_max_entries`);
//! * `--random-keys`: keys in random order (`bench/` and 16 hex digits);
//! * `--overwrite N`: the puts overwrite a fixed set of `N` keys, in ten
//!   rounds each followed by a snapshot, and the resident size is printed
//!   after each round: it must stay flat once the de-duplication table is
//!   full (the snapshot and read-back steps are skipped).
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use catga_cluster_raft::prelude::NodeId;
use catga_cluster_raft::snapshot_store::SnapshotStore;
use catga_cluster_raft::state_machine::{StateMachineConfig, StateMachineStore};
use catga_cluster_raft::types::{Command, Entry, Operation};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};

const MIB: f64 = 1024.0 * 1024.0;

/// A field of `/proc/self/status`, in MiB.
fn status(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn rss() -> f64 {
    status("VmRSS:")
}

fn peak() -> f64 {
    status("VmHWM:")
}

/// Starts a new peak at the current resident size.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Options {
    keys: u64,
    ids: bool,
    dedup: usize,
    random: bool,
    overwrite: Option<u64>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        keys: 600_000,
        ids: true,
        dedup: StateMachineConfig::default().dedup_max_entries,
        random: false,
        overwrite: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-ids" => options.ids = false,
            "--random-keys" => options.random = true,
            "--overwrite" => {
                let n = args.next().ok_or("--overwrite needs a number")?;
                let n: u64 = n.parse().map_err(|e| format!("--overwrite {n}: {e}"))?;
                options.overwrite = Some(n.max(1));
            }
            "--dedup" => {
                let n = args.next().ok_or("--dedup needs a number")?;
                options.dedup = n.parse().map_err(|e| format!("--dedup {n}: {e}"))?;
            }
            keys => options.keys = keys.parse().map_err(|e| format!("{keys}: {e}"))?,
        }
    }
    Ok(options)
}

/// Put number `i`: its key, and its request id (shaped like the node's).
fn put(i: u64, options: &Options) -> Command {
    let key = if let Some(n) = options.overwrite {
        format!("bench/c{}/{}", i % 64, i % n)
    } else if options.random {
        let scrambled = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!("bench/{scrambled:016x}")
    } else {
        format!("bench/c{}/{}", i % 64, i)
    };
    Command {
        request_id: options
            .ids
            .then(|| format!("1-{:016x}-{i:x}", 0x5eed_5eed_5eed_5eedu64)),
        leader_time_ms: 1_000_000 + i,
        op: Operation::Put {
            key,
            value: vec![b'v'; 128],
            expected_revision: None,
        },
    }
}

/// Applies puts `from..to`, 256 to an entry.
async fn apply(sm: &mut StateMachineStore, from: u64, to: u64, options: &Options) {
    let leader = CommittedLeaderId::new(1, NodeId::new(1));
    let mut i = from;
    while i < to {
        let end = (i + 256).min(to);
        let batch = (i..end).map(|i| put(i, options)).collect();
        let entry = Entry {
            log_id: LogId::new(leader, end - 1),
            payload: EntryPayload::Normal(Command {
                request_id: None,
                leader_time_ms: 1_000_000 + end,
                op: Operation::Batch(batch),
            }),
        };
        sm.apply([entry]).await.expect("apply");
        i = end;
    }
}

fn restore(dir: &Path) {
    let before = rss();
    reset_peak();
    let started = Instant::now();
    let store = SnapshotStore::open(dir).expect("snapshot store");
    let sm = StateMachineStore::open(store, StateMachineConfig::default()).expect("restore");
    println!(
        "restored in a fresh process in {:.2?}: {:.1} MiB resident ({:.1} before), peak {:.1} MiB \
         (the file's bytes and the state at once); {sm:?}",
        started.elapsed(),
        rss(),
        before,
        peak(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !Path::new("/proc/self/status").exists() {
        return Err("this example reads /proc/self/status: it runs on Linux".into());
    }
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--restore") {
        restore(Path::new(
            &args.next().ok_or("--restore needs a directory")?,
        ));
        return Ok(());
    }
    let options = options()?;
    let dir = tempfile::tempdir()?;
    let config = StateMachineConfig {
        dedup_max_entries: options.dedup,
        ..StateMachineConfig::default()
    };
    let mut sm = StateMachineStore::open(SnapshotStore::open(dir.path())?, config)?;
    let start = rss();
    if let Some(n) = options.overwrite {
        let round = (options.keys / 10).max(1);
        for r in 0..10 {
            apply(&mut sm, 1 + r * round, 1 + (r + 1) * round, &options).await;
            drop(sm.get_snapshot_builder().await.build_snapshot().await?);
            println!(
                "round {}: {} puts over {n} keys, then a snapshot: {:.1} MiB resident \
                 ({start:.1} at start); {} request ids remembered",
                r + 1,
                (r + 1) * round,
                rss(),
                sm.dedup_len()
            );
        }
        return Ok(());
    }
    let started = Instant::now();
    apply(&mut sm, 1, options.keys + 1, &options).await;
    let took = started.elapsed();
    let after = rss();
    println!(
        "{} puts applied in {:.2?} ({:.2} us a put): {after:.1} MiB resident, {:.0} bytes a \
         key over the {start:.1} MiB at start; {} request ids remembered",
        options.keys,
        took,
        took.as_secs_f64() * 1e6 / options.keys as f64,
        (after - start) * MIB / options.keys as f64,
        sm.dedup_len()
    );

    reset_peak();
    let started = Instant::now();
    let built = sm.get_snapshot_builder().await.build_snapshot().await?;
    let file = std::fs::metadata(dir.path().join("snapshot.bin"))?.len();
    println!(
        "snapshot built in {:.2?}: peak {:.1} MiB while building; {:.1} MB on disk",
        started.elapsed(),
        peak(),
        file as f64 / 1e6
    );
    drop(built);

    // Again, while 50,000 more puts go on: they copy the pages they write.
    reset_peak();
    let started = Instant::now();
    let mut builder = sm.get_snapshot_builder().await;
    let building = tokio::spawn(async move { builder.build_snapshot().await });
    let more = options.keys + 1;
    apply(&mut sm, more, more + 50_000, &options).await;
    building.await??;
    println!(
        "snapshot built in {:.2?} with 50,000 puts going on: peak {:.1} MiB, {:.1} MiB after",
        started.elapsed(),
        peak(),
        rss()
    );

    reset_peak();
    let before = rss();
    let started = Instant::now();
    let current = sm.get_current_snapshot().await?.ok_or("no snapshot")?;
    println!(
        "snapshot read back for a follower in {:.2?}: peak {:.1} MiB ({before:.1} before: its \
         bytes are held while it is sent)",
        started.elapsed(),
        peak()
    );
    drop(current);
    drop(sm);

    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--restore")
        .arg(dir.path())
        .status()?;
    if !status.success() {
        return Err(format!("the restore run failed: {status}").into());
    }
    Ok(())
}
