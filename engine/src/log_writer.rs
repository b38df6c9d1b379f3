//! Pipelined group commit: a thread per shard that makes the shard's log durable while the
//! shard goes on checking and verifying the next batches.
//!
//! The shard hands over each round's framed records with the log position they reach; the
//! writer takes everything queued since its last sync as one group (so groups grow while a
//! sync is in flight), writes it with one `write`, syncs it with one `fdatasync`, reports the
//! position now durable, waking the shard, and sends the replies that waited for the group.
//! The replies go with the records they wait for and leave from here the moment the sync
//! returns, rather than when the shard next looks (it may be verifying the next batch); the
//! node holds every credit and acknowledgement until the shard hears the position is durable.
//! So the durability rules do not change: only the shard no longer idles while the disk syncs,
//! and no durable reply waits for the shard. Snapshots go through the same queue, after the
//! records they include.
//!
//! The writer owns the shard's two stores side by side ([`ShardDisk`]): the log, and the
//! certificate writer, to which each group's certificates go once the group is durable.

use crate::certificates::{CertificateWriter, MAX_UNSTORED, Unstored};
use crate::counters::{Counter, ShardCounters};
use crate::metrics::{Histogram, ShardMetrics, ShardSource, WriterStats};
use crate::snapshot_buffer::{SnapshotBuffer, Taken};
use crate::store::{Recovered, ShardStore, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use fastpay_node::log::EncodedSnapshot;
use fastpay_node::{AppliedCertificate, LogBatch};
use fastpay_wire::Datagrams;
use mio::Waker;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an idle writer looks whether its background snapshot finished.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The time slice a writer thread asks the scheduler for (the shortest Linux grants): it
/// runs for microseconds at a time, and should preempt a busier thread when its sync returns.
const WRITER_SLICE: Duration = Duration::from_micros(100);

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

/// Reply batches waiting for the log to be durable, each with the time (since the shard
/// started) its request batch was handed in.
pub(crate) type HeldReplies = Vec<(Datagrams, Duration)>;

/// What a shard hands its writer after a round: the node's new records and the certificates
/// they applied, and the replies that wait for them.
pub(crate) struct Handover {
    /// Records, certificates and the position they reach.
    pub(crate) log: LogBatch,
    /// Replies to send once the log is durable up to `log.position`.
    pub(crate) replies: HeldReplies,
}

enum Job {
    /// Framed records reaching log position `position`, the certificates they applied
    /// (handed to the certificate writer once the records are durable), and the replies to
    /// send then.
    Append {
        records: Vec<u8>,
        position: u64,
        applied: Option<Arc<Vec<AppliedCertificate>>>,
        replies: HeldReplies,
        /// When the shard handed them over.
        handed: Instant,
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
    /// The replies that waited for the last durable position were sent at `sent`, `counts`
    /// datagrams a batch in order; their buffers, for reuse.
    Sent {
        replies: Vec<HeldReplies>,
        counts: Vec<usize>,
        sent: Instant,
    },
    /// The background snapshot landed; bytes now on disk.
    SnapshotWritten(u64),
    /// The disk failed: the shard must stop.
    Failed(StoreError),
}

/// A group's outer vectors, emptied by the shard and given back for the writer's next
/// groups, so that a group allocates nothing.
enum Emptied {
    /// The list of a group's record buffers.
    Buffers(Vec<Vec<u8>>),
    /// The list of a group's reply lists, and of its reply counts.
    Replies(Vec<HeldReplies>, Vec<usize>),
}

/// The most emptied vectors on their way back to the writer (a few groups in flight use a
/// few of each; past this they are dropped).
const EMPTIED_BACKLOG: usize = 64;

/// A shard's handle on its log writer thread.
pub(crate) struct LogWriter {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    /// Where emptied group vectors go back to the writer.
    emptied: Sender<Emptied>,
    thread: Option<JoinHandle<()>>,
    spare: Vec<Vec<u8>>,
    /// Spare lists for the replies of an append.
    spare_replies: Vec<HeldReplies>,
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
    /// Starts the writer of shard `me`'s `disk`, which sends the replies handed to it on
    /// `socket` (the shard's own, duplicated) and wakes the shard through `waker` when
    /// something is durable.
    pub(crate) fn spawn(
        disk: ShardDisk,
        socket: OwnedFd,
        waker: Arc<Waker>,
        shard: &ShardSource,
    ) -> io::Result<Self> {
        let me = shard.shard;
        let (counters, metrics) = (shard.counters.clone(), shard.metrics.clone());
        let (jobs, job_rx) = unbounded();
        let (done_tx, done) = unbounded();
        let (emptied, emptied_rx) = bounded(EMPTIED_BACKLOG);
        let unstored = disk.certificates.unstored();
        let spare_lists = disk.certificates.spare();
        let snapshot_buffer = SnapshotBuffer::new(waker.clone(), me);
        let writer = Writer {
            disk,
            socket,
            done: done_tx,
            emptied: emptied_rx,
            spare_buffers: Vec::new(),
            spare_replies: Vec::new(),
            waker,
            counters,
            syncs: Syncs {
                stats: WriterStats::default(),
                unpublished: false,
                metrics,
            },
        };
        let thread = std::thread::Builder::new()
            .name(format!("log-{me}"))
            .spawn(move || {
                // Best effort: with the kernel's default slice a writer woken by its sync
                // may wait for the thread running on its core (loadgen, another shard's
                // writer) to use up a slice of about a millisecond before it sends the
                // group's replies.
                let _ = fastpay_udp::shorten_time_slice(WRITER_SLICE);
                writer.run(&job_rx)
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            emptied,
            thread: Some(thread),
            spare: Vec::new(),
            spare_replies: Vec::new(),
            in_flight: 0,
            spare_applied: Vec::new(),
            unstored,
            spare_lists,
            snapshot_in_progress: false,
            snapshot_buffer,
            me,
        })
    }

    /// An empty handover, for the node's next records, certificates and held replies (its
    /// buffers reused).
    pub(crate) fn handover(&mut self) -> Handover {
        Handover {
            log: LogBatch {
                records: self.spare.pop().unwrap_or_default(),
                certificates: self.spare_applied.pop().unwrap_or_default(),
                position: 0,
            },
            replies: self.spare_replies.pop().unwrap_or_default(),
        }
    }

    /// Hands over `handover`'s records to be made durable, then the certificates they applied
    /// to be stored and its replies to be sent. Certificate queries see those certificates
    /// from now on (their answers leave, like every reply, once these records are durable).
    pub(crate) fn append(&mut self, handover: Handover) {
        let Handover {
            log:
                LogBatch {
                    records,
                    certificates: mut applied,
                    position,
                },
            replies,
        } = handover;
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
                    replies,
                    handed: Instant::now(),
                })
                .is_ok()
        {
            self.in_flight += 1;
        }
    }

    /// Gives back a handover that carried nothing.
    pub(crate) fn recycle(&mut self, handover: Handover) {
        let Handover { mut log, replies } = handover;
        log.clear();
        self.spare.push(log.records);
        self.spare_applied.push(log.certificates);
        self.spare_replies.push(replies);
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
    /// it moved; an error if the disk failed. Each reply batch the writer sent meanwhile goes
    /// to `sent` for reuse, with how many datagrams it held, the time its request batch was
    /// handed in, and when it left.
    pub(crate) fn poll(
        &mut self,
        mut sent: impl FnMut(Datagrams, usize, Duration, Instant),
    ) -> Result<Option<u64>, StoreError> {
        let mut durable = None;
        while let Ok(done) = self.done.try_recv() {
            match done {
                Done::Durable(position, mut buffers) => {
                    self.in_flight = self.in_flight.saturating_sub(buffers.len());
                    for buffer in buffers.drain(..) {
                        self.recycle_records(buffer);
                    }
                    let _ = self.emptied.try_send(Emptied::Buffers(buffers));
                    durable = durable.max(Some(position));
                }
                Done::Sent {
                    mut replies,
                    mut counts,
                    sent: at,
                } => {
                    let mut counts_in_order = counts.drain(..);
                    for mut list in replies.drain(..) {
                        for (batch, received) in list.drain(..) {
                            let count = counts_in_order.next().unwrap_or(0);
                            sent(batch, count, received, at);
                        }
                        self.spare_replies.push(list);
                    }
                    drop(counts_in_order);
                    let _ = self.emptied.try_send(Emptied::Replies(replies, counts));
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

    /// Stops the writer once everything handed over is durable (and its replies sent), and
    /// waits for it.
    pub(crate) fn finish(&mut self) -> Result<Option<u64>, StoreError> {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.poll(|_, _, _, _| {})
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The writer's sync times and its records' waits, published to the shard's metrics after
/// each group (or, if a scrape held the slot then, at the next group or idle moment).
struct Syncs {
    stats: WriterStats,
    unpublished: bool,
    metrics: Arc<ShardMetrics>,
}

impl Syncs {
    fn publish(&mut self) {
        if self.unpublished {
            self.unpublished = !self.metrics.publish_writer(&self.stats);
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
    /// The replies that wait for them.
    replies: Vec<HeldReplies>,
    /// How many datagrams each reply batch held, in order, once sent.
    counts: Vec<usize>,
    /// Whether the group ends at a cut.
    cut: bool,
    snapshot: Option<EncodedSnapshot>,
}

/// The writer thread: its shard's two stores, and how it reports to the shard.
struct Writer {
    disk: ShardDisk,
    /// The shard's socket, which the group's replies leave from.
    socket: OwnedFd,
    done: Sender<Done>,
    /// Group vectors back from the shard.
    emptied: Receiver<Emptied>,
    /// Record buffer lists taken from `emptied`, for the next groups.
    spare_buffers: Vec<Vec<Vec<u8>>>,
    /// Reply lists and count lists taken from `emptied`, for the next groups.
    spare_replies: Vec<(Vec<HeldReplies>, Vec<usize>)>,
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
            let waits = &mut self.syncs.stats.wait_seconds;
            gather(first, jobs, &mut self.disk.log, &mut group, waits);
            self.syncs.unpublished = true;
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
                .stats
                .fsync_seconds
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
            self.take_emptied();
            // The shard first, so that the credits behind these records leave while the
            // replies do.
            let buffers = self.spare_buffers.pop().unwrap_or_default();
            let buffers = std::mem::replace(&mut group.buffers, buffers);
            let _ = self.done.send(Done::Durable(position, buffers));
            let _ = self.waker.wake();
            // Every reply of the group waits for this position or an earlier one.
            let fd = self.socket.as_raw_fd();
            for list in &mut group.replies {
                for (replies, _) in list.iter_mut() {
                    group.counts.push(replies.len());
                    let dropped = fastpay_udp::send_batch(fd, replies);
                    self.counters.add(Counter::SendDropped, dropped as u64);
                }
            }
            // The buffers go back with the shard's next look; it need not wake for them.
            let (replies, counts) = self.spare_replies.pop().unwrap_or_default();
            let _ = self.done.send(Done::Sent {
                replies: std::mem::replace(&mut group.replies, replies),
                counts: std::mem::replace(&mut group.counts, counts),
                sent: Instant::now(),
            });
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

    /// Keeps the group vectors the shard gave back, for the next groups.
    fn take_emptied(&mut self) {
        while let Ok(emptied) = self.emptied.try_recv() {
            match emptied {
                Emptied::Buffers(buffers) => self.spare_buffers.push(buffers),
                Emptied::Replies(replies, counts) => self.spare_replies.push((replies, counts)),
            }
        }
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
/// appending the records to `log`'s pending group, and records in `waits` how long each
/// round's records waited to be taken.
fn gather(
    first: Job,
    jobs: &Receiver<Job>,
    log: &mut ShardStore,
    group: &mut Group,
    waits: &mut Histogram,
) {
    let taken = Instant::now();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Append {
                records,
                position,
                applied,
                replies,
                handed,
            } => {
                let waited = taken.saturating_duration_since(handed);
                waits.observe(waited.as_secs_f64(), 1);
                log.pending_mut().extend_from_slice(&records);
                group.buffers.push(records);
                group.applied.extend(applied);
                group.replies.push(replies);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn append(position: u64, handed: Instant) -> Job {
        Job::Append {
            records: vec![7; 4],
            position,
            applied: None,
            replies: Vec::new(),
            handed,
        }
    }

    #[test]
    fn a_group_takes_what_is_queued_up_to_a_cut_and_records_each_rounds_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = ShardStore::open(dir.path()).unwrap();
        let (jobs, queue) = unbounded();
        let now = Instant::now();
        let long_ago = now
            .checked_sub(Duration::from_secs(10))
            .expect("the monotonic clock has run for 10 s");
        jobs.send(append(4, now)).unwrap();
        jobs.send(Job::Cut).unwrap();
        jobs.send(append(12, now)).unwrap();
        let pending = log.pending_mut().len();
        let mut group = Group::default();
        let mut waits = Histogram::new(crate::metrics::SECONDS_BUCKETS);

        let first = append(0, long_ago);
        gather(first, &queue, &mut log, &mut group, &mut waits);

        // The two appends before the cut, and the cut; the append after it waits for the next.
        assert_eq!(group.buffers.len(), 2);
        assert_eq!(group.position, Some(4));
        assert!(group.cut);
        assert_eq!(queue.len(), 1);
        assert_eq!(log.pending_mut().len(), pending + 8);
        // One round waited 10 s (past the last bound, a second), the other well under that.
        assert_eq!(waits.count(), 2);
        let buckets = waits.buckets();
        let waited = |from: f64, to: f64| -> u64 {
            buckets
                .iter()
                .filter(|(bound, _)| *bound > from && *bound <= to)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(waited(1.0, f64::INFINITY), 1, "{buckets:?}");
        assert_eq!(waited(0.0, 1.0), 1, "{buckets:?}");
    }

    #[test]
    fn the_writer_syncs_each_round_then_sends_its_replies_and_publishes_its_times() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = ShardDisk::open(dir.path(), 0).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Only a guard against a hang: the replies come as soon as the syncs return.
        client
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let shard = ShardSource {
            shard: 0,
            counters: Arc::new(ShardCounters::default()),
            metrics: Arc::new(ShardMetrics::default()),
        };
        let mut writer = LogWriter::spawn(disk, OwnedFd::from(socket), waker, &shard).unwrap();

        for round in 1..=3u8 {
            let mut handover = writer.handover();
            handover.log.records.extend_from_slice(&[round; 16]);
            handover.log.position = u64::from(round) * 16;
            let mut replies = Datagrams::new();
            assert!(replies.push(client.local_addr().unwrap(), &[round]));
            handover.replies.push((replies, Duration::ZERO));
            writer.append(handover);
        }
        assert_eq!(writer.in_flight(), 3);
        let mut reply = [0; 8];
        for round in 1..=3u8 {
            let (len, _) = client.recv_from(&mut reply).unwrap();
            assert_eq!(&reply[..len], &[round]);
        }

        // Hang up and wait for the writer, then read everything it reported.
        writer.jobs = None;
        writer.thread.take().unwrap().join().unwrap();
        let mut sent = 0;
        let durable = writer.poll(|_, count, _, _| sent += count).unwrap();
        assert_eq!(durable, Some(48));
        assert_eq!(sent, 3);
        assert_eq!(writer.in_flight(), 0);
        // The record buffers came back for the next rounds.
        assert_eq!(writer.spare.len(), 3);
        let syncs = shard.counters.get(Counter::Fsyncs);
        assert!((1..=3).contains(&syncs), "{syncs} syncs");
        assert!(shard.counters.get(Counter::DiskBytes) >= 48);
        let published = shard.metrics.writer_stats();
        assert_eq!(published.wait_seconds.count(), 3);
        assert_eq!(published.fsync_seconds.count(), syncs);
    }
}
