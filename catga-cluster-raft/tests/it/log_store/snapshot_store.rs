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

#[test]
fn a_streamed_snapshot_file_has_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let meta = snapshot_meta(30);
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    // Written in pieces of every size, as an encoder does.
    let len = store
        .save_with(&meta, |out| {
            let mut rest = &data[..];
            let mut piece = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(piece.min(rest.len()));
                out.write_all(now)?;
                rest = later;
                piece = piece * 3 % 70_001;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(len, data.len() as u64);

    // magic, meta_len, data_len, crc32 of meta_len, data_len, meta and data;
    // then meta and data.
    let meta_bytes = postcard::to_stdvec(&meta).unwrap();
    let meta_len = (meta_bytes.len() as u32).to_le_bytes();
    let data_len = (data.len() as u64).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    for part in [&meta_len[..], &data_len, &meta_bytes, &data] {
        crc.update(part);
    }
    let mut expected = b"CGSNAP\x00\x01".to_vec();
    expected.extend_from_slice(&meta_len);
    expected.extend_from_slice(&data_len);
    expected.extend_from_slice(&crc.finalize().to_le_bytes());
    expected.extend_from_slice(&meta_bytes);
    expected.extend_from_slice(&data);
    assert!(fs::read(dir.path().join("snapshot.bin")).unwrap() == expected);
    assert_eq!(store.load().unwrap(), Some((meta, data)));
}

#[test]
fn a_failed_streamed_save_keeps_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(&snapshot_meta(10), b"good").unwrap();
    let err = store
        .save_with(&snapshot_meta(20), |out| {
            out.write_all(&[1; 1 << 20])?;
            Err(std::io::Error::other("the encoder gave up"))
        })
        .expect_err("the writer failed");
    assert_eq!(err.to_string(), "the encoder gave up");
    assert!(!dir.path().join("snapshot.bin.tmp").exists());
    assert_eq!(
        store.load().unwrap(),
        Some((snapshot_meta(10), b"good".to_vec()))
    );
    let memory = SnapshotStore::memory();
    memory.save(&snapshot_meta(1), b"kept").unwrap();
    assert!(memory
        .save_with(&snapshot_meta(2), |_| Err(std::io::Error::other("no")))
        .is_err());
    assert_eq!(memory.load().unwrap().unwrap().1, b"kept");
}
