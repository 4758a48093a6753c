//! The embedded backend's commit log: every batch of changes is appended to it as one record
//! and handed to the operating system before the answers that imply it leave, while the
//! database is brought up to date in the background.
//!
//! Why a log of our own: fjall holds its journal's lock while it syncs the disk (on every
//! memtable flush and journal rotation) and sleeps writers while flushes catch up, so writing
//! the database on the request path made answers wait for disk syncs (p99 over 200 ms at
//! 10,000 requests/s). Appending to this file is never blocked by the database.
//!
//! A record holds the latest encoding of each key a batch changed, so replaying records in
//! order is idempotent: after a crash, startup replays every segment into the database,
//! syncs it, and deletes the segments. Segments the database has synced are deleted as it
//! goes, so the log stays about one segment long.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::disk::{Changes, Space};

/// A segment holding this much is closed and a new one begun.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A record's header: the payload's length (u32) and its xxh3 checksum (u64).
const HEADER_BYTES: usize = 12;

/// Why the log could not be replayed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecoveryError {
    /// A segment could not be read.
    #[error("cannot read the commit log `{path}`: {source}")]
    Read {
        /// The segment.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record before the end of the log is damaged: replaying past it would skip changes.
    #[error("the commit log `{path}` is damaged at byte {offset}")]
    Damaged {
        /// The segment.
        path: PathBuf,
        /// Where its first damaged record starts.
        offset: usize,
    },
}

/// The segment being appended to, in a directory of numbered segments.
pub(crate) struct CommitLog {
    dir: PathBuf,
    number: u64,
    file: Arc<File>,
    len: u64,
}

impl CommitLog {
    /// Starts a new segment after the newest one in `dir` (created when absent).
    pub(crate) fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let newest = segments(dir)?.last().map_or(0, |(number, _)| *number);
        let number = newest + 1;
        Ok(Self {
            dir: dir.to_owned(),
            number,
            file: Arc::new(open_segment(&segment_path(dir, number))?),
            len: 0,
        })
    }

    /// Appends `batch` as one record in one write; a failed write is cut off again, so the
    /// next record follows the last whole one.
    pub(crate) fn append(&mut self, batch: &Changes) -> std::io::Result<()> {
        let record = encode(batch)?;
        if let Err(error) = (&*self.file).write_all(&record) {
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// When the segment is full, begins the next one and returns the full one's path.
    pub(crate) fn rotate_if_full(&mut self) -> std::io::Result<Option<PathBuf>> {
        if self.len < SEGMENT_BYTES {
            return Ok(None);
        }
        let next = segment_path(&self.dir, self.number + 1);
        let file = Arc::new(open_segment(&next)?);
        let full = segment_path(&self.dir, self.number);
        self.number += 1;
        self.file = file;
        self.len = 0;
        Ok(Some(full))
    }

    /// The segment being appended to, for syncing it.
    pub(crate) fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// The segment being appended to.
    pub(crate) fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.number)
    }
}

/// Hands every batch logged in `dir` to `apply`, oldest first; returns the segments read, to
/// delete once what they held is safely in the database. A damaged record at the end of the
/// newest segment is a write a crash cut short (its request was never answered) and ends
/// the replay; one anywhere else is an error.
pub(crate) fn replay(
    dir: &Path,
    mut apply: impl FnMut(Changes),
) -> Result<Vec<PathBuf>, RecoveryError> {
    let found = match segments(dir) {
        Ok(found) => found,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecoveryError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let last = found.len().saturating_sub(1);
    for (index, (_, path)) in found.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|source| RecoveryError::Read {
            path: path.clone(),
            source,
        })?;
        let mut offset = 0;
        while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
            match decode(rest) {
                Some((batch, used)) => {
                    apply(batch);
                    offset += used;
                }
                None if index == last => {
                    tracing::warn!(
                        path = %path.display(),
                        offset,
                        "the commit log ends in a record cut short by a crash; its request \
                         was never answered"
                    );
                    break;
                }
                None => {
                    return Err(RecoveryError::Damaged {
                        path: path.clone(),
                        offset,
                    });
                }
            }
        }
    }
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// The numbered segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str()?.strip_suffix(".log")?.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

fn open_segment(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create_new(true).append(true).open(path)
}

/// A record: header, then per change its space, key, and value (absent for a removal).
fn encode(batch: &Changes) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    for (&(space, key), value) in batch {
        payload.push(space as u8);
        payload.extend_from_slice(&key.to_le_bytes());
        match value {
            Some(bytes) => {
                payload.push(1);
                payload.extend_from_slice(&length(bytes.len())?.to_le_bytes());
                payload.extend_from_slice(bytes);
            }
            None => payload.push(0),
        }
    }
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&length(payload.len())?.to_le_bytes());
    record.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

fn length(len: usize) -> std::io::Result<u32> {
    u32::try_from(len).map_err(|_| std::io::Error::other("a state batch over 4 GiB"))
}

/// The batch at the start of `bytes` and the bytes it took; `None` if it is cut short or
/// damaged.
fn decode(bytes: &[u8]) -> Option<(Changes, usize)> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let (checksum, rest) = rest.split_first_chunk::<8>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let (mut payload, _) = rest.split_at_checked(len)?;
    if len == 0 || xxh3_64(payload) != u64::from_le_bytes(*checksum) {
        return None;
    }
    let mut batch = Changes::new();
    while !payload.is_empty() {
        let (&space, rest) = payload.split_first()?;
        let space = Space::from_code(space)?;
        let (key, rest) = rest.split_first_chunk::<8>()?;
        let (&present, rest) = rest.split_first()?;
        let (value, rest) = match present {
            0 => (None, rest),
            1 => {
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let (value, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
                (Some(value.to_vec()), rest)
            }
            _ => return None,
        };
        batch.insert((space, u64::from_le_bytes(*key)), value);
        payload = rest;
    }
    Some((batch, HEADER_BYTES + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(entries: &[(Space, u64, Option<&[u8]>)]) -> Changes {
        entries
            .iter()
            .map(|(space, key, value)| ((*space, *key), value.map(<[u8]>::to_vec)))
            .collect()
    }

    fn replayed(dir: &Path) -> Result<Vec<Changes>, RecoveryError> {
        let mut batches = Vec::new();
        replay(dir, |batch| batches.push(batch))?;
        Ok(batches)
    }

    #[test]
    fn batches_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let first = batch(&[(Space::Locks, 1, Some(b"until")), (Space::Pending, 2, None)]);
        let second = batch(&[(Space::Profiles, u64::MAX, Some(&[0; 300]))]);
        let mut log = CommitLog::create(dir.path()).unwrap();
        log.append(&first).unwrap();
        log.len = SEGMENT_BYTES;
        let full = log.rotate_if_full().unwrap().expect("rotated");
        log.append(&second).unwrap();
        assert_ne!(full, log.path());
        assert_eq!(replayed(dir.path()).unwrap(), vec![first, second]);
        let next = CommitLog::create(dir.path()).unwrap();
        assert!(
            next.path() > log.path(),
            "a new log starts after the old segments"
        );
    }

    #[test]
    fn a_record_cut_short_ends_the_newest_segment_but_damage_before_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let kept = batch(&[(Space::Failures, 7, Some(b"3 failures"))]);
        let mut log = CommitLog::create(dir.path()).unwrap();
        log.append(&kept).unwrap();
        log.append(&batch(&[(Space::Ips, 8, Some(b"cut"))]))
            .unwrap();
        let len = std::fs::metadata(log.path()).unwrap().len();
        log.file().set_len(len - 2).unwrap();
        assert_eq!(replayed(dir.path()).unwrap(), vec![kept.clone()]);

        let mut newer = CommitLog::create(dir.path()).unwrap();
        newer.append(&kept).unwrap();
        let error = replayed(dir.path()).unwrap_err();
        assert!(matches!(error, RecoveryError::Damaged { .. }), "{error}");

        let mut bytes = std::fs::read(newer.path()).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(newer.path(), bytes).unwrap();
        std::fs::remove_file(log.path()).unwrap();
        assert!(replayed(dir.path()).unwrap().is_empty(), "a flipped bit");
    }

    #[test]
    fn an_absent_log_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            replay(&dir.path().join("none"), |_| panic!())
                .unwrap()
                .is_empty()
        );
    }
}
