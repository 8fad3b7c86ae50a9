//! openraft's storage suite on both flavours, with a minimal state machine
//! made only for it.

use super::*;

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

/// The durable store keeping only its newest entry in memory: every other
/// read goes to the write-ahead log.
struct SmallCacheDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, TestSm, TempDir> for SmallCacheDiskBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, TestSm), StorageError> {
        let dir = tempfile::tempdir().map_err(open_error)?;
        let options = LogStoreOptions::new().segment_bytes(256).cache_bytes(0);
        let log = LogStore::open_with(&dir.path().join("log"), &identity(), options)
            .map_err(open_error)?;
        let snapshots = SnapshotStore::open(&dir.path().join("snapshots")).map_err(open_error)?;
        Ok((dir, log, TestSm::new(snapshots)))
    }
}

#[test]
fn openraft_suite_durable_reading_from_disk() {
    if let Err(e) = Suite::test_all(SmallCacheDiskBuilder) {
        panic!("openraft's storage suite failed on the durable store without a cache: {e}");
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
