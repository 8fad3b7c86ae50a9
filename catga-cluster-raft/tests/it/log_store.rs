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

// ---------------------------------------------------------------------------
// A minimal state machine, only for openraft's storage suite.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct SmState {
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshots_built: u64,
}

#[derive(Clone)]
struct TestSm {
    state: Arc<Mutex<SmState>>,
    snapshots: SnapshotStore,
}

impl TestSm {
    fn new(snapshots: SnapshotStore) -> Self {
        TestSm {
            state: Arc::default(),
            snapshots,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn snapshot_error(meta: &SnapshotMeta, e: &std::io::Error) -> StorageError {
    StorageIOError::write_snapshot(Some(meta.signature()), e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for TestSm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, data) = {
            let mut st = self.lock();
            st.snapshots_built += 1;
            let meta = SnapshotMeta {
                last_log_id: st.applied,
                last_membership: st.membership.clone(),
                snapshot_id: format!("snapshot-{}", st.snapshots_built),
            };
            let data = postcard::to_stdvec(&(st.applied, &st.membership)).unwrap_or_default();
            (meta, data)
        };
        self.snapshots
            .save(&meta, &data)
            .map_err(|e| snapshot_error(&meta, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for TestSm {
    type SnapshotBuilder = TestSm;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.lock();
        Ok((st.applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut st = self.lock();
        let mut out = Vec::new();
        for e in entries {
            st.applied = Some(e.log_id);
            if let EntryPayload::Membership(m) = e.payload {
                st.membership = StoredMembership::new(Some(e.log_id), m);
            }
            out.push(CommandResponse::Empty);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.snapshots
            .save(meta, &data)
            .map_err(|e| snapshot_error(meta, &e))?;
        let mut st = self.lock();
        st.applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let loaded = self.snapshots.load().map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

struct MemoryBuilder;

impl StoreBuilder<TypeConfig, LogStore, TestSm, ()> for MemoryBuilder {
    async fn build(&self) -> Result<((), LogStore, TestSm), StorageError> {
        Ok(((), LogStore::memory(), TestSm::new(SnapshotStore::memory())))
    }
}

struct DiskBuilder;

fn open_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::Store,
        ErrorVerb::Read,
        std::io::Error::other(e.to_string()),
    )
}

impl StoreBuilder<TypeConfig, LogStore, TestSm, TempDir> for DiskBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, TestSm), StorageError> {
        let dir = tempfile::tempdir().map_err(open_error)?;
        // Small segments so that the suite also exercises rotation.
        let options = LogStoreOptions::new().segment_bytes(256);
        let log = LogStore::open_with(&dir.path().join("log"), &identity(), options)
            .map_err(open_error)?;
        let snapshots = SnapshotStore::open(&dir.path().join("snapshots")).map_err(open_error)?;
        Ok((dir, log, TestSm::new(snapshots)))
    }
}

#[test]
fn openraft_suite_memory() {
    if let Err(e) = Suite::test_all(MemoryBuilder) {
        panic!("openraft's storage suite failed on the memory store: {e}");
    }
}

#[test]
fn openraft_suite_durable() {
    if let Err(e) = Suite::test_all(DiskBuilder) {
        panic!("openraft's storage suite failed on the durable store: {e}");
    }
}

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

// ---------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------

#[test]
fn reopen_restores_entries_vote_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        assert!(store.is_durable());
        store.blocking_append(entries(1, 1..=1)).await.unwrap();
        store.blocking_append(entries(1, 2..=17)).await.unwrap();
        store.blocking_append(entries(2, 18..=81)).await.unwrap();
        store
            .save_vote(&Vote::new_committed(2, NodeId::new(1)))
            .await
            .unwrap();
        store.save_committed(Some(lid(2, 80))).await.unwrap();
        let before = all(&mut store).await;
        assert_eq!(before.len(), 81);
        drop(store);

        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, before);
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(2, NodeId::new(1)))
        );
        assert_eq!(store.read_committed().await.unwrap(), Some(lid(2, 80)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(lid(2, 81)));
        assert_eq!(state.last_purged_log_id, None);

        // The reader shares the entries.
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.try_get_log_entries(5..8).await.unwrap(),
            before[4..7]
        );
        assert!(reader
            .try_get_log_entries(90..100)
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn committed_lags_at_most_the_flush_interval_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        // The leaked store keeps its directory lock: this test shares the
        // directory on purpose.
        let options = small_segments()
            .committed_flush_interval(8)
            .exclusive(false);
        let mut store = LogStore::open_with(dir.path(), &identity(), options.clone()).unwrap();
        store.blocking_append(entries(1, 1..=50)).await.unwrap();
        for i in 1..=45 {
            store.save_committed(Some(lid(1, i))).await.unwrap();
        }
        // A crash: no destructor runs.
        std::mem::forget(store);

        let mut store = LogStore::open_with(dir.path(), &identity(), options).unwrap();
        let committed = store
            .read_committed()
            .await
            .unwrap()
            .expect("a committed id");
        assert!(
            committed.index > 45 - 8 && committed.index <= 45,
            "{committed:?}"
        );
        assert_eq!(all(&mut store).await.len(), 50);

        // Every call is durable with an interval of 1.
        let options = small_segments()
            .committed_flush_interval(1)
            .exclusive(false);
        drop(store);
        let mut store = LogStore::open_with(dir.path(), &identity(), options.clone()).unwrap();
        store.save_committed(Some(lid(1, 49))).await.unwrap();
        std::mem::forget(store);
        let mut store = LogStore::open_with(dir.path(), &identity(), options).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(lid(1, 49)));
    });
}

#[test]
fn truncate_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        write_ten_batches(&mut store).await; // 1..=30, batches [1..3] [4..6] ...

        // Inside a batch record ([22..24]): a truncate record is written.
        store.truncate(lid(1, 23)).await.unwrap();
        // At a batch boundary ([19..21]): the file is cut.
        store.truncate(lid(1, 19)).await.unwrap();
        store.blocking_append(entries(2, 19..=26)).await.unwrap();
        // Overwrite without an explicit truncate (implicit truncation).
        store.blocking_append(entries(3, 25..=28)).await.unwrap();
        store.purge(lid(1, 10)).await.unwrap();
        let before = all(&mut store).await;
        let mut expected = entries(1, 11..=18);
        expected.extend(entries(2, 19..=24));
        expected.extend(entries(3, 25..=28));
        assert_eq!(before, expected);
        drop(store);

        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, expected);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(lid(1, 10)));
        assert_eq!(state.last_log_id, Some(lid(3, 28)));

        // Purge beyond the end: everything goes, the purge point remains.
        store.purge(lid(3, 40)).await.unwrap();
        drop(store);
        let mut store = open(dir.path());
        assert!(all(&mut store).await.is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(lid(3, 40)));
        assert_eq!(state.last_log_id, Some(lid(3, 40)));
        store.blocking_append(entries(3, 41..=42)).await.unwrap();
        drop(store);
        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, entries(3, 41..=42));
        // A purged log is not appended to below its purge point, nor with a hole.
        assert!(store.blocking_append(entries(3, 44..=44)).await.is_err());
    });
}

#[test]
fn truncate_everything_then_restart_at_any_index() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        write_ten_batches(&mut store).await;
        store.truncate(lid(0, 0)).await.unwrap();
        assert!(all(&mut store).await.is_empty());
        drop(store);
        let mut store = open(dir.path());
        assert!(all(&mut store).await.is_empty());
        assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
        store.blocking_append(entries(5, 3..=4)).await.unwrap();
        drop(store);
        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, entries(5, 3..=4));
    });
}

#[test]
fn purge_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        for i in 1..=200 {
            store.blocking_append(entries(1, i..=i)).await.unwrap();
        }
        let many = segments(dir.path()).len();
        assert!(many > 10, "{many} segments");
        store.purge(lid(1, 190)).await.unwrap();
        let few = segments(dir.path()).len();
        assert!(few <= 2, "{few} segments left of {many}");
        store.purge(lid(1, 200)).await.unwrap();
        let files = segments(dir.path());
        assert_eq!(files.len(), 1);
        assert_eq!(
            fs::metadata(&files[0]).unwrap().len(),
            8,
            "only the header is left"
        );
        drop(store);
        let mut store = open(dir.path());
        assert!(all(&mut store).await.is_empty());
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(lid(1, 200))
        );
    });
}

#[test]
fn memory_store_round_trip() {
    rt().block_on(async {
        let mut store = LogStore::memory();
        assert!(!store.is_durable());
        store.blocking_append(entries(1, 1..=10)).await.unwrap();
        store.truncate(lid(1, 8)).await.unwrap();
        store.purge(lid(1, 3)).await.unwrap();
        assert_eq!(all(&mut store).await, entries(1, 4..=7));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(lid(1, 3)));
        assert_eq!(state.last_log_id, Some(lid(1, 7)));
    });
}

// ---------------------------------------------------------------------------
// Crash damage
// ---------------------------------------------------------------------------

#[test]
fn torn_tail_cut_mid_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = LogStore::open(dir.path(), &identity()).unwrap();
        write_ten_batches(&mut store).await;
        drop(store);
        let seg = last_segment(dir.path());
        let len = fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 7).unwrap();
        drop(f);

        let mut store = LogStore::open(dir.path(), &identity()).unwrap();
        assert_eq!(all(&mut store).await, entries(1, 1..=27));
        // The log continues where the intact part ends.
        store.blocking_append(entries(2, 28..=30)).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path(), &identity()).unwrap();
        let mut expected = entries(1, 1..=27);
        expected.extend(entries(2, 28..=30));
        assert_eq!(all(&mut store).await, expected);
    });
}

#[test]
fn garbage_after_the_last_record_is_dropped() {
    for garbage in [
        vec![0u8; 300],
        (0..=255u8).cycle().take(700).collect::<Vec<u8>>(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let mut store = LogStore::open(dir.path(), &identity()).unwrap();
            write_ten_batches(&mut store).await;
            drop(store);
            let seg = last_segment(dir.path());
            let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
            f.write_all(&garbage).unwrap();
            drop(f);
            let before = fs::metadata(&seg).unwrap().len();

            let mut store = LogStore::open(dir.path(), &identity()).unwrap();
            assert_eq!(all(&mut store).await, entries(1, 1..=30));
            assert_eq!(
                fs::metadata(&seg).unwrap().len(),
                before - garbage.len() as u64,
                "the garbage is cut off the file"
            );
        });
    }
}

#[test]
fn damaged_last_record_is_treated_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = LogStore::open(dir.path(), &identity()).unwrap();
        write_ten_batches(&mut store).await;
        drop(store);
        let seg = last_segment(dir.path());
        let len = fs::metadata(&seg).unwrap().len();
        flip_byte(&seg, len - 3);
        let mut store = LogStore::open(dir.path(), &identity()).unwrap();
        assert_eq!(all(&mut store).await, entries(1, 1..=27));
    });
}

#[test]
fn flipped_byte_in_a_middle_record_refuses_to_open() {
    // Offsets into the first record: its length, checksum, kind and payload.
    for offset in [8u64, 13, 16, 30] {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let mut store = LogStore::open(dir.path(), &identity()).unwrap();
            write_ten_batches(&mut store).await;
            drop(store);
            let seg = last_segment(dir.path());
            flip_byte(&seg, offset);

            let err = LogStore::open(dir.path(), &identity()).expect_err("must refuse to open");
            let msg = err.to_string();
            match &err {
                LogStoreError::CorruptLog {
                    path, offset: at, ..
                } => {
                    assert_eq!(path, &seg);
                    assert_eq!(*at, 8, "{msg}");
                }
                other => panic!("unexpected error: {other}"),
            }
            assert!(msg.contains(&seg.display().to_string()), "{msg}");
            assert!(msg.contains("not a torn write"), "{msg}");
            // Nothing was cut: a second attempt fails the same way.
            assert!(LogStore::open(dir.path(), &identity()).is_err());
        });
    }
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let options = LogStoreOptions::new().segment_bytes(300);
        let mut store = LogStore::open_with(dir.path(), &identity(), options.clone()).unwrap();
        write_ten_batches(&mut store).await;
        drop(store);
        let segs = segments(dir.path());
        assert!(segs.len() >= 3, "{segs:?}");
        // Damage the tail of the first segment: not the last segment, so
        // not a torn write.
        let len = fs::metadata(&segs[0]).unwrap().len();
        flip_byte(&segs[0], len - 2);
        let err = LogStore::open_with(dir.path(), &identity(), options).expect_err("refuses");
        assert!(
            matches!(&err, LogStoreError::CorruptLog { path, .. } if path == &segs[0]),
            "{err}"
        );
    });
}

#[test]
fn incomplete_segment_header_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        write_ten_batches(&mut store).await;
        drop(store);
        // A crash while creating the next segment.
        fs::write(dir.path().join("log-99999999999999999999.wal"), b"CGW").unwrap();
        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, entries(1, 1..=30));
        store.blocking_append(entries(1, 31..=31)).await.unwrap();
        drop(store);
        let mut store = open(dir.path());
        assert_eq!(all(&mut store).await, entries(1, 1..=31));
    });
}

#[test]
fn corrupt_vote_file_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        store
            .save_vote(&Vote::new(3, NodeId::new(2)))
            .await
            .unwrap();
        drop(store);
        let vote = dir.path().join("vote");
        flip_byte(&vote, 18);
        let err = LogStore::open(dir.path(), &identity()).expect_err("refuses");
        assert!(
            matches!(&err, LogStoreError::CorruptFile { path, .. } if path == &vote),
            "{err}"
        );
        assert!(err.to_string().contains("vote"), "{err}");
    });
}

#[test]
fn leftover_temporary_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        store
            .save_vote(&Vote::new(3, NodeId::new(2)))
            .await
            .unwrap();
        drop(store);
        fs::write(dir.path().join("vote.tmp"), b"half a vote").unwrap();
        let mut store = open(dir.path());
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new(3, NodeId::new(2)))
        );
        assert!(!dir.path().join("vote.tmp").exists());
    });
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

#[test]
fn foreign_node_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    drop(LogStore::open(dir.path(), &identity()).unwrap());
    let err = LogStore::open(dir.path(), &StoreIdentity::new(8, "test-cluster"))
        .expect_err("another node's directory");
    match &err {
        LogStoreError::ForeignDirectory {
            dir: d,
            found_node,
            found_cluster,
            expected_node,
            expected_cluster,
        } => {
            assert_eq!(d, dir.path());
            assert_eq!(*found_node, NodeId::new(7));
            assert_eq!(found_cluster, "test-cluster");
            assert_eq!(*expected_node, NodeId::new(8));
            assert_eq!(expected_cluster, "test-cluster");
        }
        other => panic!("unexpected error: {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("node 7") && msg.contains("this node is 8"),
        "{msg}"
    );
    assert!(msg.contains("wipe"), "{msg}");
    // The right identity still opens it.
    assert!(LogStore::open(dir.path(), &identity()).is_ok());
}

#[test]
fn foreign_cluster_name_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    drop(LogStore::open(dir.path(), &identity()).unwrap());
    let err = LogStore::open(dir.path(), &StoreIdentity::new(7, "other-cluster"))
        .expect_err("another cluster's directory");
    assert!(
        matches!(
            &err,
            LogStoreError::ForeignDirectory { found_cluster, expected_cluster, .. }
                if found_cluster == "test-cluster" && expected_cluster == "other-cluster"
        ),
        "{err}"
    );
}

#[test]
fn log_data_without_identity_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = open(dir.path());
        write_ten_batches(&mut store).await;
        drop(store);
    });
    fs::remove_file(dir.path().join("IDENTITY")).unwrap();
    let err = LogStore::open(dir.path(), &identity()).expect_err("no identity");
    assert!(
        matches!(err, LogStoreError::MissingIdentity { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("IDENTITY"), "{err}");
}

// ---------------------------------------------------------------------------
// Snapshot store
// ---------------------------------------------------------------------------

fn snapshot_meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(lid(2, index)),
        last_membership: StoredMembership::default(),
        snapshot_id: format!("snap-{index}"),
    }
}

#[test]
fn snapshot_store_round_trip_keeps_only_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    assert!(store.load().unwrap().is_none());
    store.save(&snapshot_meta(10), b"first").unwrap();
    store.save(&snapshot_meta(20), &[7u8; 100_000]).unwrap();
    drop(store);

    let store = SnapshotStore::open(dir.path()).unwrap();
    let (meta, data) = store.load().unwrap().expect("a snapshot");
    assert_eq!(meta, snapshot_meta(20));
    assert_eq!(data, vec![7u8; 100_000]);
    let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one snapshot file");

    let memory = SnapshotStore::memory();
    memory.save(&snapshot_meta(3), b"m").unwrap();
    assert_eq!(
        memory.load().unwrap(),
        Some((snapshot_meta(3), b"m".to_vec()))
    );
}

#[test]
fn corrupt_snapshot_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(&snapshot_meta(10), b"some state bytes").unwrap();
    let file = dir.path().join("snapshot.bin");
    let len = fs::metadata(&file).unwrap().len();

    flip_byte(&file, len - 2);
    let err = store.load().expect_err("corrupt");
    assert!(
        matches!(&err, SnapshotStoreError::Corrupt { path, .. } if path == &file),
        "{err}"
    );
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );

    // Truncated.
    store.save(&snapshot_meta(10), b"some state bytes").unwrap();
    let f = OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 1).unwrap();
    drop(f);
    assert!(matches!(
        store.load(),
        Err(SnapshotStoreError::Corrupt { .. })
    ));
}

#[test]
fn leftover_snapshot_temp_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(&snapshot_meta(10), b"good").unwrap();
    let tmp = dir.path().join("snapshot.bin.tmp");
    fs::write(&tmp, b"a half-written snapshot").unwrap();
    assert_eq!(
        store.load().unwrap(),
        Some((snapshot_meta(10), b"good".to_vec()))
    );
    assert!(!tmp.exists());

    fs::write(&tmp, b"another half-written snapshot").unwrap();
    drop(SnapshotStore::open(dir.path()).unwrap());
    assert!(!tmp.exists());
}

// ---------------------------------------------------------------------------
// Property test: random append / truncate / purge / reopen against a model.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Append { count: u64, new_term: bool },
    Truncate(u64),
    Purge(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=6, any::<bool>()).prop_map(|(count, new_term)| Op::Append { count, new_term }),
        1 => (0u64..40).prop_map(Op::Truncate),
        1 => (0u64..40).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last_key_value(), self.purged) {
            (Some((i, _)), _) => i + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 1,
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.purged)
    }
}

async fn check(store: &mut LogStore, model: &Model) -> Result<(), TestCaseError> {
    let got = all(store).await;
    let want: Vec<Entry> = model.entries.values().cloned().collect();
    prop_assert_eq!(got, want);
    let state = store.get_log_state().await.unwrap();
    prop_assert_eq!(state.last_purged_log_id, model.purged);
    prop_assert_eq!(state.last_log_id, model.last_log_id());
    Ok(())
}

async fn run_ops(dir: &Path, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let options = LogStoreOptions::new().segment_bytes(400);
    let reopen = || LogStore::open_with(dir, &identity(), options.clone()).unwrap();
    let mut store = reopen();
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Append { count, new_term } => {
                if new_term {
                    model.term += 1;
                }
                let first = model.next_index();
                let batch = entries(model.term, first..=first + count - 1);
                store.blocking_append(batch.clone()).await.unwrap();
                model
                    .entries
                    .extend(batch.into_iter().map(|e| (e.log_id.index, e)));
            }
            Op::Truncate(back) => {
                let live = model.entries.len() as u64;
                if live > 0 {
                    let index = model.next_index() - 1 - back % live;
                    let log_id = model.entries[&index].log_id;
                    store.truncate(log_id).await.unwrap();
                    drop(model.entries.split_off(&index));
                }
            }
            Op::Purge(forward) => {
                let first = model.purged.map_or(0, |p| p.index + 1);
                let last = model.next_index() + 1;
                let index = first + forward % (last - first + 1);
                let log_id = match model.entries.get(&index) {
                    Some(e) => e.log_id,
                    None => lid(model.term, index),
                };
                store.purge(log_id).await.unwrap();
                model.entries = model.entries.split_off(&(index + 1));
                model.purged = Some(log_id);
            }
            Op::Reopen => {
                drop(store);
                store = reopen();
            }
        }
        check(&mut store, &model).await?;
    }
    drop(store);
    let mut store = reopen();
    check(&mut store, &model).await
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=1000 for a longer run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(run_ops(dir.path(), ops))?;
    }
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let identity = catga_cluster_raft::log_store::StoreIdentity::new(1u64, "c");
    let first = catga_cluster_raft::log_store::LogStore::open(dir.path(), &identity).unwrap();
    let err = catga_cluster_raft::log_store::LogStore::open(dir.path(), &identity).unwrap_err();
    assert!(
        matches!(
            err,
            catga_cluster_raft::log_store::LogStoreError::Locked { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    catga_cluster_raft::log_store::LogStore::open(dir.path(), &identity).unwrap();
}
