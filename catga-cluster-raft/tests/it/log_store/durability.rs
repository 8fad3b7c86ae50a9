//! Durability: what survives closing and reopening the store.

use super::*;

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

#[test]
fn memory_holds_the_cache_bound_and_older_entries_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let bound = 4096;
        let options = small_segments().cache_bytes(bound);
        let mut store = LogStore::open_with(dir.path(), &identity(), options.clone()).unwrap();
        // 1,000 entries of about 200 bytes: fifty times the bound.
        for b in 0..100 {
            let first = b * 10 + 1;
            store
                .blocking_append(entries(1, first..=first + 9))
                .await
                .unwrap();
            assert!(store.cached_bytes() <= bound, "{}", store.cached_bytes());
        }
        assert!(store.cached_bytes() > bound / 2);
        let expected = entries(1, 1..=1000);
        assert_eq!(all(&mut store).await, expected);
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.try_get_log_entries(5..=995).await.unwrap(),
            expected[4..995]
        );
        // Truncating below what memory holds reads the newest remaining
        // entry back, so the log state stays exact.
        store.truncate(lid(1, 401)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(lid(1, 400)));
        store.blocking_append(entries(2, 401..=410)).await.unwrap();
        store.purge(lid(1, 100)).await.unwrap();
        let mut expected = entries(1, 101..=400);
        expected.extend(entries(2, 401..=410));
        assert_eq!(all(&mut store).await, expected);
        drop(store);

        // Reopened, it trims what it replayed to the bound.
        let mut store = LogStore::open_with(dir.path(), &identity(), options).unwrap();
        assert!(store.cached_bytes() <= bound, "{}", store.cached_bytes());
        assert_eq!(all(&mut store).await, expected);
    });
}
