//! The write-ahead log: numbered segment files of checksummed records.
//!
//! A segment `log-<seq, 20 digits>.wal` is the 8-byte [`SEGMENT_MAGIC`]
//! followed by records (see [`super::record`]):
//!
//! * `Entries`: the postcard-encoded `Vec<Entry>` of one `append` call. One
//!   record per append means one `fdatasync` per batch, and that only the
//!   last record of the last segment can ever be torn by a crash: a record is
//!   acknowledged only after it is synced, and the next one is written only
//!   after that.
//! * `Truncate`: drop every entry at or above an index. Written when a
//!   truncation point falls inside a batch record; otherwise the file is cut
//!   physically at the first removed record.
//!
//! Entry indexes increase strictly through the log, apart from the effect of
//! `Truncate` records. Segments are rotated when the active one reaches the
//! configured size; a purge deletes the oldest segments that hold no live
//! entry (and rotates away from the active segment when nothing is live), so
//! the disk holds the live log plus at most about one segment of dead
//! records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::error::LogStoreError;
use super::record::{encode_record, find_valid_record, parse_record, sync_dir, Kind, Parsed};
use crate::types::Entry;

/// The first eight bytes of every segment.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"CGWAL\x00\x00\x01";
const SEGMENT_HEADER: u64 = SEGMENT_MAGIC.len() as u64;

/// The file name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("log-{seq:020}.wal")
}

/// The sequence number of a segment file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files in `dir`, by sequence number.
pub(crate) fn list_segments(dir: &Path) -> io::Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        if let Some(seq) = name.to_str().and_then(parse_segment_name) {
            out.insert(seq, item.path());
        }
    }
    Ok(out)
}

/// Where one `Entries` record lives and which of its entries are live.
#[derive(Debug, Clone, Copy)]
struct RecordLoc {
    seq: u64,
    start: u64,
    end: u64,
    /// The first index in the record (it may already be purged).
    first: u64,
    /// The last live index in the record (lowered by truncation).
    last: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    len: u64,
}

/// The segment files of a durable log and where its live records are.
pub(crate) struct Wal {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    active_seq: u64,
    active: File,
    next_seq: u64,
    /// `Entries` records that still hold a live entry, by first index.
    records: BTreeMap<u64, RecordLoc>,
    segment_bytes: u64,
    /// Set after a failed write: the files are in an unknown state until the
    /// store is reopened (and replayed).
    failed: Option<String>,
    /// Tests set this to make the next `fdatasync` fail.
    #[cfg(test)]
    pub(crate) fail_next_sync: bool,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("active_seq", &self.active_seq)
            .field("records", &self.records.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Validates a batch: non-empty, indexes consecutive. Returns (first, last).
pub(crate) fn batch_bounds(entries: &[Entry]) -> Result<(u64, u64), String> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err("an empty batch".to_string());
    };
    for pair in entries.windows(2) {
        if pair[1].log_id.index != pair[0].log_id.index.wrapping_add(1) {
            return Err(format!(
                "entry {} follows entry {} in one batch",
                pair[1].log_id, pair[0].log_id
            ));
        }
    }
    Ok((first.log_id.index, last.log_id.index))
}

/// The log rebuilt from the segments while opening. Only the newest entries
/// stay in memory (the cache's budget); the records say where every live
/// entry is.
struct Replay {
    purged: Option<u64>,
    cache: Cache,
    records: BTreeMap<u64, RecordLoc>,
}

impl Replay {
    /// The last live index, from the records.
    fn live_last(&self) -> Option<u64> {
        self.records
            .values()
            .next_back()
            .map(|r| r.last)
            .filter(|l| self.purged.is_none_or(|p| *l > p))
    }

    fn apply(
        &mut self,
        kind: Result<Kind, u8>,
        payload: &[u8],
        seq: u64,
        start: u64,
        end: u64,
    ) -> Result<(), String> {
        match kind {
            Ok(Kind::Entries) => {
                let batch: Vec<Entry> = postcard::from_bytes(payload)
                    .map_err(|e| format!("an entries record does not decode: {e}"))?;
                let (first, last) = batch_bounds(&batch)?;
                match self.live_last() {
                    Some(l) if first != l.saturating_add(1) => {
                        return Err(format!(
                            "an entries record starts at index {first} but the log ends at index {l}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        // Everything before is purged (or there is nothing):
                        // only the continuation after the purge point matters.
                        self.cache.clear();
                        self.records.clear();
                        if let Some(p) = self.purged {
                            if first > p.saturating_add(1) {
                                return Err(format!(
                                    "an entries record starts at index {first}, leaving a gap after \
                                     the purged index {p}"
                                ));
                            }
                        }
                    }
                }
                self.cache.extend(batch);
                self.records.insert(
                    first,
                    RecordLoc {
                        seq,
                        start,
                        end,
                        first,
                        last,
                    },
                );
                Ok(())
            }
            Ok(Kind::Truncate) => {
                let bytes: [u8; 8] = payload
                    .try_into()
                    .map_err(|_| "a truncate record has the wrong length".to_string())?;
                let index = u64::from_le_bytes(bytes);
                self.cache.truncate(index, None);
                drop(self.records.split_off(&index));
                if let Some((_, r)) = self.records.iter_mut().next_back() {
                    if r.last >= index {
                        r.last = index.saturating_sub(1);
                    }
                }
                Ok(())
            }
            Ok(other) => Err(format!(
                "a {other:?} record does not belong in a log segment"
            )),
            Err(byte) => Err(format!(
                "unknown record kind {byte} (written by a newer version?)"
            )),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        if let Some(p) = self.purged {
            self.cache.purge(p);
            self.records.retain(|_, r| r.last > p);
            if let Some((&first, _)) = self.records.first_key_value() {
                if first > p.saturating_add(1) {
                    return Err(format!(
                        "the first live entry is {first} but the log is purged up to {p}: entries are missing"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether a record found after a bad one is a plausible log record (and
/// not, say, bytes that happen to checksum inside a payload).
fn is_plausible_log_record(buf: &[u8]) -> bool {
    match parse_record(buf) {
        Parsed::Record {
            kind: Ok(Kind::Entries),
            payload,
            ..
        } => postcard::from_bytes::<Vec<Entry>>(payload)
            .ok()
            .is_some_and(|b| batch_bounds(&b).is_ok()),
        Parsed::Record {
            kind: Ok(Kind::Truncate),
            payload,
            ..
        } => payload.len() == 8,
        _ => false,
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> LogStoreError {
    LogStoreError::CorruptLog {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Replays one segment into `replay`; repairs a torn tail of the last
/// segment. Returns the segment's valid length.
fn replay_segment(
    path: &Path,
    seq: u64,
    is_last: bool,
    replay: &mut Replay,
) -> Result<u64, LogStoreError> {
    let data = fs::read(path).map_err(|e| LogStoreError::io(path, e))?;
    if !data.starts_with(&SEGMENT_MAGIC) {
        if is_last && data.len() <= SEGMENT_MAGIC.len() {
            // A crash while the segment was being created: it never held a
            // record.
            tracing::warn!(
                file = %path.display(),
                bytes = data.len(),
                "the last raft log segment has an incomplete header; rewriting it"
            );
            let mut f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| LogStoreError::io(path, e))?;
            f.write_all(&SEGMENT_MAGIC)
                .and_then(|()| f.sync_all())
                .map_err(|e| LogStoreError::io(path, e))?;
            return Ok(SEGMENT_HEADER);
        }
        return Err(corrupt(
            path,
            0,
            "the file does not start with the raft log segment magic bytes",
        ));
    }
    let mut off = SEGMENT_MAGIC.len();
    loop {
        let rest = data.get(off..).unwrap_or_default();
        match parse_record(rest) {
            Parsed::End => return Ok(off as u64),
            Parsed::Record {
                kind,
                payload,
                total,
            } => {
                let end = off + total;
                replay
                    .apply(kind, payload, seq, off as u64, end as u64)
                    .map_err(|reason| corrupt(path, off as u64, reason))?;
                off = end;
            }
            Parsed::Invalid(why) => {
                if !is_last {
                    return Err(corrupt(
                        path,
                        off as u64,
                        format!("{why}, in a segment that is not the last one"),
                    ));
                }
                let mut from = off + 1;
                while let Some(at) = find_valid_record(&data, from) {
                    if is_plausible_log_record(&data[at..]) {
                        return Err(corrupt(
                            path,
                            off as u64,
                            format!(
                                "{why}, and a valid record follows at offset {at}, so this is not \
                                 a torn write"
                            ),
                        ));
                    }
                    from = at + 1;
                }
                let dropped = data.len() - off;
                tracing::warn!(
                    file = %path.display(),
                    offset = off,
                    dropped_bytes = dropped,
                    reason = why,
                    "dropping a torn or corrupt tail of the raft log (a write that was never \
                     acknowledged)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| LogStoreError::io(path, e))?;
                f.set_len(off as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| LogStoreError::io(path, e))?;
                return Ok(off as u64);
            }
        }
    }
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(segment_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(&SEGMENT_MAGIC)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((file, path))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, replays it and returns
    /// the newest live entries (those above `purged`), as many as
    /// `cache_bytes` allows, and always the last one.
    pub(crate) fn open(
        dir: &Path,
        purged: Option<u64>,
        segment_bytes: u64,
        cache_bytes: usize,
    ) -> Result<(Wal, Cache), LogStoreError> {
        let found = list_segments(dir).map_err(|e| LogStoreError::io(dir, e))?;
        let mut replay = Replay {
            purged,
            cache: Cache::new(purged, cache_bytes),
            records: BTreeMap::new(),
        };
        let mut segments = BTreeMap::new();
        let count = found.len();
        for (i, (seq, path)) in found.into_iter().enumerate() {
            let len = replay_segment(&path, seq, i + 1 == count, &mut replay)?;
            segments.insert(seq, Segment { path, len });
        }
        replay.finish().map_err(|reason| corrupt(dir, 0, reason))?;

        let (active_seq, active) = match segments.last_key_value() {
            Some((&seq, seg)) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&seg.path)
                    .map_err(|e| LogStoreError::io(&seg.path, e))?;
                (seq, file)
            }
            None => {
                let (file, path) = create_segment(dir, 1).map_err(|e| LogStoreError::io(dir, e))?;
                segments.insert(
                    1,
                    Segment {
                        path,
                        len: SEGMENT_HEADER,
                    },
                );
                (1, file)
            }
        };
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            active_seq,
            active,
            next_seq: active_seq.saturating_add(1),
            records: replay.records,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER + 1),
            failed: None,
            #[cfg(test)]
            fail_next_sync: false,
        };
        // Finish a purge that a crash interrupted.
        wal.compact().map_err(|e| LogStoreError::io(dir, e))?;
        let mut cache = replay.cache;
        // A truncation during the replay may have left the newest live entry
        // out of memory: read it back.
        if cache.last().is_none() {
            if let Some(last) = wal.records.values().next_back().map(|r| r.last) {
                let entry = wal
                    .read(last, last)
                    .map_err(|e| LogStoreError::io(dir, e))?;
                cache.truncate(last.saturating_add(1), entry.into_iter().next());
            }
        }
        Ok((wal, cache))
    }

    /// Appends one batch as one record and syncs it.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        self.check()?;
        let result = self.append_inner(entries);
        self.note(result)
    }

    /// Removes every entry at or above `index` and syncs.
    pub(crate) fn truncate(&mut self, index: u64) -> io::Result<()> {
        self.check()?;
        let result = self.truncate_inner(index);
        self.note(result)
    }

    /// Forgets every entry at or below `upto` and deletes the segments that
    /// no longer hold a live entry. The caller has already made the purge
    /// point durable.
    pub(crate) fn purge(&mut self, upto: u64) -> io::Result<()> {
        self.check()?;
        self.records.retain(|_, r| r.last > upto);
        let result = self.compact();
        self.note(result)
    }

    /// Reads the live entries with indexes in `lo..=hi` back from the
    /// segments, in order.
    pub(crate) fn read(&self, lo: u64, hi: u64) -> io::Result<Vec<Entry>> {
        let from = self
            .records
            .range(..=lo)
            .next_back()
            .map_or(lo, |(first, _)| *first);
        let mut out = Vec::new();
        let mut open: Option<(u64, File)> = None;
        let mut buf = Vec::new();
        for r in self.records.range(from..).map(|(_, r)| r) {
            if r.first > hi {
                break;
            }
            if r.last < lo {
                continue;
            }
            let file = match &mut open {
                Some((seq, file)) if *seq == r.seq => file,
                _ => {
                    let seg = self.segments.get(&r.seq).ok_or_else(|| {
                        io::Error::other(format!("log segment {} is missing", r.seq))
                    })?;
                    &mut open.insert((r.seq, File::open(&seg.path)?)).1
                }
            };
            buf.resize(
                usize::try_from(r.end - r.start).map_err(io::Error::other)?,
                0,
            );
            file.seek(SeekFrom::Start(r.start))?;
            file.read_exact(&mut buf)?;
            let Parsed::Record {
                kind: Ok(Kind::Entries),
                payload,
                ..
            } = parse_record(&buf)
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the entries record at offset {} of log segment {} does not read back",
                        r.start, r.seq
                    ),
                ));
            };
            let batch: Vec<Entry> = postcard::from_bytes(payload)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let upto = hi.min(r.last);
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.log_id.index >= lo && e.log_id.index <= upto),
            );
        }
        Ok(out)
    }

    /// The number of segment files.
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "the raft log in {} is in an unknown state after an earlier failed write ({why}); \
                 restart the node to replay it",
                self.dir.display()
            ))),
        }
    }

    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    fn active_len(&self) -> u64 {
        self.segments
            .get(&self.active_seq)
            .map_or(SEGMENT_HEADER, |s| s.len)
    }

    fn append_inner(&mut self, entries: &[Entry]) -> io::Result<()> {
        let (first, last) =
            batch_bounds(entries).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Keep the invariant replay checks, whatever the caller believes the
        // log to be: overwrite by truncating first, never leave a hole.
        if let Some(live_last) = self.records.values().next_back().map(|r| r.last) {
            if first <= live_last {
                self.truncate_inner(first)?;
            } else if first != live_last + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "an append at index {first} would leave a hole after index {live_last}"
                    ),
                ));
            }
        }
        let payload = postcard::to_stdvec(entries)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut buf = Vec::new();
        encode_record(Kind::Entries, &payload, &mut buf)?;
        if self.active_len() >= self.segment_bytes && self.active_len() > SEGMENT_HEADER {
            self.rotate()?;
        }
        let start = self.active_len();
        self.write_at_end(&buf)?;
        self.records.insert(
            first,
            RecordLoc {
                seq: self.active_seq,
                start,
                end: start + buf.len() as u64,
                first,
                last,
            },
        );
        Ok(())
    }

    fn truncate_inner(&mut self, index: u64) -> io::Result<()> {
        let containing = self
            .records
            .range(..=index)
            .next_back()
            .map(|(_, r)| *r)
            .filter(|r| r.last >= index);
        match containing {
            Some(r) if r.first == index => {
                self.cut(r.seq, r.start)?;
                drop(self.records.split_off(&index));
            }
            Some(r) => {
                // Keep the record (its head is live), drop everything after
                // it, and record the truncation inside it.
                self.cut(r.seq, r.end)?;
                let mut buf = Vec::new();
                encode_record(Kind::Truncate, &index.to_le_bytes(), &mut buf)?;
                self.write_at_end(&buf)?;
                drop(self.records.split_off(&index));
                if let Some(kept) = self.records.get_mut(&r.first) {
                    kept.last = index - 1;
                }
            }
            None => {
                if let Some(r) = self.records.range(index..).next().map(|(_, r)| *r) {
                    self.cut(r.seq, r.start)?;
                    drop(self.records.split_off(&index));
                }
            }
        }
        Ok(())
    }

    /// Makes segment `seq` the active one, cut at `offset`; deletes every
    /// later segment (newest first, so a crash leaves a prefix of the log).
    fn cut(&mut self, seq: u64, offset: u64) -> io::Result<()> {
        let later: Vec<u64> = self
            .segments
            .range(seq.saturating_add(1)..)
            .map(|(s, _)| *s)
            .rev()
            .collect();
        for s in &later {
            if let Some(seg) = self.segments.remove(s) {
                remove_if_present(&seg.path)?;
            }
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        let seg = self.segments.get_mut(&seq).ok_or_else(|| {
            io::Error::other(format!(
                "log segment {seq} is missing from the segment table"
            ))
        })?;
        if seq != self.active_seq {
            self.active = OpenOptions::new().read(true).write(true).open(&seg.path)?;
            self.active_seq = seq;
        }
        if seg.len > offset {
            self.active.set_len(offset)?;
            self.active.sync_all()?;
            seg.len = offset;
        }
        Ok(())
    }

    fn write_at_end(&mut self, buf: &[u8]) -> io::Result<()> {
        let start = self.active_len();
        self.active.seek(SeekFrom::Start(start))?;
        self.active.write_all(buf)?;
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.active.sync_data()?;
        if let Some(seg) = self.segments.get_mut(&self.active_seq) {
            seg.len = start + buf.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        let (file, path) = create_segment(&self.dir, seq)?;
        self.next_seq = seq.saturating_add(1);
        self.segments.insert(
            seq,
            Segment {
                path,
                len: SEGMENT_HEADER,
            },
        );
        self.active = file;
        self.active_seq = seq;
        Ok(())
    }

    /// Deletes the oldest segments that hold no live entry; when nothing is
    /// live, first rotates to a fresh segment so that the old active one can
    /// go too.
    fn compact(&mut self) -> io::Result<()> {
        if self.records.is_empty() && self.active_len() > SEGMENT_HEADER {
            self.rotate()?;
        }
        let live: BTreeSet<u64> = self.records.values().map(|r| r.seq).collect();
        let doomed: Vec<u64> = self
            .segments
            .keys()
            .take_while(|s| **s != self.active_seq && !live.contains(s))
            .copied()
            .collect();
        for s in &doomed {
            if let Some(seg) = self.segments.remove(s) {
                remove_if_present(&seg.path)?;
            }
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
