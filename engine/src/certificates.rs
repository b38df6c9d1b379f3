//! A shard's certificate store: every certificate the shard applied, on disk, indexed by
//! (sender, sequence number) and by (recipient, arrival index), read back to answer
//! certificate queries.
//!
//! A [fjall](https://docs.rs/fjall) keyspace (a log-structured merge tree) per shard,
//! `<data-dir>/shard-<j>/certificates/`, with two partitions: `certificates` (sender ‖
//! sequence number, big-endian, → the certificate's stored encoding) and `received`
//! (recipient ‖ arrival index, big-endian, → sender ‖ sequence number), plus the store's end
//! (one past the highest arrival index stored) under a 3-byte key in `received`. Its block cache and write buffers
//! are capped ([`CACHE_BYTES`], [`WRITE_BUFFER_BYTES`]), so its memory does not grow with the
//! certificates it holds.
//!
//! Writes are blind: the node gives each payment its arrival index (part of its state), so a
//! certificate's keys and values are known without reading anything, and writing them again
//! (a log replayed after a crash) changes nothing. A B-tree (redb, tried first) must read the
//! leaf of every random key it inserts, which at a million certificates cost 20 to 95 us per
//! certificate on the log writer thread; the LSM tree appends to a memtable and sorts in the
//! background.
//!
//! Durability comes from the log: a certificate is stored only once the log record that
//! applied it is durable, and that record carries the certificate. The store's journal is
//! synced before a snapshot lets the logs go, at most every [`SYNC_INTERVAL`] while
//! certificates arrive, and at shutdown; after a crash the store holds at least what it
//! held at its last sync, and replaying the logs since the snapshot writes the rest again.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use fastpay_node::{AppliedCertificate, CertificateReader, ReadError};
use fastpay_wire::codec::{decode_stored, encode_stored};
use fastpay_wire::{AccountId, CertifiedTransferOrder, SequenceNumber};
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The block cache of one shard's store, in bytes: reads of recent certificates hit it, and
/// the store's memory stays bounded however many certificates it holds.
pub const CACHE_BYTES: u64 = 4 << 20;

/// The memtables of one shard's store, in bytes, before they are flushed to sorted files.
/// fjall puts writers to sleep (100 ms) once 90% of it waits for flushing: at 8 MiB that
/// happened every few hundred milliseconds at 20,000 certificates a second, and storing cost
/// 117 µs a certificate on average (`stress_store_timing`) instead of 7.5 µs at 64 MiB.
pub const WRITE_BUFFER_BYTES: u64 = 64 << 20;

/// Journal bytes after which the store flushes its memtables, so journals do not pile up on
/// disk (the shard's own log already holds everything they hold). fjall sleeps writers for
/// 500 ms at 90% of it, so it must be well above what a busy second writes.
const JOURNAL_BYTES: u64 = 256 << 20;

/// One memtable, in bytes (each partition has its own).
const MEMTABLE_BYTES: u32 = 8 << 20;

/// Longest time certificates stay stored but not synced while more arrive: bounds what a
/// crash makes recovery store again (the log has it all anyway). One sync a second costs
/// nothing next to the log's syncs.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The store's directory in a shard directory.
pub const DIRECTORY: &str = "certificates";

const END: &[u8] = b"end";

/// Why the certificate store failed.
#[derive(Debug, Error)]
pub enum CertificateStoreError {
    /// fjall reported an error.
    #[error("{path}: certificate store: {source}")]
    Fjall {
        /// The store's directory.
        path: PathBuf,
        /// What fjall reported.
        #[source]
        source: fjall::Error,
    },
    /// The store's writer stopped after an earlier failure (reported on its own).
    #[error("{path}: certificate store stopped after an earlier failure")]
    Stopped {
        /// The store's directory.
        path: PathBuf,
    },
    /// Creating a new store's directory failed.
    #[error("{path}: certificate store: cannot create it: {source}")]
    Create {
        /// The store's directory.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The store's writer thread could not be started.
    #[error("{path}: certificate store: cannot start its writer thread: {source}")]
    Thread {
        /// The store's directory.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
}

/// A 40-byte key: an account and a big-endian number, so that an account's keys sort by
/// number.
fn key(account: &AccountId, number: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&account.0);
    key[32..].copy_from_slice(&number.to_be_bytes());
    key
}

/// The partitions, shared by the writer and the readers.
struct Tables {
    certificates: PartitionHandle,
    received: PartitionHandle,
    /// One past the highest arrival index stored (written with each batch).
    end: AtomicU64,
}

/// A shard's certificate store, written by its log writer thread.
pub struct CertificateStore {
    keyspace: Keyspace,
    tables: Arc<Tables>,
    path: PathBuf,
    stored: u64,
    unsynced: bool,
    last_sync: Instant,
    scratch: Vec<u8>,
    /// Certificates handed over and not yet stored, which readers see meanwhile.
    unstored: Arc<Unstored>,
}

/// The store's keyspace settings.
fn keyspace_config(path: &Path) -> Config {
    Config::new(path)
        .cache_size(CACHE_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES)
        .max_journaling_size(JOURNAL_BYTES)
        .flush_workers(1)
        .compaction_workers(1)
        .fsync_ms(None)
        .manual_journal_persist(true)
}

/// The settings of partition `name`. `received` is only ever read by range (a recipient's
/// payments from an arrival index on; its end once at open), so it keeps no bloom filter: a
/// filter serves point reads only, and every segment's filter stays in memory for as long as
/// the segment lives (1.25 bytes a key at fjall's 10 bits), growing with the store.
fn options(name: &str) -> PartitionCreateOptions {
    let options = PartitionCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .manual_journal_persist(true);
    match name {
        "received" => options.bloom_filter_bits(None),
        _ => options,
    }
}

/// Creates an empty store at `path` all at once: built and synced under a temporary name,
/// then renamed into place. A process killed while fjall creates a keyspace and its
/// partitions can leave a directory that fjall then refuses to open (found by a test that
/// SIGKILLs authorities moments after they start); killed here, it leaves only the temporary
/// directory, which the next start removes.
fn create(path: &Path) -> Result<(), CertificateStoreError> {
    let staging = path.with_extension("creating");
    let io = |source: std::io::Error| CertificateStoreError::Create {
        path: path.to_path_buf(),
        source,
    };
    let fail = |source: fjall::Error| CertificateStoreError::Fjall {
        path: staging.clone(),
        source,
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io)?;
    }
    {
        let keyspace = keyspace_config(&staging).open().map_err(fail)?;
        for name in ["certificates", "received"] {
            keyspace.open_partition(name, options(name)).map_err(fail)?;
        }
        keyspace.persist(PersistMode::SyncAll).map_err(fail)?;
    }
    std::fs::rename(&staging, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

impl CertificateStore {
    /// Opens (creating if needed) the store in shard directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, CertificateStoreError> {
        let path = dir.join(DIRECTORY);
        let fail = |source: fjall::Error| CertificateStoreError::Fjall {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            create(&path)?;
        }
        let keyspace = keyspace_config(&path).open().map_err(fail)?;
        let certificates = keyspace
            .open_partition("certificates", options("certificates"))
            .map_err(fail)?;
        let received = keyspace
            .open_partition("received", options("received"))
            .map_err(fail)?;
        // The end lives in `received` (a 3-byte key, apart from its 40-byte keys); stores
        // written before kept it in a `meta` partition of its own.
        let mut end_value = received.get(END).map_err(fail)?;
        if end_value.is_none() && keyspace.partition_exists("meta") {
            let meta = keyspace
                .open_partition("meta", options("meta"))
                .map_err(fail)?;
            end_value = meta.get(END).map_err(fail)?;
        }
        let end = end_value
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, u64::from_be_bytes);
        let stored = certificates.approximate_len() as u64;
        Ok(Self {
            keyspace,
            tables: Arc::new(Tables {
                certificates,
                received,
                end: AtomicU64::new(end),
            }),
            path,
            stored,
            unsynced: false,
            last_sync: Instant::now(),
            scratch: Vec::new(),
            unstored: Arc::default(),
        })
    }

    fn fail(&self, source: fjall::Error) -> CertificateStoreError {
        CertificateStoreError::Fjall {
            path: self.path.clone(),
            source,
        }
    }

    /// A reader for the shard thread: it sees every batch written, synced or not, and every
    /// certificate handed to [`Unstored`] and not yet written.
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            tables: self.tables.clone(),
            unstored: self.unstored.clone(),
        }
    }

    /// Where the shard hands over certificates before they are stored.
    pub fn unstored(&self) -> Arc<Unstored> {
        self.unstored.clone()
    }

    /// Stores `applied` (whose log records are durable) in one batch, unsynced. Writing a
    /// certificate again writes the same keys and values.
    pub fn store(&mut self, applied: &[AppliedCertificate]) -> Result<(), CertificateStoreError> {
        if applied.is_empty() {
            return Ok(());
        }
        let mut batch = self.keyspace.batch().durability(None);
        let mut end = self.tables.end.load(Ordering::Acquire);
        for item in applied {
            let (sender, sequence) = item.key();
            let cert_key = key(&sender, sequence.value());
            self.scratch.clear();
            if encode_stored(&item.certificate, &mut self.scratch).is_err() {
                continue;
            }
            batch.insert(
                &self.tables.certificates,
                cert_key.as_slice(),
                self.scratch.as_slice(),
            );
            if let Some(arrival) = item.arrival {
                let recipient = item.certificate.value.transfer.recipient;
                batch.insert(
                    &self.tables.received,
                    key(&recipient, arrival).as_slice(),
                    cert_key.as_slice(),
                );
                end = end.max(arrival.saturating_add(1));
            }
        }
        batch.insert(&self.tables.received, END, end.to_be_bytes().as_slice());
        batch.commit().map_err(|e| self.fail(e))?;
        self.tables.end.store(end, Ordering::Release);
        self.stored = self.stored.saturating_add(applied.len() as u64);
        self.unsynced = true;
        Ok(())
    }

    /// Syncs what was stored since the last sync.
    pub fn sync(&mut self) -> Result<(), CertificateStoreError> {
        if !self.unsynced {
            return Ok(());
        }
        self.keyspace
            .persist(PersistMode::SyncData)
            .map_err(|e| self.fail(e))?;
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if [`SYNC_INTERVAL`] passed since the last sync; returns whether it synced.
    pub fn sync_if_due(&mut self) -> Result<bool, CertificateStoreError> {
        if self.unsynced && self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Certificates written (an estimate: a certificate written again after a restart
    /// counts again until the store settles).
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Bytes the store uses on disk.
    pub fn file_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }
}

/// Most certificates that may wait for the certificate writer: past this, the log writer
/// holds the shard's durability reports until the store catches up (memory stays bounded,
/// and replies slow down instead of the store falling behind without end).
pub const MAX_UNSTORED: usize = 1 << 16;

enum StoreJob {
    /// A list whose log records are durable: store it.
    Store(Arc<Vec<AppliedCertificate>>),
    /// Sync everything stored so far, then answer.
    Sync(Sender<Result<(), CertificateStoreError>>),
}

/// What the certificate writer publishes for the shard's counters.
#[derive(Debug, Default)]
struct Published {
    stored: AtomicU64,
    file_bytes: AtomicU64,
    failure: Mutex<Option<CertificateStoreError>>,
}

/// A thread per shard that writes certificates to the store, so that fjall's work (and its
/// write stalls while it flushes and compacts) stays off the path of the shard's replies.
/// The log writer hands it each list once the list's log records are durable; readers see a
/// list in [`Unstored`] until it is written.
pub struct CertificateWriter {
    jobs: Option<Sender<StoreJob>>,
    thread: Option<JoinHandle<()>>,
    published: Arc<Published>,
    reader: StoreReader,
    path: PathBuf,
    /// Lists written, back for reuse by the shard.
    spare: Receiver<Arc<Vec<AppliedCertificate>>>,
}

impl CertificateWriter {
    /// Opens (creating if needed) the store in shard directory `dir` and starts its writer
    /// thread, named `name`, at the lowest scheduling priority: fjall's flush and compaction
    /// threads, started by the open, inherit it, so the store's work runs when the shard
    /// threads leave a core idle (a store that falls behind holds replies back, see
    /// [`MAX_UNSTORED`], which gives it the cores again).
    pub fn open(dir: &Path, name: String) -> Result<Self, CertificateStoreError> {
        let path = dir.join(DIRECTORY);
        let (jobs, job_rx) = unbounded();
        let (spare_tx, spare) = unbounded();
        let (opened_tx, opened) = bounded(1);
        let published = Arc::new(Published::default());
        let thread = {
            let (published, dir) = (published.clone(), dir.to_path_buf());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // On failure the store works at normal priority, which is still correct.
                    let _ = fastpay_udp::lower_thread_priority();
                    let store = match CertificateStore::open(&dir) {
                        Ok(store) => store,
                        Err(e) => return drop(opened_tx.send(Err(e))),
                    };
                    published.stored.store(store.stored(), Ordering::Release);
                    published
                        .file_bytes
                        .store(store.file_bytes(), Ordering::Release);
                    let _ = opened_tx.send(Ok(store.reader()));
                    store_loop(store, &job_rx, &published, &spare_tx);
                })
                .map_err(|source| CertificateStoreError::Thread {
                    path: path.clone(),
                    source,
                })?
        };
        let reader = match opened.recv() {
            Ok(Ok(reader)) => reader,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(CertificateStoreError::Stopped { path });
            }
        };
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            published,
            reader,
            path,
            spare,
        })
    }

    /// Where the shard hands lists over before their records are durable.
    pub fn unstored(&self) -> Arc<Unstored> {
        self.reader.unstored.clone()
    }

    /// A reader (store and lists on their way).
    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    /// Stores `list` (already in [`Unstored`], its log records durable) in the background.
    pub fn store(&self, list: Arc<Vec<AppliedCertificate>>) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(StoreJob::Store(list));
        }
    }

    /// Stores `applied`, whose log records are already durable (replayed by recovery), and
    /// waits until it and everything handed over before it is stored and synced. It goes
    /// through [`Unstored`] like any list, so readers never miss it.
    pub fn store_durable(
        &self,
        applied: Vec<AppliedCertificate>,
    ) -> Result<(), CertificateStoreError> {
        if !applied.is_empty() {
            let list = Arc::new(applied);
            self.reader.unstored.push(list.clone());
            self.store(list);
        }
        self.sync()
    }

    /// Asks for everything handed over so far to be stored and synced; the answer comes on
    /// the returned channel (an error if the store failed).
    pub fn sync_barrier(&self) -> Receiver<Result<(), CertificateStoreError>> {
        let (reply, answer) = bounded(1);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(StoreJob::Sync(reply.clone())).is_ok());
        if !sent {
            let _ = reply.send(Err(CertificateStoreError::Stopped {
                path: self.path.clone(),
            }));
        }
        answer
    }

    /// Stores and syncs everything handed over so far, waiting for it.
    pub fn sync(&self) -> Result<(), CertificateStoreError> {
        self.sync_barrier()
            .recv()
            .unwrap_or_else(|_| Err(self.stopped()))
    }

    fn stopped(&self) -> CertificateStoreError {
        CertificateStoreError::Stopped {
            path: self.path.clone(),
        }
    }

    /// Certificates handed over and not yet written (see [`MAX_UNSTORED`]).
    pub fn backlog(&self) -> usize {
        self.reader.unstored.len()
    }

    /// Whether the writer failed.
    pub fn has_failed(&self) -> bool {
        self.published
            .failure
            .lock()
            .map_or(true, |slot| slot.is_some())
    }

    /// The writer's failure, if it failed (reported once).
    pub fn failure(&self) -> Option<CertificateStoreError> {
        self.published.failure.lock().ok()?.take()
    }

    /// Where written lists come back for reuse.
    pub fn spare(&self) -> Receiver<Arc<Vec<AppliedCertificate>>> {
        self.spare.clone()
    }

    /// Certificates written (see [`CertificateStore::stored`]).
    pub fn stored(&self) -> u64 {
        self.published.stored.load(Ordering::Acquire)
    }

    /// Bytes the store uses on disk, as of its last sync.
    pub fn file_bytes(&self) -> u64 {
        self.published.file_bytes.load(Ordering::Acquire)
    }

    /// Stores and syncs everything handed over, then stops the thread.
    pub fn finish(&mut self) -> Result<(), CertificateStoreError> {
        let synced = if self.jobs.is_some() {
            self.sync()
        } else {
            Ok(())
        };
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        synced
    }
}

impl Drop for CertificateWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The certificate writer's thread.
fn store_loop(
    mut store: CertificateStore,
    jobs: &Receiver<StoreJob>,
    published: &Published,
    spare: &Sender<Arc<Vec<AppliedCertificate>>>,
) {
    let mut failed = false;
    loop {
        let job = match jobs.recv_timeout(SYNC_INTERVAL) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let outcome = match job {
            _ if failed => {
                if let Some(StoreJob::Sync(reply)) = job {
                    let _ = reply.send(Err(CertificateStoreError::Stopped {
                        path: store.path.clone(),
                    }));
                }
                continue;
            }
            Some(StoreJob::Store(list)) => store.store(&list).and_then(|()| {
                // Written to fjall: readers find it there from now on.
                if let Some(written) = store.unstored.remove(&list) {
                    drop(list);
                    let _ = spare.send(written);
                }
                published.stored.store(store.stored(), Ordering::Release);
                store.sync_if_due().map(|_| ())
            }),
            Some(StoreJob::Sync(reply)) => {
                let synced = store.sync();
                let failure = synced
                    .as_ref()
                    .err()
                    .map(|_| CertificateStoreError::Stopped {
                        path: store.path.clone(),
                    });
                let _ = reply.send(failure.map_or(Ok(()), Err));
                synced
            }
            None => store.sync_if_due().map(|_| ()),
        };
        match outcome {
            Ok(()) => {
                if !store.unsynced {
                    published
                        .file_bytes
                        .store(store.file_bytes(), Ordering::Release);
                }
            }
            Err(e) => {
                failed = true;
                if let Ok(mut slot) = published.failure.lock() {
                    *slot = Some(e);
                }
            }
        }
    }
    if !failed
        && let Err(e) = store.sync()
        && let Ok(mut slot) = published.failure.lock()
    {
        *slot = Some(e);
    }
}

/// Certificates on their way to the store, readable meanwhile: the shard thread hands over
/// each round's list here as its log records leave for the log writer, and the certificate
/// writer removes a list once it has written it (fjall first, then here), so a reader that
/// looks here first and in fjall second misses nothing that was handed over.
///
/// Lookups go through indexes (by sender and sequence number, by recipient and arrival), so
/// a query costs the same with one list waiting or with [`MAX_UNSTORED`] certificates, and
/// holds the lock the writer takes only that long.
#[derive(Debug, Default)]
pub struct Unstored {
    lists: Mutex<UnstoredLists>,
    /// Certificates in `lists`.
    count: AtomicUsize,
    /// One past the highest arrival index ever handed over (0 if none): lists leave only once
    /// in fjall, whose end then covers it.
    end: AtomicU64,
}

/// Where a certificate sits: its list's id and its place in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    list: u64,
    index: usize,
}

#[derive(Debug, Default)]
struct UnstoredLists {
    /// The lists in hand-over order with their ids (increasing).
    lists: VecDeque<(u64, Arc<Vec<AppliedCertificate>>)>,
    next_id: u64,
    /// The latest certificate handed over per (sender, sequence number).
    by_key: HashMap<(AccountId, SequenceNumber), Slot>,
    /// Payments received, by recipient and arrival index.
    by_recipient: BTreeMap<(AccountId, u64), Slot>,
}

impl UnstoredLists {
    fn get(&self, slot: Slot) -> Option<&AppliedCertificate> {
        let position = self
            .lists
            .binary_search_by_key(&slot.list, |(id, _)| *id)
            .ok()?;
        self.lists[position].1.get(slot.index)
    }
}

impl Unstored {
    /// Adds a round's list (in hand-over order: the writer removes lists in the same order).
    pub fn push(&self, list: Arc<Vec<AppliedCertificate>>) {
        let len = list.len();
        let Ok(mut lists) = self.lists.lock() else {
            return;
        };
        let id = lists.next_id;
        lists.next_id += 1;
        let mut end = 0;
        for (index, item) in list.iter().enumerate() {
            let slot = Slot { list: id, index };
            lists.by_key.insert(item.key(), slot);
            if let Some(arrival) = item.arrival {
                let recipient = item.certificate.value.transfer.recipient;
                lists.by_recipient.insert((recipient, arrival), slot);
                end = end.max(arrival.saturating_add(1));
            }
        }
        lists.lists.push_back((id, list));
        self.count.fetch_add(len, Ordering::Release);
        self.end.fetch_max(end, Ordering::AcqRel);
    }

    /// Removes `list` once it is written; returns it (for reuse) if it was the oldest.
    fn remove(&self, list: &Arc<Vec<AppliedCertificate>>) -> Option<Arc<Vec<AppliedCertificate>>> {
        let mut guard = self.lists.lock().ok()?;
        let lists = &mut *guard;
        let position = lists.lists.iter().position(|(_, l)| Arc::ptr_eq(l, list))?;
        let (id, removed) = lists.lists.remove(position)?;
        for (index, item) in removed.iter().enumerate() {
            let slot = Slot { list: id, index };
            // A later list may hold the same key: its entry stays.
            if lists.by_key.get(&item.key()) == Some(&slot) {
                lists.by_key.remove(&item.key());
            }
            if let Some(arrival) = item.arrival {
                let key = (item.certificate.value.transfer.recipient, arrival);
                if lists.by_recipient.get(&key) == Some(&slot) {
                    lists.by_recipient.remove(&key);
                }
            }
        }
        self.count.fetch_sub(removed.len(), Ordering::Release);
        Some(removed)
    }

    /// Certificates handed over and not yet written.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether every certificate handed over is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn certificate(&self, key: (AccountId, SequenceNumber)) -> Option<CertifiedTransferOrder> {
        let lists = self.lists.lock().ok()?;
        let slot = *lists.by_key.get(&key)?;
        lists.get(slot).map(|item| item.certificate.clone())
    }

    /// Appends to `out` `recipient`'s first `max` payments from arrival index `from` on;
    /// returns one past the highest arrival index handed over (0 if none).
    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, CertifiedTransferOrder)>,
    ) -> u64 {
        // Read before the lists: a list handed over after this read is past the end.
        let end = self.end.load(Ordering::Acquire);
        let Ok(lists) = self.lists.lock() else {
            return 0;
        };
        for (&(_, arrival), &slot) in lists
            .by_recipient
            .range((*recipient, from)..=(*recipient, u64::MAX))
            .take(max)
        {
            if let Some(item) = lists.get(slot) {
                out.push((arrival, item.certificate.clone()));
            }
        }
        end
    }
}

/// Reads a shard's certificate store (from the shard thread).
#[derive(Clone)]
pub struct StoreReader {
    tables: Arc<Tables>,
    unstored: Arc<Unstored>,
}

impl StoreReader {
    fn get(&self, key: &[u8]) -> Result<Option<CertifiedTransferOrder>, ReadError> {
        let Some(value) = self.tables.certificates.get(key).map_err(|_| ReadError)? else {
            return Ok(None);
        };
        decode_stored(&value).map(Some).map_err(|_| ReadError)
    }
}

impl CertificateReader for StoreReader {
    fn certificate(
        &self,
        sender: &AccountId,
        sequence: SequenceNumber,
    ) -> Result<Option<CertifiedTransferOrder>, ReadError> {
        // Handed over but not yet written first: a list leaves it only once in fjall.
        if let Some(certificate) = self.unstored.certificate((*sender, sequence)) {
            return Ok(Some(certificate));
        }
        self.get(key(sender, sequence.value()).as_slice())
    }

    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, CertifiedTransferOrder)>,
    ) -> Result<u64, ReadError> {
        // What is on its way first (a list leaves it only once in fjall), then the store's
        // end: everything below it was stored before we read.
        let start = out.len();
        let unstored_end = self.unstored.received(recipient, from, max, out);
        let end = self.tables.end.load(Ordering::Acquire).max(unstored_end);
        let low = key(recipient, from);
        let high = key(recipient, u64::MAX);
        for entry in self
            .tables
            .received
            .range(low.as_slice()..=high.as_slice())
            .take(max)
        {
            let (k, cert_key) = entry.map_err(|_| ReadError)?;
            let arrival = <[u8; 8]>::try_from(&k[32..40]).map_err(|_| ReadError)?;
            let arrival = u64::from_be_bytes(arrival);
            if out[start..].iter().any(|(a, _)| *a == arrival) {
                continue;
            }
            if let Some(certificate) = self.get(&cert_key)? {
                out.push((arrival, certificate));
            }
        }
        // In arrival order, the first `max` (a list may also sit in fjall after a replay).
        out[start..].sort_by_key(|(arrival, _)| *arrival);
        out.truncate(start + max);
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{Amount, CommitteeId, KeyPair, Transfer, TransferOrder};

    fn certificate(sender: u8, recipient: u8, sequence: u64) -> CertifiedTransferOrder {
        let key = KeyPair::from_seed([sender; 32]);
        let order = TransferOrder::new(
            Transfer {
                sender: key.account(),
                recipient: KeyPair::from_seed([recipient; 32]).account(),
                amount: Amount::new(1 + sequence),
                sequence_number: SequenceNumber::new(sequence),
                user_data: None,
            },
            &CommitteeId([0; 32]),
            &key,
        );
        CertifiedTransferOrder {
            value: order,
            signatures: Vec::new(),
        }
    }

    fn applied(sender: u8, recipient: u8, sequence: u64, arrival: u64) -> AppliedCertificate {
        AppliedCertificate {
            certificate: certificate(sender, recipient, sequence),
            arrival: Some(arrival),
        }
    }

    fn certificates(page: &[(u64, CertifiedTransferOrder)]) -> Vec<CertifiedTransferOrder> {
        page.iter().map(|(_, c)| c.clone()).collect()
    }

    #[test]
    fn the_unstored_index_finds_the_latest_and_reads_no_more_than_asked() {
        let unstored = Unstored::default();
        let bob = KeyPair::from_seed([2; 32]).account();
        let alice = KeyPair::from_seed([1; 32]).account();
        let first = Arc::new((0..40).map(|i| applied(1, 2, i, i)).collect::<Vec<_>>());
        // A later list holding one key again (a replayed round), and payments to others.
        let mut again = applied(1, 2, 3, 3);
        again.certificate.value.transfer.amount = Amount::new(99);
        let second = Arc::new(vec![again.clone(), applied(1, 9, 40, 40)]);
        unstored.push(first.clone());
        unstored.push(second.clone());
        let key = (alice, SequenceNumber::new(3));
        assert_eq!(unstored.certificate(key), Some(again.certificate.clone()));
        let mut page = Vec::new();
        assert_eq!(unstored.received(&bob, 10, 5, &mut page), 41);
        assert_eq!(
            page.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [10, 11, 12, 13, 14]
        );
        // The older list written: the later one's entry stays.
        assert!(unstored.remove(&first).is_some());
        assert_eq!(unstored.certificate(key), Some(again.certificate));
        assert_eq!(unstored.certificate((alice, SequenceNumber::new(4))), None);
        page.clear();
        unstored.received(&bob, 0, 16, &mut page);
        assert_eq!(page.len(), 1, "only the replayed payment is still waiting");
        assert!(unstored.remove(&second).is_some());
        assert!(unstored.is_empty());
        assert_eq!(unstored.certificate(key), None);
    }

    #[test]
    fn handed_over_certificates_are_readable_before_and_after_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let bob = KeyPair::from_seed([2; 32]).account();
        let alice = KeyPair::from_seed([1; 32]).account();
        {
            let mut store = CertificateStore::open(dir.path()).unwrap();
            store.store(&[applied(1, 2, 0, 0)]).unwrap();
            store.sync().unwrap();
        }
        let mut writer = CertificateWriter::open(dir.path(), "certs-test".into()).unwrap();
        let unstored = writer.unstored();
        let reader = writer.reader();
        // Handed over, not written: found all the same, merged with what is written.
        let waiting = Arc::new(vec![applied(1, 2, 1, 1), applied(3, 2, 0, 2)]);
        unstored.push(waiting.clone());
        assert_eq!(unstored.len(), 2);
        assert_eq!(
            reader.certificate(&alice, SequenceNumber::new(1)).unwrap(),
            Some(certificate(1, 2, 1))
        );
        let mut page = Vec::new();
        assert_eq!(reader.received(&bob, 0, 16, &mut page).unwrap(), 3);
        assert_eq!(
            certificates(&page),
            vec![
                certificate(1, 2, 0),
                certificate(1, 2, 1),
                certificate(3, 2, 0)
            ]
        );
        page.clear();
        assert_eq!(reader.received(&bob, 0, 2, &mut page).unwrap(), 3);
        assert_eq!(page.len(), 2, "a page holds at most max");
        assert_eq!(page[1].0, 1);

        // The writer stores the list and lets it go: still found, now in fjall, once.
        writer.store(waiting);
        writer.sync().unwrap();
        assert!(unstored.is_empty());
        let spare = writer.spare().try_recv().unwrap();
        assert_eq!(spare.len(), 2, "the written list comes back for reuse");
        page.clear();
        assert_eq!(reader.received(&bob, 1, 16, &mut page).unwrap(), 3);
        assert_eq!(
            certificates(&page),
            vec![certificate(1, 2, 1), certificate(3, 2, 0)]
        );
        assert_eq!(writer.stored(), 3);
        writer.finish().unwrap();
        assert!(writer.sync().is_err(), "a finished writer says so");

        let reopened = CertificateStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened
                .reader()
                .certificate(
                    &KeyPair::from_seed([3; 32]).account(),
                    SequenceNumber::new(0)
                )
                .unwrap(),
            Some(certificate(3, 2, 0))
        );
    }

    #[test]
    fn certificates_are_kept_once_indexed_both_ways_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let bob = KeyPair::from_seed([2; 32]).account();
        let alice = KeyPair::from_seed([1; 32]).account();
        {
            let mut store = CertificateStore::open(dir.path()).unwrap();
            store
                .store(&[
                    applied(1, 2, 0, 0),
                    applied(1, 2, 1, 1),
                    applied(3, 2, 0, 2),
                ])
                .unwrap();
            // Replayed after a restart: the same keys again, nothing kept twice.
            store
                .store(&[applied(1, 2, 1, 1), applied(1, 2, 2, 3)])
                .unwrap();
            store.sync().unwrap();
            assert!(store.file_bytes() > 0);
        }
        let store = CertificateStore::open(dir.path()).unwrap();
        let reader = store.reader();
        assert_eq!(
            reader
                .certificate(&alice, SequenceNumber::new(1))
                .unwrap()
                .unwrap(),
            certificate(1, 2, 1)
        );
        assert_eq!(
            reader.certificate(&alice, SequenceNumber::new(9)).unwrap(),
            None
        );
        let mut page = Vec::new();
        assert_eq!(reader.received(&bob, 1, 2, &mut page).unwrap(), 4);
        assert_eq!(
            certificates(&page),
            vec![certificate(1, 2, 1), certificate(3, 2, 0)]
        );
        assert_eq!(page[1].0, 2);
        page.clear();
        assert_eq!(reader.received(&bob, 0, 16, &mut page).unwrap(), 4);
        assert_eq!(page.len(), 4, "each payment once");
        page.clear();
        assert_eq!(reader.received(&bob, 4, 16, &mut page).unwrap(), 4);
        assert!(page.is_empty());
        assert_eq!(reader.received(&alice, 0, 16, &mut page).unwrap(), 4);
        assert!(page.is_empty());
    }

    #[test]
    fn an_unsynced_store_loses_only_what_replay_stores_again() {
        let dir = tempfile::tempdir().unwrap();
        let bob = KeyPair::from_seed([2; 32]).account();
        let mut store = CertificateStore::open(dir.path()).unwrap();
        store.store(&[applied(1, 2, 0, 0)]).unwrap();
        store.sync().unwrap();
        store.store(&[applied(1, 2, 1, 1)]).unwrap();
        // A crash: the unsynced batch may be lost; replay writes it again.
        drop(store);
        let mut store = CertificateStore::open(dir.path()).unwrap();
        store
            .store(&[applied(1, 2, 0, 0), applied(1, 2, 1, 1)])
            .unwrap();
        let mut page = Vec::new();
        assert_eq!(store.reader().received(&bob, 0, 16, &mut page).unwrap(), 2);
        assert_eq!(
            certificates(&page),
            vec![certificate(1, 2, 0), certificate(1, 2, 1)]
        );
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use fastpay_wire::{Amount, AuthorityName, Signature, Transfer, TransferOrder};

    /// What storing costs the log writer, in groups of 64 certificates (a full batch per
    /// group): prints the time per certificate and the file's size. Not a benchmark for
    /// numbers to report; a check that the order of magnitude is right.
    #[test]
    #[ignore = "timing"]
    fn stress_store_timing() {
        let group: usize = std::env::var("FASTPAY_GROUP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let dir = tempfile::tempdir().unwrap();
        let mut store = CertificateStore::open(dir.path()).unwrap();
        let n: u64 = std::env::var("FASTPAY_CERTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let votes: Vec<(AuthorityName, fastpay_wire::VoteSignature)> = (0..3u8)
            .map(|i| {
                (
                    AuthorityName([i; 32]),
                    fastpay_wire::VoteSignature::Single(Signature([i; 64])),
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let mut batch = Vec::new();
        for i in 0..n {
            let mut sender = [0u8; 32];
            sender[..8].copy_from_slice(&(i % 10_000).to_le_bytes());
            let mut recipient = [1u8; 32];
            recipient[..8].copy_from_slice(&(i.wrapping_mul(7919) % 1_000_000).to_le_bytes());
            batch.push(AppliedCertificate {
                arrival: Some(i),
                certificate: CertifiedTransferOrder {
                    value: TransferOrder {
                        transfer: Transfer {
                            sender: AccountId(sender),
                            recipient: AccountId(recipient),
                            amount: Amount::new(1),
                            sequence_number: SequenceNumber::new(i / 10_000),
                            user_data: None,
                        },
                        signature: Signature([9; 64]),
                    },
                    signatures: votes.clone(),
                },
            });
            if batch.len() == group {
                store.store(&batch).unwrap();
                batch.clear();
                store.sync_if_due().unwrap();
            }
        }
        store.store(&batch).unwrap();
        store.sync().unwrap();
        let elapsed = started.elapsed();
        eprintln!(
            "{n} certificates in groups of 64: {:.2} us each, {} bytes on disk ({} per certificate)",
            elapsed.as_secs_f64() * 1e6 / n as f64,
            store.file_bytes(),
            store.file_bytes() / n
        );
    }
}
