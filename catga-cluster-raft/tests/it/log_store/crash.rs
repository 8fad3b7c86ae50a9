//! Crash damage: torn tails, corruption and leftover temporary files.

use super::*;

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
