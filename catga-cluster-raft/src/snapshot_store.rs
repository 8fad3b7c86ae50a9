//! Storage of the latest state-machine snapshot, in memory or on disk.
//!
//! The durable flavour keeps one file, `snapshot.bin`, in its directory:
//!
//! ```text
//! magic     8 bytes  "CGSNAP\0\x01"
//! meta_len  u32 LE   length of the encoded SnapshotMeta
//! data_len  u64 LE   length of the snapshot data
//! crc32     u32 LE   CRC-32 of meta_len, data_len, meta and data
//! meta      postcard-encoded SnapshotMeta
//! data      the snapshot bytes
//! ```
//!
//! A save writes `snapshot.bin.tmp`: the header with the data length and
//! checksum left blank, the metadata, the data as it comes
//! ([`SnapshotStore::save_with`] streams it in), then the data length and
//! checksum. It fsyncs the file, renames it over `snapshot.bin` and fsyncs
//! the directory, so a crash leaves either the old or the new snapshot. A leftover temporary file is ignored and
//! removed.
//!
//! ```
//! use catga_cluster_raft::snapshot_store::SnapshotStore;
//! use catga_cluster_raft::types::SnapshotMeta;
//!
//! let store = SnapshotStore::memory();
//! assert!(store.load()?.is_none());
//! let meta = SnapshotMeta { snapshot_id: "s1".into(), ..Default::default() };
//! store.save(&meta, b"state")?;
//! let (loaded, data) = store.load()?.expect("a snapshot was saved");
//! assert_eq!((loaded, data), (meta, b"state".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::log_store::record::{create_dir_durable, sync_dir, temp_name};
use crate::types::SnapshotMeta;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const MAGIC: [u8; 8] = *b"CGSNAP\x00\x01";
/// magic + meta_len + data_len + crc.
const HEADER: usize = 8 + 4 + 8 + 4;

/// Why a snapshot could not be loaded (or the store opened).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotStoreError {
    /// A file system operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The snapshot file is damaged.
    #[error(
        "corrupt snapshot file {}: {reason}; the node cannot restore its state from it: restore \
         the file from a backup, or wipe the node's data directory and let it rejoin the cluster \
         under a new node id",
        path.display()
    )]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

enum Inner {
    Memory(Mutex<Option<(SnapshotMeta, Vec<u8>)>>),
    Disk {
        dir: PathBuf,
        /// Serialises saves (they share the temporary file name).
        write: Mutex<()>,
    },
}

/// The latest snapshot of the state machine. Cloning is cheap and shares the
/// store.
///
/// All methods do blocking file I/O in the durable flavour: call them from
/// `spawn_blocking` in async code.
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Memory(_) => f.write_str("SnapshotStore::Memory"),
            Inner::Disk { dir, .. } => f.debug_tuple("SnapshotStore::Disk").field(dir).finish(),
        }
    }
}

fn checksum(meta_len: u32, data_len: u64, meta: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&meta_len.to_le_bytes());
    h.update(&data_len.to_le_bytes());
    h.update(meta);
    h.update(data);
    h.finalize()
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

impl SnapshotStore {
    /// A store that keeps the snapshot in memory.
    pub fn memory() -> Self {
        SnapshotStore {
            inner: Arc::new(Inner::Memory(Mutex::new(None))),
        }
    }

    /// A store that keeps the snapshot in `dir` (created if missing). A
    /// temporary file left by a crash during a save is removed.
    ///
    /// # Errors
    ///
    /// [`SnapshotStoreError::Io`] if the directory cannot be created or the
    /// temporary file cannot be removed.
    pub fn open(dir: &Path) -> Result<Self, SnapshotStoreError> {
        create_dir_durable(dir).map_err(|source| SnapshotStoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let store = SnapshotStore {
            inner: Arc::new(Inner::Disk {
                dir: dir.to_path_buf(),
                write: Mutex::new(()),
            }),
        };
        remove_temp(dir)?;
        Ok(store)
    }

    /// The directory of a durable store.
    pub fn dir(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Memory(_) => None,
            Inner::Disk { dir, .. } => Some(dir),
        }
    }

    /// Replaces the stored snapshot with `meta` and `data`, durably: when this
    /// returns `Ok`, the snapshot survives a crash.
    ///
    /// # Errors
    ///
    /// Any I/O error; the previous snapshot is then still in place.
    pub fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        self.save_with(meta, |out| out.write_all(data)).map(drop)
    }

    /// Replaces the stored snapshot with `meta` and the data `write_data`
    /// writes, durably, like [`save`](Self::save), and returns the data's
    /// length.
    ///
    /// The durable flavour streams the data into the temporary file through
    /// a buffer, checksumming it on the way, and fills in the header's data
    /// length and checksum once it is written: the data never has to exist
    /// in memory as a whole. The in-memory flavour collects it.
    ///
    /// ```
    /// use std::io::Write;
    /// use catga_cluster_raft::snapshot_store::SnapshotStore;
    /// use catga_cluster_raft::types::SnapshotMeta;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = SnapshotStore::open(dir.path())?;
    /// let meta = SnapshotMeta { snapshot_id: "s1".into(), ..Default::default() };
    /// let len = store.save_with(&meta, |out| {
    ///     out.write_all(b"part one, ")?;
    ///     out.write_all(b"part two")
    /// })?;
    /// assert_eq!(len, 18);
    /// let (_, data) = store.load()?.expect("a snapshot was saved");
    /// assert_eq!(data, b"part one, part two");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Any I/O error, the file's own in preference to the one `write_data`
    /// returned after it failed to write (an encoder may report a failed write
    /// in its own terms); the error `write_data` returns otherwise. The
    /// previous snapshot is then still in place.
    pub fn save_with<F>(&self, meta: &SnapshotMeta, write_data: F) -> io::Result<u64>
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()>,
    {
        match &*self.inner {
            Inner::Memory(slot) => {
                let mut data = Vec::new();
                write_data(&mut data)?;
                let len = data.len() as u64;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((meta.clone(), data));
                Ok(len)
            }
            Inner::Disk { dir, write } => {
                let _serialised = write.lock().unwrap_or_else(PoisonError::into_inner);
                let tmp = dir.join(temp_name(SNAPSHOT_FILE));
                let data_len = write_file(&tmp, meta, write_data).inspect_err(|_| {
                    // Best effort: a leftover is removed at the next load
                    // anyway.
                    let _ = fs::remove_file(&tmp);
                })?;
                fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
                sync_dir(dir)?;
                Ok(data_len)
            }
        }
    }

    /// The stored snapshot, verified against its checksum, or `None` if none
    /// was saved. A leftover temporary file is removed.
    ///
    /// # Errors
    ///
    /// [`SnapshotStoreError::Corrupt`] if the file fails its checks,
    /// [`SnapshotStoreError::Io`] if it cannot be read.
    pub fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotStoreError> {
        match &*self.inner {
            Inner::Memory(slot) => Ok(slot.lock().unwrap_or_else(PoisonError::into_inner).clone()),
            Inner::Disk { dir, write } => {
                let _serialised = write.lock().unwrap_or_else(PoisonError::into_inner);
                remove_temp(dir)?;
                let path = dir.join(SNAPSHOT_FILE);
                let mut bytes = match fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(SnapshotStoreError::Io { path, source }),
                };
                let (meta, data_at) = decode(&bytes)
                    .map_err(|reason| SnapshotStoreError::Corrupt { path, reason })?;
                // The data stays in the buffer it was read into: no second
                // copy of a snapshot as large as the state.
                bytes.drain(..data_at);
                Ok(Some((meta, bytes)))
            }
        }
    }
}

/// The buffer between the snapshot's encoder and its file: the encoder
/// writes many small pieces.
const WRITE_BUFFER: usize = 256 << 10;

/// Writes a snapshot file at `path`: the header with a blank data length and
/// checksum, the metadata, the data as `write_data` writes it, then the data
/// length and checksum into the header; and fsyncs it. Returns the data's
/// length.
fn write_file<F>(path: &Path, meta: &SnapshotMeta, write_data: F) -> io::Result<u64>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let meta_bytes =
        postcard::to_stdvec(meta).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let meta_len = u32::try_from(meta_bytes.len())
        .map_err(|_| invalid("the snapshot metadata is too large"))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut head = [0u8; HEADER];
    head[..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&meta_len.to_le_bytes());
    file.write_all(&head)?;
    file.write_all(&meta_bytes)?;

    let mut out = BufWriter::with_capacity(WRITE_BUFFER, Checksummed::new(file));
    let written = write_data(&mut out);
    // Whatever the encoder made of a failed write, the file's error says
    // what went wrong.
    if let Some(e) = out.get_mut().failed.take() {
        return Err(e);
    }
    written?;
    let data = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    let (mut file, data_len) = (data.file, data.len);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&meta_len.to_le_bytes());
    crc.update(&data_len.to_le_bytes());
    crc.update(&meta_bytes);
    crc.combine(&data.crc);
    let mut tail = [0u8; 12];
    tail[..8].copy_from_slice(&data_len.to_le_bytes());
    tail[8..].copy_from_slice(&crc.finalize().to_le_bytes());
    file.seek(SeekFrom::Start(12))?;
    file.write_all(&tail)?;
    file.sync_all()?;
    Ok(data_len)
}

/// A file writer that counts and checksums what passes through it, and
/// keeps the first error it met.
struct Checksummed {
    file: File,
    crc: crc32fast::Hasher,
    len: u64,
    failed: Option<io::Error>,
}

impl Checksummed {
    fn new(file: File) -> Self {
        Checksummed {
            file,
            crc: crc32fast::Hasher::new(),
            len: 0,
            failed: None,
        }
    }

    /// Keeps the first error but an interruption (which `write_all`
    /// retries), and returns a copy of it.
    fn keep<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        result.map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let again = io::Error::new(e.kind(), e.to_string());
            self.failed.get_or_insert(e);
            again
        })
    }
}

impl Write for Checksummed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.file.write(buf);
        let n = self.keep(result)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.file.flush();
        self.keep(result)
    }
}

fn remove_temp(dir: &Path) -> Result<(), SnapshotStoreError> {
    let tmp = dir.join(temp_name(SNAPSHOT_FILE));
    match fs::remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(
                file = %tmp.display(),
                "removed a temporary snapshot file left by an interrupted save"
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SnapshotStoreError::Io { path: tmp, source }),
    }
}

/// Checks a snapshot file's bytes and decodes its metadata; returns the
/// metadata and where the data starts.
fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, usize), String> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER>() else {
        return Err(format!(
            "the file is {} bytes long, shorter than its {HEADER}-byte header",
            bytes.len()
        ));
    };
    if header[..8] != MAGIC {
        return Err("the file does not start with the snapshot magic bytes".to_string());
    }
    let meta_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(&header[12..20]);
    let data_len = u64::from_le_bytes(data_len);
    let crc = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    let expected = (meta_len as u64).checked_add(data_len);
    if expected != Some(body.len() as u64) {
        return Err(format!(
            "the header announces {meta_len} bytes of metadata and {data_len} bytes of data, \
             but {} bytes follow it",
            body.len()
        ));
    }
    let (meta, data) = body.split_at(meta_len as usize);
    if checksum(meta_len, data_len, meta, data) != crc {
        return Err("the checksum does not match".to_string());
    }
    let decoded: SnapshotMeta =
        postcard::from_bytes(meta).map_err(|e| format!("the metadata does not decode: {e}"))?;
    Ok((decoded, HEADER + meta.len()))
}
