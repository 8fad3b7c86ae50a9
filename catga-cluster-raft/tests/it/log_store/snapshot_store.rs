//! The snapshot store.

use super::*;

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
