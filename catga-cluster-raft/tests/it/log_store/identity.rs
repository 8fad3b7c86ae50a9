//! Whom a directory belongs to, and that only one store uses it.

use super::*;

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
