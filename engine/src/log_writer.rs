//! Pipelined group commit: a thread per shard that makes the shard's log durable while the
//! shard goes on checking and verifying the next batches.
//!
//! The shard hands over each round's framed records with the log position they reach; the
//! writer takes everything queued since its last sync as one group (so groups grow while a
//! sync is in flight), writes it with one `write`, syncs it with one `fdatasync`, and reports
//! the position now durable, waking the shard. The shard's node holds every reply, credit and
//! acknowledgement until its position is durable, so the durability rules do not change: only
//! the shard no longer idles while the disk syncs. Snapshots go through the same queue, after
//! the records they include.
//!
//! The writer owns the shard's two stores side by side ([`ShardDisk`]): the log, and the
//! certificate writer, to which each group's certificates go once the group is durable.

use crate::certificates::{CertificateWriter, MAX_UNSTORED, Unstored};
use crate::counters::{Counter, ShardCounters};
use crate::metrics::{FSYNC_BUCKETS, Histogram, ShardMetrics, ShardSource};
use crate::snapshot_buffer::{SnapshotBuffer, Taken};
use crate::store::{Recovered, ShardStore, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use fastpay_node::log::EncodedSnapshot;
use fastpay_node::{AppliedCertificate, LogBatch};
use mio::Waker;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an idle writer looks whether its background snapshot finished.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often a writer waiting for the certificate store to catch up looks again.
const BEHIND_POLL: Duration = Duration::from_millis(1);

/// A durable shard's two stores, which its log writer owns side by side: the log, and the
/// certificate writer, which stores each certificate once the record that applied it is
/// durable (see `crate::certificates`).
pub(crate) struct ShardDisk {
    /// The shard's log and snapshot.
    pub(crate) log: ShardStore,
    /// The shard's certificate store.
    pub(crate) certificates: CertificateWriter,
}

impl ShardDisk {
    /// Opens shard `shard`'s directory `dir`: locks it and recovers its log, then opens its
    /// certificate store.
    pub(crate) fn open(dir: &Path, shard: u32) -> Result<(Self, Recovered), StoreError> {
        let (log, recovered) = ShardStore::open(dir)?;
        let certificates = CertificateWriter::open(dir, format!("certs-shard-{shard}"))?;
        Ok((Self { log, certificates }, recovered))
    }
}

enum Job {
    /// Framed records reaching log position `position`, and the certificates they applied
    /// (handed to the certificate writer once the records are durable).
    Append {
        records: Vec<u8>,
        position: u64,
        applied: Option<Arc<Vec<AppliedCertificate>>>,
    },
    /// Cut the log for a snapshot of every record appended before: later records go to the
    /// next generation.
    Cut,
    /// The snapshot of the state at the last cut.
    Snapshot(EncodedSnapshot),
}

enum Done {
    /// The log is durable up to this position; the record buffers, for reuse.
    Durable(u64, Vec<Vec<u8>>),
    /// The background snapshot landed; bytes now on disk.
    SnapshotWritten(u64),
    /// The disk failed: the shard must stop.
    Failed(StoreError),
}

/// A shard's handle on its log writer thread.
pub(crate) struct LogWriter {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    spare: Vec<Vec<u8>>,
    /// Appends handed over and not yet reported durable.
    in_flight: usize,
    /// Spare vectors for the certificates of an append.
    spare_applied: Vec<Vec<AppliedCertificate>>,
    /// Where certificates wait, readable, until the certificate writer has written them.
    unstored: Arc<Unstored>,
    /// Written certificate lists, back from the certificate writer for reuse.
    spare_lists: Receiver<Arc<Vec<AppliedCertificate>>>,
    snapshot_in_progress: bool,
    /// The buffer the next snapshot is encoded into, prepared ahead.
    snapshot_buffer: SnapshotBuffer,
    me: u32,
}

impl LogWriter {
    /// Starts the writer of shard `me`'s `disk`; it wakes the shard through `waker` when
    /// something is durable.
    pub(crate) fn spawn(
        disk: ShardDisk,
        waker: Arc<Waker>,
        shard: &ShardSource,
    ) -> io::Result<Self> {
        let me = shard.shard;
        let (counters, metrics) = (shard.counters.clone(), shard.metrics.clone());
        let (jobs, job_rx) = unbounded();
        let (done_tx, done) = unbounded();
        let unstored = disk.certificates.unstored();
        let spare_lists = disk.certificates.spare();
        let snapshot_buffer = SnapshotBuffer::new(waker.clone(), me);
        let writer = Writer {
            disk,
            done: done_tx,
            waker,
            counters,
            syncs: Syncs {
                histogram: Histogram::new(FSYNC_BUCKETS),
                unpublished: false,
                metrics,
            },
        };
        let thread = std::thread::Builder::new()
            .name(format!("log-{me}"))
            .spawn(move || writer.run(&job_rx))?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            spare: Vec::new(),
            in_flight: 0,
            spare_applied: Vec::new(),
            unstored,
            spare_lists,
            snapshot_in_progress: false,
            snapshot_buffer,
            me,
        })
    }

    /// An empty batch, for the node's next records and certificates (its buffers reused).
    pub(crate) fn batch(&mut self) -> LogBatch {
        LogBatch {
            records: self.spare.pop().unwrap_or_default(),
            certificates: self.spare_applied.pop().unwrap_or_default(),
            position: 0,
        }
    }

    /// Hands over `batch`'s records to be made durable, then the certificates they applied to
    /// be stored. Certificate queries see those from now on (their answers leave, like every
    /// reply, once these records are durable).
    pub(crate) fn append(&mut self, batch: LogBatch) {
        let LogBatch {
            records,
            certificates: mut applied,
            position,
        } = batch;
        let applied = if applied.is_empty() {
            self.spare_applied.push(applied);
            None
        } else {
            // A list shell back from the certificate writer carries its old vector, which
            // becomes the next round's buffer.
            let list = match self.spare_lists.try_recv() {
                Ok(mut shell) => match Arc::get_mut(&mut shell) {
                    Some(slot) => {
                        std::mem::swap(slot, &mut applied);
                        applied.clear();
                        self.spare_applied.push(applied);
                        shell
                    }
                    None => Arc::new(applied),
                },
                Err(_) => Arc::new(applied),
            };
            self.unstored.push(list.clone());
            Some(list)
        };
        if let Some(jobs) = &self.jobs
            && jobs
                .send(Job::Append {
                    records,
                    position,
                    applied,
                })
                .is_ok()
        {
            self.in_flight += 1;
        }
    }

    /// Gives back a batch that carried nothing.
    pub(crate) fn recycle(&mut self, mut batch: LogBatch) {
        batch.clear();
        self.spare.push(batch.records);
        self.spare_applied.push(batch.certificates);
    }

    /// Gives back a record buffer the writer is done with.
    fn recycle_records(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.spare.push(buffer);
    }

    /// Cuts the log for a snapshot of every record handed over so far, which
    /// [`snapshot`](Self::snapshot) hands over once encoded.
    pub(crate) fn cut(&mut self) {
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Cut).is_ok()
        {
            self.snapshot_in_progress = true;
        }
    }

    /// Queues `snapshot`, the state at the last [`cut`](Self::cut).
    pub(crate) fn snapshot(&mut self, snapshot: EncodedSnapshot) {
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Snapshot(snapshot)).is_ok()
        {
            self.snapshot_in_progress = true;
        }
    }

    /// Starts preparing the next snapshot's buffer, of `capacity()` bytes, unless one is
    /// ready or on its way.
    pub(crate) fn prepare_snapshot_buffer(&mut self, capacity: impl FnOnce() -> usize) {
        self.snapshot_buffer.prepare(capacity);
    }

    /// The next snapshot's buffer, if it is ready.
    pub(crate) fn take_snapshot_buffer(&mut self) -> Taken {
        self.snapshot_buffer.take()
    }

    /// Whether a snapshot is cut, queued or being written.
    pub(crate) fn snapshot_in_progress(&self) -> bool {
        self.snapshot_in_progress
    }

    /// Appends not yet durable.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// What the writer reported since the last call: the highest position now durable, if
    /// it moved; an error if the disk failed.
    pub(crate) fn poll(&mut self) -> Result<Option<u64>, StoreError> {
        let mut durable = None;
        while let Ok(done) = self.done.try_recv() {
            match done {
                Done::Durable(position, buffers) => {
                    self.in_flight = self.in_flight.saturating_sub(buffers.len());
                    for buffer in buffers {
                        self.recycle_records(buffer);
                    }
                    durable = durable.max(Some(position));
                }
                Done::SnapshotWritten(bytes) => {
                    self.snapshot_in_progress = false;
                    tracing::info!(
                        shard = self.me,
                        bytes,
                        "shard {}: snapshot written ({bytes} bytes on disk)",
                        self.me
                    );
                }
                Done::Failed(e) => return Err(e),
            }
        }
        Ok(durable)
    }

    /// Stops the writer once everything handed over is durable, and waits for it.
    pub(crate) fn finish(&mut self) -> Result<Option<u64>, StoreError> {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.poll()
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The writer's sync times, published to the shard's metrics after each sync (or, if a
/// scrape held the slot then, at the next sync or idle moment).
struct Syncs {
    histogram: Histogram,
    unpublished: bool,
    metrics: Arc<ShardMetrics>,
}

impl Syncs {
    fn publish(&mut self) {
        if self.unpublished {
            self.unpublished = !self.metrics.publish_fsync(&self.histogram);
        }
    }
}

/// What one sync makes durable: everything queued meanwhile, up to a cut (which must follow
/// the records before it) or a snapshot.
#[derive(Default)]
struct Group {
    /// The record buffers, to give back to the shard.
    buffers: Vec<Vec<u8>>,
    /// The position the last of them reaches.
    position: Option<u64>,
    /// Their certificate lists.
    applied: Vec<Arc<Vec<AppliedCertificate>>>,
    /// Whether the group ends at a cut.
    cut: bool,
    snapshot: Option<EncodedSnapshot>,
}

/// The writer thread: its shard's two stores, and how it reports to the shard.
struct Writer {
    disk: ShardDisk,
    done: Sender<Done>,
    waker: Arc<Waker>,
    counters: Arc<ShardCounters>,
    syncs: Syncs,
}

impl Writer {
    /// One group per sync, made of everything queued meanwhile, until the shard hangs up.
    fn run(mut self, jobs: &Receiver<Job>) {
        let mut group = Group::default();
        loop {
            let first = match jobs.recv_timeout(IDLE_POLL) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.syncs.publish();
                    self.counters.set(
                        Counter::CertificatesUnstored,
                        self.disk.certificates.backlog() as u64,
                    );
                    if let Err(e) = self
                        .report_snapshot()
                        .and_then(|()| self.check_certificates())
                    {
                        return self.fail(e);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            gather(first, jobs, &mut self.disk.log, &mut group);
            if let Err(e) = self.commit(&mut group) {
                return self.fail(e);
            }
        }
        // Shut down: whatever was handed over is already committed; let the snapshot land.
        if let Err(e) = self
            .disk
            .log
            .wait_snapshot()
            .and_then(|()| Ok(self.disk.certificates.sync()?))
        {
            self.fail(e);
        }
    }

    /// Makes `group` durable, then hands its certificates to the certificate writer, tells
    /// the shard, and cuts the log or starts the group's snapshot, if it ends so.
    fn commit(&mut self, group: &mut Group) -> Result<(), StoreError> {
        let log = &mut self.disk.log;
        if log.has_pending() {
            let started = Instant::now();
            log.commit()?;
            self.syncs
                .histogram
                .observe(started.elapsed().as_secs_f64(), 1);
            self.syncs.unpublished = true;
            self.counters.bump(Counter::Fsyncs);
            self.counters.set(Counter::DiskBytes, log.disk_bytes());
        }
        // The records are durable: their certificates may be stored. The certificate writer
        // stores them in the background; queries find them in `Unstored` meanwhile.
        let certificates = &self.disk.certificates;
        // What the store has yet to write from earlier groups: how far it is behind.
        self.counters
            .set(Counter::CertificatesUnstored, certificates.backlog() as u64);
        for applied in group.applied.drain(..) {
            certificates.store(applied);
        }
        // A store far behind holds the shard's replies back rather than growing without end.
        while certificates.backlog() > MAX_UNSTORED && !certificates.has_failed() {
            std::thread::sleep(BEHIND_POLL);
        }
        self.check_certificates()?;
        if let Some(position) = group.position.take() {
            let buffers = std::mem::take(&mut group.buffers);
            let _ = self.done.send(Done::Durable(position, buffers));
            let _ = self.waker.wake();
        }
        if std::mem::take(&mut group.cut) {
            self.disk.log.cut()?;
        }
        if let Some(snapshot) = group.snapshot.take() {
            self.disk
                .log
                .write_snapshot(snapshot, &self.disk.certificates)?;
        }
        self.report_snapshot()?;
        self.syncs.publish();
        Ok(())
    }

    /// Reports the certificate store's failure, if it failed, and otherwise its progress.
    fn check_certificates(&self) -> Result<(), StoreError> {
        if let Some(e) = self.disk.certificates.failure() {
            return Err(e.into());
        }
        count_certificates(&self.disk.certificates, &self.counters);
        Ok(())
    }

    /// Tells the shard when the background snapshot has landed.
    fn report_snapshot(&mut self) -> Result<(), StoreError> {
        if self.disk.log.poll_snapshot()? {
            let _ = self
                .done
                .send(Done::SnapshotWritten(self.disk.log.disk_bytes()));
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// Tells the shard the disk failed (it must stop).
    fn fail(&self, e: StoreError) {
        let _ = self.done.send(Done::Failed(e));
        let _ = self.waker.wake();
    }
}

/// Takes `first` and everything queued after it into `group`, up to a cut or a snapshot,
/// appending the records to `log`'s pending group.
fn gather(first: Job, jobs: &Receiver<Job>, log: &mut ShardStore, group: &mut Group) {
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Append {
                records,
                position,
                applied,
            } => {
                log.pending_mut().extend_from_slice(&records);
                group.buffers.push(records);
                group.applied.extend(applied);
                group.position = Some(position);
                next = jobs.try_recv().ok();
            }
            Job::Cut => group.cut = true,
            Job::Snapshot(snapshot) => group.snapshot = Some(snapshot),
        }
    }
}

/// Sets the certificate store's gauges.
pub(crate) fn count_certificates(certificates: &CertificateWriter, counters: &ShardCounters) {
    counters.set(Counter::CertificatesStored, certificates.stored());
    counters.set(Counter::CertificateStoreBytes, certificates.file_bytes());
}
