//! Errors of opening a durable log store.

use std::io;
use std::path::PathBuf;

use catga_cluster_core::NodeId;

/// Why a durable [`LogStore`](super::LogStore) could not be opened.
///
/// Errors that happen later, while the node runs, are reported to openraft as
/// its `StorageError` (and stop the Raft core).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    /// A file system operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another node in this process) has the directory
    /// open.
    #[error(
        "the raft data directory {} is in use by another process; each node needs its own \
         data directory, and a node must not run twice",
        dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },

    /// The directory belongs to another node or another cluster.
    #[error(
        "the raft data directory {} belongs to node {found_node} of cluster {found_cluster:?}, \
         but this node is {expected_node} of cluster {expected_cluster:?}; point this node at its \
         own data directory, or, if this directory is really meant for it, wipe the directory and \
         let the node rejoin the cluster under a new node id (never reuse an id whose log was lost)",
        dir.display()
    )]
    ForeignDirectory {
        /// The data directory.
        dir: PathBuf,
        /// The node id recorded in the directory.
        found_node: NodeId,
        /// The cluster name recorded in the directory.
        found_cluster: String,
        /// The node id this process runs as.
        expected_node: NodeId,
        /// The cluster name this process runs with.
        expected_cluster: String,
    },

    /// The directory has raft log data but no identity file, so it cannot be
    /// told whose it is.
    #[error(
        "the raft data directory {} holds log data but no identity file ({}); refusing to use \
         it because it may belong to another node: restore the identity file from a backup, or \
         wipe the directory and let the node rejoin the cluster under a new node id",
        dir.display(),
        file.display()
    )]
    MissingIdentity {
        /// The data directory.
        dir: PathBuf,
        /// The identity file that is missing.
        file: PathBuf,
    },

    /// A log segment is damaged before its end: valid records follow the bad
    /// one, or the damage is in a segment that is not the last. Dropping the
    /// rest could lose committed entries, so the store refuses to start.
    #[error(
        "corrupt raft log {} at offset {offset}: {reason}; refusing to start because entries \
         after this point may be committed: restore the directory from a backup, or wipe it and \
         let the node rejoin the cluster under a new node id",
        path.display()
    )]
    CorruptLog {
        /// The segment file.
        path: PathBuf,
        /// The byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A small metadata file (identity, vote, committed, purged) is damaged.
    #[error(
        "corrupt raft metadata file {}: {reason}; refusing to start because its contents \
         (for example the vote) must not be forgotten",
        path.display()
    )]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl LogStoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogStoreError::Io {
            path: path.into(),
            source,
        }
    }
}
