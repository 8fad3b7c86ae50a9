//! The small files of a log directory beside the segments (`IDENTITY`,
//! `vote`, `committed`, `purged`): their names, whom the directory belongs
//! to ([`StoreIdentity`]), and reading their values.

use std::io;
use std::path::Path;

use catga_cluster_core::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::LogStoreError;
use super::record::{read_meta, write_meta_atomic, Kind, MetaError};
use super::wal::list_segments;

pub(super) const IDENTITY_FILE: &str = "IDENTITY";
pub(super) const VOTE_FILE: &str = "vote";
pub(super) const COMMITTED_FILE: &str = "committed";
pub(super) const PURGED_FILE: &str = "purged";
pub(super) const META_FILES: [&str; 4] = [IDENTITY_FILE, VOTE_FILE, COMMITTED_FILE, PURGED_FILE];

/// Whom a data directory belongs to: checked on every open so that a node
/// never runs on another node's (or another cluster's) log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    /// The node id.
    pub node_id: NodeId,
    /// The cluster name.
    pub cluster_name: String,
}

impl StoreIdentity {
    /// An identity from a node id and a cluster name.
    pub fn new(node_id: impl Into<NodeId>, cluster_name: impl Into<String>) -> Self {
        StoreIdentity {
            node_id: node_id.into(),
            cluster_name: cluster_name.into(),
        }
    }
}

/// The on-disk form of [`StoreIdentity`] (kept apart so that the public type
/// can change without changing the format).
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    node_id: u64,
    cluster_name: String,
}

/// Encodes a value of a metadata file.
pub(super) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads the value of metadata file `name` in `dir`, if it exists.
pub(super) fn read_value<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    kind: Kind,
) -> Result<Option<T>, LogStoreError> {
    let path = dir.join(name);
    match read_meta(&path, kind) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => {
            postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| LogStoreError::CorruptFile {
                    path,
                    reason: format!("the contents do not decode: {e}"),
                })
        }
        Err(MetaError::Io(e)) => Err(LogStoreError::io(path, e)),
        Err(MetaError::Corrupt(reason)) => Err(LogStoreError::CorruptFile { path, reason }),
    }
}

/// Checks (or, in a fresh directory, records) whom `dir` belongs to.
pub(super) fn check_identity(dir: &Path, identity: &StoreIdentity) -> Result<(), LogStoreError> {
    match read_value::<IdentityRecord>(dir, IDENTITY_FILE, Kind::Identity)? {
        Some(found) => {
            if found.node_id != identity.node_id.get()
                || found.cluster_name != identity.cluster_name
            {
                return Err(LogStoreError::ForeignDirectory {
                    dir: dir.to_path_buf(),
                    found_node: NodeId::new(found.node_id),
                    found_cluster: found.cluster_name,
                    expected_node: identity.node_id,
                    expected_cluster: identity.cluster_name.clone(),
                });
            }
            Ok(())
        }
        None => {
            let has_segments = !list_segments(dir)
                .map_err(|e| LogStoreError::io(dir, e))?
                .is_empty();
            let has_meta = META_FILES[1..].iter().any(|name| dir.join(name).exists());
            if has_segments || has_meta {
                return Err(LogStoreError::MissingIdentity {
                    dir: dir.to_path_buf(),
                    file: dir.join(IDENTITY_FILE),
                });
            }
            let record = IdentityRecord {
                node_id: identity.node_id.get(),
                cluster_name: identity.cluster_name.clone(),
            };
            let payload = encode(&record).map_err(|e| LogStoreError::io(dir, e))?;
            write_meta_atomic(dir, IDENTITY_FILE, Kind::Identity, &payload)
                .map_err(|e| LogStoreError::io(dir.join(IDENTITY_FILE), e))
        }
    }
}
