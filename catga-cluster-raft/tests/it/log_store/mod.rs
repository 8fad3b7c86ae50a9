//! Tests of the Raft log store and the snapshot store: openraft's storage
//! suite on both flavours, durability across reopen, crash damage (torn
//! tails, corruption), directory identity, and a property test against an
//! in-memory model.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use catga_cluster_core::NodeId;
use catga_cluster_raft::log_store::{LogStore, LogStoreError, LogStoreOptions, StoreIdentity};
use catga_cluster_raft::snapshot_store::{SnapshotStore, SnapshotStoreError};
use catga_cluster_raft::types::{
    Command, CommandResponse, Entry, LogId, Operation, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig, Vote,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, StorageIOError,
};
use proptest::prelude::*;
use tempfile::TempDir;

mod crash;
mod durability;
mod identity;
mod model;
mod snapshot_store;
mod suite;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn identity() -> StoreIdentity {
    StoreIdentity::new(7, "test-cluster")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, NodeId::new(1)), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(Command::new(
            Operation::Put {
                key: format!("key-{index}"),
                value: vec![(index % 251) as u8; 40],
                expected_revision: None,
            },
            1_700_000_000_000 + index,
        )),
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn small_segments() -> LogStoreOptions {
    LogStoreOptions::new().segment_bytes(1024)
}

fn open(dir: &Path) -> LogStore {
    LogStore::open_with(dir, &identity(), small_segments()).expect("the store opens")
}

async fn all(store: &mut LogStore) -> Vec<Entry> {
    store.try_get_log_entries(..).await.expect("read entries")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("at least one segment")
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = fs::read(path).expect("read file");
    data[offset as usize] ^= 0x40;
    fs::write(path, data).expect("write file");
}

/// Appends 10 batches of 3 entries (indexes 1..=30), one record each.
async fn write_ten_batches(store: &mut LogStore) {
    for b in 0..10 {
        let first = b * 3 + 1;
        store
            .blocking_append(entries(1, first..=first + 2))
            .await
            .expect("append");
    }
}
