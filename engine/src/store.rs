//! A shard's durable state: an append-only log of what changed the state, with a checksum per
//! record, plus a snapshot that lets the log be truncated.
//!
//! Group commit: the runtime appends the records of a whole batch (framed by the node, see
//! `fastpay_node::log`) and makes them durable with one `write` and one `fdatasync` before the
//! node releases any reply of that batch, so a vote is never sent before the pending order it
//! records survives a crash, and a confirmation is never acknowledged before its debit does.
//!
//! Files, in `<data-dir>/shard-<j>/`: `snapshot` (written to a temporary file, fsynced and
//! renamed, so it is always whole) and logs `log-<g>` numbered by generation. A snapshot is
//! taken off the shard's critical path: at the cut the store closes log `g` and goes on
//! appending to log `g + 1` while the shard encodes its state at the cut a slice at a time;
//! then a background thread writes the encoding (marked "covers every log before `g + 1`")
//! and deletes the logs it covers. Recovery loads the snapshot and
//! returns, in order, the records of the logs it does not cover, so a crash at any point of
//! that sequence loses nothing and replays nothing twice. A snapshot file is one log record.
//! A torn tail (see `fastpay_node::log`) is truncated and reported; corruption stops recovery
//! with an error naming the file and offset: never a silent reset to genesis.
//!
//! Log files are zero-filled ahead of the writes: a background thread writes [`LOG_FILE_BYTES`]
//! of zeros into `log-spare` and syncs them, and the store moves on to it (renamed to the next
//! generation, the directory synced) when the next group would not fit in the open log's
//! zeros. A group written over zeros already on disk changes no file size and allocates no
//! block, so its `fdatasync` has no metadata to journal: on ext4 in a KVM guest that took the
//! sync's median from about 190 to 140 µs and its 99th percentile from 280–960 to about 210 µs.
//! Without a spare ready the group extends the file, as before: slower, equally durable.
//! Recovery reads a zero tail as unwritten space, not as a torn write.
//!
//! We wrote this rather than use an embedded database: the shard needs exactly one write and
//! one fsync per batch and a whole-state snapshot, which a log gives with no read path to pay
//! for, where redb or fjall would add transactions and compaction of their own. The
//! certificates, which do have a read path and outlive the logs, are kept beside it
//! (`crate::certificates`, owned with this store by the log writer), with this log as their
//! write-ahead log.

use crate::certificates::{CertificateStoreError, CertificateWriter};
use fastpay_node::log::{
    DecodedLog, EncodedSnapshot, GROUP_HEADER, LogError, Record, Snapshot, TornTail, new_group,
    parse_frames, seal_group,
};
use fastpay_wire::codec::{decode_stored, encode_stored_to};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Shard `shard`'s directory in the authority's data directory `data_dir`.
pub fn shard_dir(data_dir: &Path, shard: u32) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

const HEADER: usize = fastpay_node::log::RECORD_HEADER;

pub use fastpay_node::SNAPSHOT_AFTER_BYTES;

/// Bytes of zeros a log file is prepared with before the store writes into it (module docs).
pub const LOG_FILE_BYTES: u64 = 4 << 20;

/// The zeros are written and synced this many bytes at a time, so that no sync of the log
/// waits behind a large flush of them.
const ZERO_FILL_PIECE: usize = 256 << 10;

/// How much of a snapshot file is written between two syncs.
const SNAPSHOT_PIECE: usize = 256 << 10;

/// The fastest a snapshot file is written, in bytes a second: a disk flush includes whatever
/// was written before it, so the log's syncs pay for the snapshot's bytes written meanwhile.
/// At this rate a snapshot of 185,000 accounts with pending votes (78 MB) takes 1.2 s, well
/// within the 5 s the shard takes at 35,000 orders a second to log the next 64 MiB.
const SNAPSHOT_WRITE_RATE: u64 = 64 << 20;

/// Why a data directory could not be used.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A log record in the middle of the log fails its checksum or does not decode.
    #[error("{path}: corrupt record at byte {offset} ({reason}); refusing to start")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The shard's state is too large for a snapshot record (a record's length is a u32).
    #[error("the shard's state is too large to snapshot (over 4 GiB encoded); refusing to go on")]
    SnapshotTooLarge,
    /// The certificate store failed.
    #[error(transparent)]
    Certificates(#[from] CertificateStoreError),
    /// Another process holds the directory: two copies of a shard would vote from two states.
    #[error(
        "{path} is locked by another running copy of this shard ({holder}); refusing to start \
         a second one, which could sign two conflicting votes"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as far as the lock file says.
        holder: String,
    },
}

/// What recovery found.
pub struct Recovered {
    /// The last snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Records logged since, in order.
    pub records: Vec<Record>,
    /// A torn tail that was cut off.
    pub truncated: Option<TornTail>,
}

/// One shard's open log.
pub struct ShardStore {
    dir: PathBuf,
    /// The directory's lock (an exclusive `flock` on `LOCK`), held while the store lives.
    _lock: File,
    log: File,
    /// The open log's generation.
    generation: u64,
    /// Where the open log's whole groups end: the next group is written there.
    log_len: u64,
    /// The open log file's length: zeros past `log_len`.
    log_file_len: u64,
    /// Bytes of whole groups in the earlier logs that no snapshot covers yet.
    earlier_logs_len: u64,
    snapshot_len: u64,
    /// Where the log was cut for the snapshot being encoded, if it was.
    cut: Option<Cut>,
    /// The snapshot being written in the background: its thread reports the file's length.
    writer: Option<JoinHandle<Result<u64, StoreError>>>,
    /// The next log file, being zero-filled in the background or ready.
    spare: Option<SpareLog>,
    pending: Vec<u8>,
    fsyncs: u64,
}

/// Where the log was cut for a snapshot.
struct Cut {
    /// The first generation the snapshot does not cover.
    generation: u64,
    /// Bytes of the logs before it, which the snapshot covers.
    earlier_logs_len: u64,
}

/// The thread zero-filling `log-spare`, and how to stop it early.
struct SpareLog {
    thread: JoinHandle<io::Result<()>>,
    cancel: Arc<AtomicBool>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ShardStore {
    /// Opens (creating if needed) the shard directory `dir` and recovers its contents.
    pub fn open(dir: &Path) -> Result<(ShardStore, Recovered), StoreError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        let snapshot_path = dir.join("snapshot");
        let (snapshot, snapshot_len) = match fs::read(&snapshot_path) {
            Ok(bytes) => {
                let records = parse_frames(&bytes).map_err(corrupt_at(&snapshot_path))?;
                if records.payloads.len() != 1 {
                    return Err(StoreError::Corrupt {
                        path: snapshot_path,
                        offset: 0,
                        reason: "snapshot is not one whole record",
                    });
                }
                let (covers, snapshot): (u64, Snapshot) = decode_stored(records.payloads[0])
                    .map_err(|_| StoreError::Corrupt {
                        path: snapshot_path.clone(),
                        offset: 0,
                        reason: "snapshot does not decode",
                    })?;
                (Some((covers, snapshot)), bytes.len() as u64)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, 0),
            Err(e) => return Err(io_at(&snapshot_path)(e)),
        };
        let covers = snapshot.as_ref().map_or(0, |(covers, _)| *covers);
        let snapshot = snapshot.map(|(_, snapshot)| snapshot);
        // A spare left by an earlier run may be half filled: it is made again.
        remove_if_present(&spare_path(dir))?;

        // Logs the snapshot covers are leftovers of a crash before their deletion.
        let generations = remove_covered_logs(dir, covers)?;
        let generation = generations.last().copied().unwrap_or(covers);
        let mut records = Vec::new();
        let mut truncated = None;
        let (mut earlier_logs_len, mut log_len) = (0, 0);
        for g in generations {
            let path = log_path(dir, g);
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            let mut decoded = decode_log(&path, &bytes)?;
            if let Some((offset, _)) = decoded.torn {
                if g != generation {
                    // An older log was committed whole before the next one started.
                    return Err(StoreError::Corrupt {
                        path,
                        offset,
                        reason: "torn record in a closed log",
                    });
                }
                truncated = decoded.torn;
            }
            if g == generation {
                log_len = decoded.end;
            } else {
                earlier_logs_len += decoded.end;
            }
            records.append(&mut decoded.records);
        }
        let path = log_path(dir, generation);
        let log = open_log(&path)?;
        let mut log_file_len = log.metadata().map_err(io_at(&path))?.len();
        if let Some((offset, _)) = truncated {
            log.set_len(offset).map_err(io_at(&path))?;
            log.sync_all().map_err(io_at(&path))?;
            log_file_len = offset;
        }
        if log_file_len == 0 {
            // A new log (a new directory, or the snapshot's before a crash): zero-filled now,
            // so that the first groups are as quick to sync as the rest.
            zero_fill(&log, &AtomicBool::new(false)).map_err(io_at(&path))?;
            log_file_len = LOG_FILE_BYTES;
        }
        sync_dir(dir)?;
        Ok((
            ShardStore {
                dir: dir.to_path_buf(),
                _lock: lock,
                log,
                generation,
                log_len,
                log_file_len,
                earlier_logs_len,
                snapshot_len,
                cut: None,
                writer: None,
                spare: Some(SpareLog::start(dir)),
                pending: {
                    let mut group = Vec::new();
                    new_group(&mut group);
                    group
                },
                fsyncs: 0,
            },
            Recovered {
                snapshot,
                records,
                truncated,
            },
        ))
    }

    /// The buffer to append framed records to (from `ShardNode::take_log`); the next
    /// [`commit`](Self::commit) writes them as one group.
    pub fn pending_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Whether records wait for a commit.
    pub fn has_pending(&self) -> bool {
        self.pending.len() > GROUP_HEADER
    }

    /// Makes every queued record durable: one group, one write, one `fdatasync`.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.has_pending() {
            return Ok(());
        }
        seal_group(&mut self.pending);
        let len = self.pending.len() as u64;
        if self.log_len + len > self.log_file_len && len <= LOG_FILE_BYTES {
            self.move_to_spare()?;
        }
        if let Err(e) = self
            .log
            .write_all_at(&self.pending, self.log_len)
            .and_then(|()| self.log.sync_data())
        {
            return Err(io_at(&log_path(&self.dir, self.generation))(e));
        }
        self.fsyncs += 1;
        self.log_len += len;
        self.log_file_len = self.log_file_len.max(self.log_len);
        new_group(&mut self.pending);
        Ok(())
    }

    /// Goes on in the next generation's log, the zero-filled spare, if it is ready (else the
    /// open log grows as groups are written past its end), and starts filling the next spare.
    fn move_to_spare(&mut self) -> Result<(), StoreError> {
        if !self.spare.as_ref().is_some_and(SpareLog::is_finished) {
            return Ok(());
        }
        if self.spare.take().is_some_and(|spare| spare.join(&self.dir)) {
            self.open_next_log(Some(spare_path(&self.dir)))?;
            self.spare = Some(SpareLog::start(&self.dir));
        }
        // A spare that could not be made is tried again at the next snapshot.
        Ok(())
    }

    /// Closes the open log and opens the next generation's: `spare` renamed into place, or a
    /// new empty file. The directory is synced before any group goes into it.
    fn open_next_log(&mut self, spare: Option<PathBuf>) -> Result<(), StoreError> {
        let next = self.generation + 1;
        let path = log_path(&self.dir, next);
        if let Some(spare) = spare {
            fs::rename(&spare, &path).map_err(io_at(&path))?;
        }
        let log = open_log(&path)?;
        let log_file_len = log.metadata().map_err(io_at(&path))?.len();
        sync_dir(&self.dir)?;
        self.log = log;
        self.generation = next;
        self.earlier_logs_len += self.log_len;
        self.log_len = 0;
        self.log_file_len = log_file_len;
        Ok(())
    }

    /// Whether a snapshot is being written in the background.
    pub fn snapshot_in_progress(&self) -> bool {
        self.writer.is_some()
    }

    /// Cuts the log for a snapshot of the state as it stands (including every record appended
    /// so far): commits, closes the log and opens the next generation's, which later records
    /// go to. The snapshot, encoded meanwhile, is handed over with
    /// [`write_snapshot`](Self::write_snapshot); until it lands, recovery reads the logs
    /// before the cut as well, so a crash loses nothing. A cut not yet written is replaced.
    pub fn cut(&mut self) -> Result<(), StoreError> {
        self.cut = Some(self.cut_log()?);
        Ok(())
    }

    /// Commits, closes the log and opens the next generation's; returns where it was cut.
    fn cut_log(&mut self) -> Result<Cut, StoreError> {
        self.commit()?;
        self.wait_snapshot()?;
        let spare = match self.spare.take() {
            Some(spare) if spare.is_finished() => {
                spare.join(&self.dir).then(|| spare_path(&self.dir))
            }
            unfinished => {
                self.spare = unfinished;
                None
            }
        };
        self.open_next_log(spare)?;
        if self.spare.is_none() {
            self.spare = Some(SpareLog::start(&self.dir));
        }
        Ok(Cut {
            generation: self.generation,
            earlier_logs_len: self.earlier_logs_len,
        })
    }

    /// Starts writing `snapshot` in the background: the state at the last
    /// [`cut`](Self::cut), or, without one, as it stands (the log is cut now). Once it lands
    /// it replaces the logs before the cut; [`poll_snapshot`](Self::poll_snapshot) reports
    /// the outcome.
    ///
    /// The logs the snapshot lets go of hold certificates: it is written only once
    /// `certificates` has stored and synced every one handed over so far.
    pub fn write_snapshot(
        &mut self,
        snapshot: EncodedSnapshot,
        certificates: &CertificateWriter,
    ) -> Result<(), StoreError> {
        let cut = match self.cut.take() {
            Some(cut) => cut,
            None => self.cut_log()?,
        };
        let covers = cut.generation;
        let certificates_synced = certificates.sync_barrier();
        self.wait_snapshot()?;
        // Every log before the cut is the snapshot's.
        self.earlier_logs_len = self.earlier_logs_len.saturating_sub(cut.earlier_logs_len);
        let dir = self.dir.clone();
        self.writer = Some(std::thread::spawn(move || {
            // Nice 19: a writer sharing a core with a shard thread runs only when the shard has
            // nothing to do. Failing leaves the normal priority, which is still correct.
            let _ = fastpay_udp::lower_thread_priority();
            certificates_synced
                .recv()
                .unwrap_or_else(|_| Err(CertificateStoreError::Stopped { path: dir.clone() }))?;
            write_snapshot_file(&dir, covers, &snapshot)
        }));
        Ok(())
    }

    /// Whether the background snapshot finished: `Ok(true)` once it is durable and the logs
    /// it covers are gone, `Ok(false)` while it is being written (or when none is).
    pub fn poll_snapshot(&mut self) -> Result<bool, StoreError> {
        if !self.writer.as_ref().is_some_and(|w| w.is_finished()) {
            return Ok(false);
        }
        self.wait_snapshot()?;
        Ok(true)
    }

    /// Waits for the background snapshot, if any.
    pub fn wait_snapshot(&mut self) -> Result<(), StoreError> {
        if let Some(writer) = self.writer.take() {
            let len = writer.join().unwrap_or_else(|_| {
                Err(StoreError::Corrupt {
                    path: self.dir.join("snapshot"),
                    offset: 0,
                    reason: "the snapshot writer panicked",
                })
            })?;
            self.fsyncs += 3;
            self.snapshot_len = len;
        }
        Ok(())
    }

    /// `fdatasync`s so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Bytes of records in the logs no snapshot covers (what the next snapshot would let go).
    pub fn log_bytes(&self) -> u64 {
        self.earlier_logs_len + self.log_len
    }

    /// Bytes of records and snapshot on disk (zeros prepared ahead of the log not counted).
    pub fn disk_bytes(&self) -> u64 {
        self.log_bytes() + self.snapshot_len
    }
}

impl SpareLog {
    /// Starts zero-filling `dir`'s `log-spare` in the background, at the lowest priority.
    fn start(dir: &Path) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let path = spare_path(dir);
        let stop = cancel.clone();
        let thread = std::thread::spawn(move || {
            let _ = fastpay_udp::lower_thread_priority();
            zero_fill(&File::create(&path)?, &stop)
        });
        Self { thread, cancel }
    }

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread; whether the spare is ready. A spare that could not be made is
    /// reported and done without: the log then grows as it is written.
    fn join(self, dir: &Path) -> bool {
        match self.thread.join() {
            Ok(Ok(())) => !self.cancel.load(Ordering::Relaxed),
            Ok(Err(e)) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "{}: could not prepare the next log file ({e}); the log grows as it is \
                     written instead (slower syncs)",
                    dir.display()
                );
                false
            }
            Err(_) => false,
        }
    }
}

/// Writes [`LOG_FILE_BYTES`] of zeros into the empty `file` and syncs them, piece by piece,
/// until done or `cancel`led.
fn zero_fill(file: &File, cancel: &AtomicBool) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_FILL_PIECE];
    let mut written = 0;
    while written < LOG_FILE_BYTES && !cancel.load(Ordering::Relaxed) {
        file.write_all_at(&zeros, written)?;
        file.sync_data()?;
        written += ZERO_FILL_PIECE as u64;
    }
    file.sync_all()
}

impl Drop for ShardStore {
    fn drop(&mut self) {
        // A clean stop lets the snapshot finish; a crash leaves it to recovery.
        let _ = self.wait_snapshot();
        if let Some(spare) = self.spare.take() {
            spare.cancel.store(true, Ordering::Relaxed);
            let _ = spare.thread.join();
        }
    }
}

/// Takes the exclusive lock of a shard directory and writes our process id into it, so that
/// a second copy can name the holder. The kernel releases the lock when the process ends,
/// however it ends.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
                .map_or_else(|| "process unknown".to_string(), |pid| format!("pid {pid}"));
            return Err(StoreError::Locked { path, holder });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_at(&path))?;
    Ok(file)
}

/// The path of log generation `g` in `dir`.
fn log_path(dir: &Path, g: u64) -> PathBuf {
    dir.join(format!("log-{g}"))
}

/// Opens (creating if needed) a log file; groups are written at their offsets.
fn open_log(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_at(path))
}

/// The zero-filled file the next log is made from (not a generation: recovery ignores it).
fn spare_path(dir: &Path) -> PathBuf {
    dir.join("log-spare")
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

/// Deletes the logs in `dir` older than generation `covers` (a snapshot holds what they
/// held); returns the generations left, in order.
fn remove_covered_logs(dir: &Path, covers: u64) -> Result<Vec<u64>, StoreError> {
    let mut left = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let Some(g) = entry.file_name().to_str().and_then(log_generation) else {
            continue;
        };
        if g < covers {
            fs::remove_file(entry.path()).map_err(io_at(&entry.path()))?;
        } else {
            left.push(g);
        }
    }
    left.sort_unstable();
    Ok(left)
}

/// The generation of a log file's name, if it is one.
fn log_generation(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Writes `snapshot` as covering every log before generation `covers` (one record, like a
/// log entry, holding the pair's encoding), renames it into place, and deletes the logs it
/// covers; returns the file's length.
///
/// The file is written and synced [`SNAPSHOT_PIECE`] at a time, as the spare log is zero-filled:
/// written whole and synced once, a snapshot of tens of megabytes queued that much at the disk
/// at once, ahead of the log's own syncs.
fn write_snapshot_file(
    dir: &Path,
    covers: u64,
    snapshot: &EncodedSnapshot,
) -> Result<u64, StoreError> {
    let path = dir.join("snapshot");
    let tmp = dir.join("snapshot.tmp");
    let too_large = || StoreError::SnapshotTooLarge;
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    // A pair encodes as its two parts one after the other.
    let mut head = Vec::with_capacity(HEADER + 8);
    head.resize(HEADER, 0);
    let covers_len = encode_stored_to(&covers, &mut head).map_err(|_| too_large())?;
    let len = u32::try_from(covers_len + snapshot.as_bytes().len()).map_err(|_| too_large())?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[HEADER..]);
    hasher.update(snapshot.as_bytes());
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..HEADER].copy_from_slice(&hasher.finalize().to_le_bytes());
    file.write_all(&head).map_err(io_at(&tmp))?;
    let started = Instant::now();
    let mut written = 0u64;
    for piece in snapshot.as_bytes().chunks(SNAPSHOT_PIECE) {
        file.write_all(piece).map_err(io_at(&tmp))?;
        file.sync_data().map_err(io_at(&tmp))?;
        written += piece.len() as u64;
        let due = Duration::from_secs_f64(written as f64 / SNAPSHOT_WRITE_RATE as f64);
        if let Some(early) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(early);
        }
    }
    file.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    remove_covered_logs(dir, covers)?;
    sync_dir(dir)?;
    Ok(HEADER as u64 + u64::from(len))
}

/// Decodes the records of a log file's contents (named `path` in errors): the records, and
/// the torn tail found after them, if any. Pure, so it can be fuzzed.
pub fn decode_log(path: &Path, bytes: &[u8]) -> Result<DecodedLog, StoreError> {
    fastpay_node::log::decode_log(bytes).map_err(corrupt_at(path))
}

fn corrupt_at(path: &Path) -> impl FnOnce(LogError) -> StoreError + '_ {
    move |e| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: e.offset,
        reason: e.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_authority::ShardSnapshot;
    use fastpay_node::log::{LinkState, append_record};
    use fastpay_wire::{
        AccountId, Amount, AuthorityName, CertifiedTransferOrder, CommitteeId, CrossShardUpdate,
        KeyPair, SequenceNumber, Signature, SignedTransferOrder, Transfer, TransferOrder,
    };

    fn vote(n: u64) -> Record {
        let key = KeyPair::from_seed([1; 32]);
        Record::Vote(SignedTransferOrder {
            value: TransferOrder::new(
                Transfer {
                    sender: key.account(),
                    recipient: AccountId([2; 32]),
                    amount: Amount::new(n),
                    sequence_number: SequenceNumber::new(n),
                    user_data: None,
                },
                // The store keeps records as they are; nothing here verifies a signature.
                &CommitteeId([0; 32]),
                &key,
            ),
            authority: AuthorityName([3; 32]),
            signature: fastpay_wire::VoteSignature::Single(Signature([4; 64])),
        })
    }

    /// The certificate store a snapshot waits for.
    fn certificates(dir: &Path) -> CertificateWriter {
        CertificateWriter::open(dir, "certs-test".into()).unwrap()
    }

    fn append(store: &mut ShardStore, record: &Record) {
        assert!(append_record(record, &mut Vec::new(), store.pending_mut()));
    }

    fn write(dir: &Path, n: u64) {
        let (mut store, recovered) = ShardStore::open(dir).unwrap();
        assert!(recovered.records.is_empty());
        for i in 0..n {
            append(&mut store, &vote(i));
        }
        store.commit().unwrap();
        assert_eq!(store.fsyncs(), 1, "one fsync for the whole batch");
    }

    /// Writes `n` votes, one commit (one group) each.
    fn write_groups(dir: &Path, n: u64) {
        let (mut store, _) = ShardStore::open(dir).unwrap();
        for i in 0..n {
            append(&mut store, &vote(i));
            store.commit().unwrap();
        }
    }

    #[test]
    fn a_directory_opens_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = ShardStore::open(dir.path()).unwrap();
        match ShardStore::open(dir.path()) {
            Err(StoreError::Locked { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()))
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a locked directory opened twice"),
        }
        drop(first);
        ShardStore::open(dir.path()).unwrap();
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5);
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.records, (0..5).map(vote).collect::<Vec<_>>());
        assert_eq!(recovered.truncated, None);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_groups(dir.path(), 5);
        let log = dir.path().join("log-0");
        let bytes = fs::read(&log).unwrap();
        let end = decode_log(&log, &bytes).unwrap().end as usize;
        assert_eq!(
            bytes.len() as u64,
            LOG_FILE_BYTES,
            "zero-filled ahead of the groups"
        );
        // The end of the last group never reached the disk, as in a crash during its write.
        let mut cut = bytes.clone();
        cut[end - 20..end].fill(0);
        fs::write(&log, &cut).unwrap();
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.records, (0..4).map(vote).collect::<Vec<_>>());
        let (offset, removed) = recovered.truncated.unwrap();
        assert_eq!(offset + removed, bytes.len() as u64);
        assert_eq!(
            fs::metadata(&log).unwrap().len(),
            offset,
            "cut at the torn group"
        );
        // A flipped byte in the last group is a torn tail too.
        let bytes = fs::read(&log).unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        fs::write(&log, &flipped).unwrap();
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.records, (0..3).map(vote).collect::<Vec<_>>());
        assert!(recovered.truncated.is_some());
    }

    #[test]
    fn corruption_in_the_middle_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        write_groups(dir.path(), 5);
        let log = dir.path().join("log-0");
        let mut bytes = fs::read(&log).unwrap();
        bytes[HEADER + 10] ^= 0xff; // Inside the first record's payload.
        fs::write(&log, &bytes).unwrap();
        match ShardStore::open(dir.path()) {
            Err(StoreError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, log);
                assert_eq!(offset, 0);
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("corruption accepted"),
        }
        let message = ShardStore::open(dir.path()).err().unwrap().to_string();
        assert!(
            message.contains("log-0: corrupt record at byte 0"),
            "{message}"
        );
    }

    #[test]
    fn snapshots_replace_the_log() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3);
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        let snapshot = Snapshot {
            arrivals: 0,
            shard: ShardSnapshot::default(),
            links: LinkState {
                numbered: vec![0, 7],
                applied: vec![3, 2],
                outbox: vec![(
                    1,
                    7,
                    CrossShardUpdate {
                        recipient_shard: fastpay_wire::ShardId(1),
                        certificate: CertifiedTransferOrder {
                            value: match vote(1) {
                                Record::Vote(v) => v.value,
                                _ => unreachable!(),
                            },
                            signatures: Vec::new(),
                        },
                    },
                )],
            },
        };
        let certificates = certificates(dir.path());
        store
            .write_snapshot(encoded(&snapshot), &certificates)
            .unwrap();
        store.wait_snapshot().unwrap();
        append(&mut store, &vote(9));
        store.commit().unwrap();
        drop(store);
        let (store, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(snapshot));
        assert_eq!(recovered.records, vec![vote(9)]);
        assert!(store.disk_bytes() > 0);
    }

    fn encoded(snapshot: &Snapshot) -> EncodedSnapshot {
        EncodedSnapshot::encode(snapshot).unwrap()
    }

    fn empty_snapshot() -> Snapshot {
        Snapshot {
            arrivals: 0,
            shard: ShardSnapshot::default(),
            links: LinkState::default(),
        }
    }

    #[test]
    fn a_crash_during_a_background_snapshot_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3);
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        let empty = empty_snapshot();
        // The shard moved on to log 1 but the snapshot never landed: both logs replay.
        let old_log = fs::read(dir.path().join("log-0")).unwrap();
        store
            .write_snapshot(encoded(&empty), &certificates(dir.path()))
            .unwrap();
        append(&mut store, &vote(3));
        store.commit().unwrap();
        store.wait_snapshot().unwrap();
        drop(store);
        let covered = fs::read(dir.path().join("snapshot")).unwrap();
        fs::remove_file(dir.path().join("snapshot")).unwrap();
        fs::write(dir.path().join("log-0"), &old_log).unwrap();
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, None);
        assert_eq!(recovered.records, (0..4).map(vote).collect::<Vec<_>>());

        // The snapshot landed but the log it covers was not deleted yet: only log 1 replays,
        // and the covered log is removed.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3);
        fs::write(dir.path().join("snapshot"), &covered).unwrap();
        fs::write(dir.path().join("log-0"), &old_log).unwrap();
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        append(&mut store, &vote(4));
        store.commit().unwrap();
        drop(store);
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(empty));
        assert_eq!(recovered.records, vec![vote(4)]);
        assert!(!dir.path().join("log-0").exists());
    }

    #[test]
    fn records_between_a_cut_and_its_snapshot_replay_after_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3);
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        let at_cut = empty_snapshot();
        store.cut().unwrap();
        append(&mut store, &vote(3));
        store.commit().unwrap();
        // A crash before the snapshot is handed over: every record replays.
        drop(store);
        let (mut store, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, None);
        assert_eq!(recovered.records, (0..4).map(vote).collect::<Vec<_>>());

        // The snapshot of the state at the cut lands after more records: they replay after it.
        store.cut().unwrap();
        append(&mut store, &vote(4));
        store.commit().unwrap();
        let certificates = certificates(dir.path());
        store
            .write_snapshot(encoded(&at_cut), &certificates)
            .unwrap();
        append(&mut store, &vote(5));
        store.commit().unwrap();
        store.wait_snapshot().unwrap();
        drop(store);
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(at_cut));
        assert_eq!(recovered.records, vec![vote(4), vote(5)]);
    }

    #[test]
    fn records_after_a_background_snapshot_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 2);
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        let empty = empty_snapshot();
        let certificates = certificates(dir.path());
        for round in 0..3u64 {
            store
                .write_snapshot(encoded(&empty), &certificates)
                .unwrap();
            append(&mut store, &vote(10 + round));
            store.commit().unwrap();
            while !store.poll_snapshot().unwrap() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        drop(store);
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(recovered.snapshot, Some(empty));
        // Each snapshot covered the logs before it; the last one's log holds the last vote.
        assert_eq!(recovered.records, vec![vote(12)]);
        let logs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                log_generation(name.to_str().unwrap()).is_some()
            })
            .count();
        assert_eq!(logs, 1, "covered logs are deleted");
    }

    /// Appends `groups` groups of `votes` votes each, numbered from `first`.
    fn write_big_groups(store: &mut ShardStore, first: u64, groups: u64, votes: u64) {
        for g in 0..groups {
            for i in 0..votes {
                append(store, &vote(first + g * votes + i));
            }
            store.commit().unwrap();
        }
    }

    /// Waits until the spare log is zero-filled.
    fn wait_for_spare(store: &ShardStore) {
        while !store.spare.as_ref().unwrap().is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn groups_are_written_over_zeros_then_into_the_spare() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        let group_bytes = {
            let before = store.log_bytes();
            write_big_groups(&mut store, 0, 1, 1000);
            store.log_bytes() - before
        };
        // Enough groups to go past the first file's zeros.
        let groups = LOG_FILE_BYTES / group_bytes + 1;
        wait_for_spare(&store);
        write_big_groups(&mut store, 1000, groups, 1000);
        assert_eq!(store.generation, 1, "moved on to the spare");
        let log_0 = dir.path().join("log-0");
        assert_eq!(fs::metadata(&log_0).unwrap().len(), LOG_FILE_BYTES);
        assert_eq!(
            fs::metadata(dir.path().join("log-1")).unwrap().len(),
            LOG_FILE_BYTES,
            "the spare's zeros, written over"
        );
        assert_eq!(store.log_bytes(), (groups + 1) * group_bytes);
        wait_for_spare(&store);
        assert!(dir.path().join("log-spare").exists(), "the next spare");
        drop(store);
        let (store, recovered) = ShardStore::open(dir.path()).unwrap();
        let total = (groups + 1) * 1000;
        assert_eq!(recovered.records, (0..total).map(vote).collect::<Vec<_>>());
        assert_eq!(recovered.truncated, None);
        assert_eq!(store.log_bytes(), (groups + 1) * group_bytes);
    }

    #[test]
    fn without_a_spare_the_log_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ShardStore::open(dir.path()).unwrap();
        // As when the spare could not be made (the disk full, say).
        let spare = store.spare.take().unwrap();
        spare.cancel.store(true, Ordering::Relaxed);
        assert!(!spare.join(dir.path()), "a cancelled spare is not used");
        let groups = LOG_FILE_BYTES / 100_000 + 1;
        write_big_groups(&mut store, 0, groups, 500);
        assert_eq!(store.generation, 0);
        let log_0 = dir.path().join("log-0");
        assert_eq!(fs::metadata(&log_0).unwrap().len(), store.log_bytes());
        assert!(store.log_bytes() > LOG_FILE_BYTES);
        drop(store);
        let (_, recovered) = ShardStore::open(dir.path()).unwrap();
        assert_eq!(
            recovered.records,
            (0..groups * 500).map(vote).collect::<Vec<_>>()
        );
    }
}
