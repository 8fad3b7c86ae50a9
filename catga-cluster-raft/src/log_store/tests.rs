//! The append rules and the write-ahead log on their own.

use catga_cluster_core::NodeId;
use openraft::{CommittedLeaderId, Entry as RaftEntry};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::RaftLogReader;

use super::storage::{plan_append, AppendPlan};
use super::wal::Wal;
use super::{LogStore, LogStoreOptions, StoreIdentity};
use crate::types::Entry;

fn blank(term: u64, index: u64) -> Entry {
    RaftEntry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(term, NodeId::new(1)), index),
        payload: openraft::EntryPayload::Blank,
    }
}

#[test]
fn plan_append_rules() {
    assert!(matches!(
        plan_append(None, None, &[blank(1, 5)]),
        Ok(AppendPlan::Append)
    ));
    assert!(plan_append(None, Some(4), &[blank(1, 6)]).is_err());
    assert!(plan_append(None, Some(4), &[blank(1, 4)]).is_err());
    let map = Some(8);
    assert!(matches!(
        plan_append(map, Some(4), &[blank(2, 9)]),
        Ok(AppendPlan::Append)
    ));
    assert!(matches!(
        plan_append(map, Some(4), &[blank(2, 6), blank(2, 7)]),
        Ok(AppendPlan::TruncateFirst(6))
    ));
    assert!(plan_append(map, Some(4), &[blank(2, 10)]).is_err());
    assert!(plan_append(map, Some(4), &[blank(2, 9), blank(2, 11)]).is_err());
}

#[test]
fn wal_overwrites_instead_of_duplicating_and_refuses_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), None, 1 << 20, usize::MAX).unwrap();
    wal.append(&[blank(1, 1), blank(1, 2), blank(1, 3)])
        .unwrap();
    wal.append(&[blank(2, 2), blank(2, 3), blank(2, 4)])
        .unwrap();
    assert!(wal.append(&[blank(2, 9)]).is_err());
    drop(wal);
    let (_wal, entries) = Wal::open(dir.path(), None, 1 << 20, usize::MAX).unwrap();
    let got = entries.plan_read(0, u64::MAX).cached;
    assert_eq!(
        got,
        vec![blank(1, 1), blank(2, 2), blank(2, 3), blank(2, 4)]
    );
}

#[test]
fn wal_rotates_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, entries) = Wal::open(dir.path(), None, 32, usize::MAX).unwrap();
    assert_eq!(entries.len(), 0);
    for i in 1..=10 {
        wal.append(&[blank(1, i)]).unwrap();
    }
    assert!(wal.segment_count() >= 5, "{}", wal.segment_count());
    wal.purge(10).unwrap();
    assert_eq!(wal.segment_count(), 1);
    drop(wal);
    let (_wal, entries) = Wal::open(dir.path(), Some(10), 32, usize::MAX).unwrap();
    assert_eq!(entries.len(), 0);
}

/// A failed `fdatasync` is a storage error for the append that needed it
/// (openraft stops on it), never a success; and every later write fails
/// too, until the node restarts and replays its log.
#[tokio::test]
async fn a_failed_flush_fails_the_append_and_every_write_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let identity = StoreIdentity::new(1, "test");
    let mut store = LogStore::open_with(dir.path(), &identity, LogStoreOptions::new()).unwrap();
    store
        .blocking_append([blank(1, 1), blank(1, 2)])
        .await
        .unwrap();
    store
        .disk
        .as_ref()
        .unwrap()
        .lock()
        .unwrap()
        .wal
        .fail_next_sync = true;
    let err = store.blocking_append([blank(1, 3)]).await.unwrap_err();
    assert!(
        err.to_string().contains("injected fdatasync failure"),
        "{err}"
    );
    // The entry that was not made durable is not readable either.
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(2));
    assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 2);
    let later = store.blocking_append([blank(1, 3)]).await.unwrap_err();
    assert!(later.to_string().contains("unknown state"), "{later}");
    assert!(store.truncate(blank(1, 2).log_id).await.is_err());
    drop(store);
    // After a restart the log replays; what was acknowledged is there.
    let mut store = LogStore::open_with(dir.path(), &identity, LogStoreOptions::new()).unwrap();
    let got = store.try_get_log_entries(1..=2).await.unwrap();
    assert_eq!(got, vec![blank(1, 1), blank(1, 2)]);
}
