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

use crate::certificates::{MAX_UNSTORED, Unstored};
use crate::counters::{Counter, ShardCounters};
use crate::metrics::{FSYNC_BUCKETS, Histogram, ShardMetrics};
use crate::store::{ShardStore, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use fastpay_node::AppliedCertificate;
use fastpay_node::log::Snapshot;
use mio::Waker;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an idle writer looks whether its background snapshot finished.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often a writer waiting for the certificate store to catch up looks again.
const BEHIND_POLL: Duration = Duration::from_millis(1);

enum Job {
    /// Framed records reaching log position `position`, and the certificates they applied
    /// (handed to the certificate writer once the records are durable).
    Append {
        records: Vec<u8>,
        position: u64,
        applied: Option<Arc<Vec<AppliedCertificate>>>,
    },
    /// A snapshot including every record appended before it.
    Snapshot(Box<Snapshot>),
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
    me: u32,
}

impl LogWriter {
    /// Starts the writer of shard `me`'s `store`; it wakes the shard through `waker` when
    /// something is durable.
    pub(crate) fn spawn(
        store: ShardStore,
        me: u32,
        waker: Arc<Waker>,
        counters: Arc<ShardCounters>,
        metrics: Arc<ShardMetrics>,
    ) -> io::Result<Self> {
        let (jobs, job_rx) = unbounded();
        let (done_tx, done) = unbounded();
        let unstored = store.unstored_certificates();
        let spare_lists = store.spare_certificates();
        let thread = std::thread::Builder::new()
            .name(format!("log-{me}"))
            .spawn(move || {
                let mut syncs = Syncs {
                    histogram: Histogram::new(FSYNC_BUCKETS),
                    unpublished: false,
                    metrics,
                };
                write_loop(store, &job_rx, &done_tx, &waker, &counters, &mut syncs)
            })?;
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
            me,
        })
    }

    /// An empty buffer for the next round's records.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// An empty vector for the next round's applied certificates.
    pub(crate) fn applied_buffer(&mut self) -> Vec<AppliedCertificate> {
        self.spare_applied.pop().unwrap_or_default()
    }

    /// Hands over `records` (reaching `position`) to be made durable, then the certificates
    /// `applied` they carry to be stored. Certificate queries see `applied` from now on (their
    /// answers leave, like every reply, once these records are durable).
    pub(crate) fn append(
        &mut self,
        records: Vec<u8>,
        position: u64,
        mut applied: Vec<AppliedCertificate>,
    ) {
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

    /// Gives back a buffer that carried nothing.
    pub(crate) fn recycle(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.spare.push(buffer);
    }

    /// Queues `snapshot`, which includes every record handed over so far.
    pub(crate) fn snapshot(&mut self, snapshot: Snapshot) {
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Snapshot(Box::new(snapshot))).is_ok()
        {
            self.snapshot_in_progress = true;
        }
    }

    /// Whether a snapshot is queued or being written.
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
                        self.recycle(buffer);
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

/// The writer thread: one group per sync, made of everything queued meanwhile.
fn write_loop(
    mut store: ShardStore,
    jobs: &Receiver<Job>,
    done: &Sender<Done>,
    waker: &Waker,
    counters: &ShardCounters,
    syncs: &mut Syncs,
) {
    let fail = |e: StoreError| {
        let _ = done.send(Done::Failed(e));
        let _ = waker.wake();
    };
    // The groups' certificate lists, reused from group to group.
    let mut applied_lists = Vec::new();
    loop {
        let first = match jobs.recv_timeout(IDLE_POLL) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                syncs.publish();
                if let Err(e) = report_snapshot(&mut store, done, waker)
                    .and_then(|()| check_certificates(&store, counters))
                {
                    return fail(e);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut buffers = Vec::new();
        let mut position = None;
        let mut snapshot = None;
        let mut next = Some(first);
        // Everything queued joins this group, up to a snapshot (which must follow its
        // records).
        while let Some(job) = next.take() {
            match job {
                Job::Append {
                    records,
                    position: p,
                    applied,
                } => {
                    store.pending_mut().extend_from_slice(&records);
                    buffers.push(records);
                    applied_lists.push(applied);
                    position = Some(p);
                    next = jobs.try_recv().ok();
                }
                Job::Snapshot(s) => snapshot = Some(s),
            }
        }
        if store.has_pending() {
            let started = Instant::now();
            if let Err(e) = store.commit() {
                return fail(e);
            }
            syncs.histogram.observe(started.elapsed().as_secs_f64(), 1);
            syncs.unpublished = true;
            counters.bump(Counter::Fsyncs);
            counters.set(Counter::DiskBytes, store.disk_bytes());
        }
        // The records are durable: their certificates may be stored. The certificate writer
        // stores them in the background; queries find them in `Unstored` meanwhile.
        for applied in applied_lists.drain(..).flatten() {
            store.store_certificates(applied);
        }
        // A store far behind holds the shard's replies back rather than growing without end.
        while store.unstored_certificates().len() > MAX_UNSTORED && !store.certificate_failed() {
            std::thread::sleep(BEHIND_POLL);
        }
        if let Err(e) = check_certificates(&store, counters) {
            return fail(e);
        }
        if let Some(position) = position {
            let _ = done.send(Done::Durable(position, buffers));
            let _ = waker.wake();
        }
        if let Some(snapshot) = snapshot
            && let Err(e) = store.begin_snapshot(*snapshot)
        {
            return fail(e);
        }
        if let Err(e) = report_snapshot(&mut store, done, waker) {
            return fail(e);
        }
        syncs.publish();
    }
    // Shut down: whatever was handed over is already committed; let the snapshot land.
    if let Err(e) = store
        .wait_snapshot()
        .and_then(|()| store.sync_certificates())
    {
        fail(e);
    }
}

/// Reports the certificate store's failure, if it failed, and otherwise its progress.
fn check_certificates(store: &ShardStore, counters: &ShardCounters) -> Result<(), StoreError> {
    if let Some(e) = store.certificate_failure() {
        return Err(e);
    }
    counters.set(Counter::CertificatesStored, store.certificates_stored());
    counters.set(Counter::CertificateStoreBytes, store.certificate_bytes());
    Ok(())
}

/// Tells the shard when the background snapshot has landed.
fn report_snapshot(
    store: &mut ShardStore,
    done: &Sender<Done>,
    waker: &Waker,
) -> Result<(), StoreError> {
    if store.poll_snapshot()? {
        let _ = done.send(Done::SnapshotWritten(store.disk_bytes()));
        let _ = waker.wake();
    }
    Ok(())
}
