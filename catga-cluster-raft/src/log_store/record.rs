//! Checksummed records and the small atomically replaced files built from
//! them.
//!
//! A record is `len: u32 LE | crc: u32 LE | kind: u8 | payload[len]`, where
//! `crc` is the CRC-32 (IEEE, `crc32fast`) of the four length bytes, the kind
//! byte and the payload. The WAL segments are a magic header followed by
//! records; each small file (identity, vote, committed, purged) is a magic
//! header followed by exactly one record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Bytes before the payload: length, checksum, kind.
pub(crate) const RECORD_HEADER: usize = 9;

/// The largest payload a record may carry. A length above this is treated
/// as damage, never as a record.
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// The first eight bytes of every small file.
pub(crate) const META_MAGIC: [u8; 8] = *b"CGMETA\x00\x01";

/// What a record holds. The numbers are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A batch of log entries (postcard `Vec<Entry>`), written by one append.
    Entries,
    /// Drops every entry at or above an index (8 bytes, little endian).
    Truncate,
    /// The node identity (identity file).
    Identity,
    /// The vote (vote file).
    Vote,
    /// The committed log id (committed file).
    Committed,
    /// The last purged log id (purged file).
    Purged,
}

impl Kind {
    fn to_u8(self) -> u8 {
        match self {
            Kind::Entries => 1,
            Kind::Truncate => 2,
            Kind::Identity => 16,
            Kind::Vote => 17,
            Kind::Committed => 18,
            Kind::Purged => 19,
        }
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Entries,
            2 => Kind::Truncate,
            16 => Kind::Identity,
            17 => Kind::Vote,
            18 => Kind::Committed,
            19 => Kind::Purged,
            _ => return None,
        })
    }
}

fn checksum(len: [u8; 4], kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `out`.
///
/// The caller checks `payload.len() <= MAX_PAYLOAD`.
pub(crate) fn encode_record(kind: Kind, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a record of {} bytes exceeds the limit of {MAX_PAYLOAD} bytes",
                payload.len()
            ),
        ));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?
        .to_le_bytes();
    let kind = kind.to_u8();
    out.reserve(RECORD_HEADER + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, kind, payload).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(())
}

/// The outcome of reading a record at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// The buffer is empty: a clean end.
    End,
    /// A record whose checksum matches.
    Record {
        /// Its kind, or `Err(byte)` for a kind this version does not know.
        kind: Result<Kind, u8>,
        /// Its payload.
        payload: &'a [u8],
        /// Header plus payload.
        total: usize,
    },
    /// No valid record starts here (torn or damaged).
    Invalid(&'static str),
}

/// Reads the record at the start of `buf`.
pub(crate) fn parse_record(buf: &[u8]) -> Parsed<'_> {
    if buf.is_empty() {
        return Parsed::End;
    }
    let Some((header, rest)) = buf.split_first_chunk::<RECORD_HEADER>() else {
        return Parsed::Invalid("the file ends inside a record header");
    };
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let kind = header[8];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD {
        return Parsed::Invalid("the record length is out of range");
    }
    let Some(payload) = rest.get(..len) else {
        return Parsed::Invalid("the file ends inside a record");
    };
    if checksum(len_bytes, kind, payload) != crc {
        return Parsed::Invalid("the record checksum does not match");
    }
    Parsed::Record {
        kind: Kind::from_u8(kind).ok_or(kind),
        payload,
        total: RECORD_HEADER + len,
    }
}

/// The offset of the first position at or after `from` where a record with
/// a matching checksum and a known kind starts, if any.
///
/// Used after a bad record to tell a torn tail (nothing valid follows) from
/// damage in the middle of a log (valid records follow).
pub(crate) fn find_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&at| {
        matches!(
            buf.get(at..).map(parse_record),
            Some(Parsed::Record { kind: Ok(_), .. })
        )
    })
}

/// Why a small file could not be read.
#[derive(Debug)]
pub(crate) enum MetaError {
    /// Reading failed.
    Io(io::Error),
    /// The file is damaged; the message says how.
    Corrupt(String),
}

/// Reads the payload of a small file written by [`write_meta_atomic`].
///
/// `Ok(None)` when the file does not exist.
pub(crate) fn read_meta(path: &Path, kind: Kind) -> Result<Option<Vec<u8>>, MetaError> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MetaError::Io(e)),
    };
    let Some(body) = data.strip_prefix(&META_MAGIC) else {
        return Err(MetaError::Corrupt(
            "the file does not start with the expected magic bytes".to_string(),
        ));
    };
    match parse_record(body) {
        Parsed::Record {
            kind: found,
            payload,
            total,
        } => {
            if found != Ok(kind) {
                return Err(MetaError::Corrupt(format!(
                    "the file holds a record of kind {found:?}, expected {kind:?}"
                )));
            }
            if total != body.len() {
                return Err(MetaError::Corrupt(format!(
                    "{} unexpected bytes follow the record",
                    body.len() - total
                )));
            }
            Ok(Some(payload.to_vec()))
        }
        Parsed::End => Err(MetaError::Corrupt("the file holds no record".to_string())),
        Parsed::Invalid(why) => Err(MetaError::Corrupt(why.to_string())),
    }
}

/// The name of the temporary file used to replace `name` atomically.
pub(crate) fn temp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Replaces `dir/name` atomically and durably with one record: write
/// `dir/name.tmp`, fsync it, rename it over `dir/name`, fsync `dir`.
pub(crate) fn write_meta_atomic(
    dir: &Path,
    name: &str,
    kind: Kind,
    payload: &[u8],
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(META_MAGIC.len() + RECORD_HEADER + payload.len());
    buf.extend_from_slice(&META_MAGIC);
    encode_record(kind, payload, &mut buf)?;
    write_file_atomic(dir, name, &buf)
}

/// Replaces `dir/name` atomically and durably with `contents`.
pub(crate) fn write_file_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(temp_name(name));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes the directory entries of `dir` (created, renamed, removed files)
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; renames are made
        // durable by the file system itself.
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` (and its parents) if missing and makes the new entry
/// durable in its parent.
pub(crate) fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_damage() {
        let mut buf = Vec::new();
        encode_record(Kind::Entries, b"hello", &mut buf).unwrap();
        encode_record(Kind::Truncate, &7u64.to_le_bytes(), &mut buf).unwrap();
        let Parsed::Record {
            kind,
            payload,
            total,
        } = parse_record(&buf)
        else {
            panic!("first record must parse");
        };
        assert_eq!(kind, Ok(Kind::Entries));
        assert_eq!(payload, b"hello");
        assert!(matches!(
            parse_record(&buf[total..]),
            Parsed::Record {
                kind: Ok(Kind::Truncate),
                ..
            }
        ));
        assert!(matches!(parse_record(&[]), Parsed::End));
        assert!(matches!(parse_record(&buf[..5]), Parsed::Invalid(_)));
        assert!(matches!(
            parse_record(&buf[..total - 1]),
            Parsed::Invalid(_)
        ));

        let mut bad = buf.clone();
        bad[RECORD_HEADER] ^= 0x01;
        assert!(matches!(parse_record(&bad), Parsed::Invalid(_)));
        assert_eq!(find_valid_record(&bad, 1), Some(total));
        assert_eq!(find_valid_record(&bad[..total], 1), None);
        assert!(matches!(parse_record(&[0u8; 32]), Parsed::Invalid(_)));
    }
}
