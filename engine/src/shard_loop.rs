//! The loop one shard thread runs, in the manner of a Firedancer tile: receive, hand to the
//! node, persist, send, housekeeping. It moves bytes and frames between the node and the
//! sockets, queues and disk, and decides nothing itself.
//!
//! The loop never blocks while there is work: it runs rounds of at most [`BATCH`] datagrams,
//! and only when everything is drained does it wait in `poll`, woken by its socket, its link
//! socket, a peer shard's [`Waker`], the node's next retransmission deadline, or shutdown.

use crate::counters::{Counter, ShardCounters};
use crate::link::LinkKey;
use crate::log_writer::LogWriter;
use crate::metrics::{PUBLISH_EVERY, ShardMetrics, ShardSource, ShardStats};
use crate::snapshot_buffer::Taken;
use crate::store::StoreError;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use fastpay_node::ShardNode;
use fastpay_udp as udp;
use fastpay_wire::{BATCH, Datagrams, DepositBatch};
use fastpay_wire::{LinkFrame, LinkPayload};
use mio::{Events, Poll, Waker};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Frames a shard parks (credits not yet acknowledged, plus frames waiting for room in a
/// queue) before it stops reading its socket: bounds memory while a destination catches up;
/// the kernel then sheds load and clients retry.
pub const BACKLOG_LIMIT: usize = 65_536;

/// Rounds of up to [`BATCH`] datagrams a shard runs per wakeup before polling again (without
/// waiting) to let the kernel's other events in. 16 rounds are about a millisecond of work.
pub const IO_LOOP_BOUND: usize = 16;

/// Log appends a shard lets wait for its writer before it stops reading new requests: bounds
/// the memory of records not yet durable while the disk is slow.
pub const LOG_APPENDS_IN_FLIGHT: usize = 256;

/// How long an idle shard sleeps in `poll` before re-checking the shutdown flag. Shutdown also
/// wakes it at once; this is only a safety net.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Accounts of a snapshot encoded between two rounds (about 50 µs of a shard's time): a
/// request waits for at most one slice rather than for the whole state (a 78 MB snapshot of
/// 185,000 accounts took 29 ms to encode at once).
const SNAPSHOT_SLICE_ACCOUNTS: usize = 256;

/// Frames taken from the in-process queues per round, over all of them: credits and
/// acknowledgements are cheap, but a round must still get to the socket.
const FRAMES_PER_ROUND: usize = 4 * BATCH;

/// How a shard reaches the authority's other shards: queues to those in this process, a link
/// socket to those in others.
pub(crate) struct Peers {
    /// `outbound[j]`: the queue to shard `j` of this process (none to ourselves or to shards
    /// elsewhere).
    outbound: Vec<Option<Sender<LinkFrame>>>,
    inbound: Vec<Receiver<LinkFrame>>,
    wakers: Vec<Arc<Waker>>,
    to_wake: Vec<bool>,
    /// Frames that found their queue full, per destination, oldest first.
    parked: Vec<VecDeque<LinkFrame>>,
    parked_count: usize,
    /// The link socket and key, when shards run in other processes.
    link: Option<(mio::net::UdpSocket, LinkKey)>,
    link_addresses: Vec<SocketAddr>,
    link_in: Datagrams,
    link_out: Datagrams,
}

impl Peers {
    pub(crate) fn new(
        outbound: Vec<Option<Sender<LinkFrame>>>,
        inbound: Vec<Receiver<LinkFrame>>,
        wakers: Vec<Arc<Waker>>,
        link: Option<(mio::net::UdpSocket, LinkKey)>,
        link_addresses: Vec<SocketAddr>,
    ) -> Self {
        let n = outbound.len();
        Self {
            outbound,
            inbound,
            to_wake: vec![false; n],
            wakers,
            parked: (0..n).map(|_| VecDeque::new()).collect(),
            parked_count: 0,
            link,
            link_addresses,
            link_in: Datagrams::new(),
            link_out: Datagrams::new(),
        }
    }

    /// Takes frames from the queues and the link socket into `node`; returns whether any
    /// queue still holds frames.
    fn receive(&mut self, node: &mut ShardNode, now: Duration, counters: &ShardCounters) -> bool {
        let mut taken = 0;
        let mut left = false;
        for rx in &self.inbound {
            while taken < FRAMES_PER_ROUND {
                let Ok(frame) = rx.try_recv() else {
                    break;
                };
                node.handle_frame(now, frame);
                taken += 1;
            }
            left |= !rx.is_empty();
        }
        if let Some((socket, key)) = &self.link {
            self.link_in.clear();
            if let Err(e) = udp::recv_batch(socket.as_raw_fd(), &mut self.link_in, BATCH) {
                tracing::warn!(error = %e, "shard link receive failed");
            }
            left |= self.link_in.is_full();
            for i in 0..self.link_in.len() {
                let (from, bytes, _) = self.link_in.get(i);
                // Only the authority's own shards send here: anything else is dropped before
                // it costs a hash.
                if !self.link_addresses.contains(&from) {
                    counters.bump(Counter::LinkStranger);
                    continue;
                }
                match key.open_frame(bytes) {
                    Ok(frame) => node.handle_frame(now, frame),
                    Err(_) => counters.bump(Counter::LinkRefused),
                }
            }
        }
        left
    }

    /// Sends `frames` on their way: into the queue of a shard of this process (parked while
    /// it is full, behind anything parked before it, so each queue stays FIFO), or sealed
    /// onto the link socket.
    fn send(&mut self, frames: &mut Vec<LinkFrame>, counters: &ShardCounters) {
        for frame in frames.drain(..) {
            let to = frame.to.0 as usize;
            match self.outbound.get(to).and_then(Option::as_ref) {
                Some(tx) => {
                    if !self.parked[to].is_empty() {
                        park(
                            &mut self.parked[to],
                            &mut self.parked_count,
                            frame,
                            counters,
                        );
                        continue;
                    }
                    match tx.try_send(frame) {
                        Ok(()) => self.to_wake[to] = true,
                        Err(TrySendError::Full(frame)) => park(
                            &mut self.parked[to],
                            &mut self.parked_count,
                            frame,
                            counters,
                        ),
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
                None => self.send_over_link(frame, counters),
            }
        }
        self.flush_link(counters);
    }

    fn send_over_link(&mut self, frame: LinkFrame, counters: &ShardCounters) {
        let Some((socket, key)) = &self.link else {
            return;
        };
        let Some(address) = self.link_addresses.get(frame.to.0 as usize).copied() else {
            return;
        };
        if self.link_out.is_full() {
            let dropped = udp::send_batch(socket.as_raw_fd(), &mut self.link_out);
            counters.add(Counter::SendDropped, dropped as u64);
        }
        let Some(buffer) = self.link_out.next_buffer(address) else {
            return;
        };
        match key.seal_frame(frame, &mut buffer[..]) {
            Some(len) => self.link_out.commit(len),
            None => counters.bump(Counter::HandoverDropped),
        }
    }

    fn flush_link(&mut self, counters: &ShardCounters) {
        if let Some((socket, _)) = &self.link
            && !self.link_out.is_empty()
        {
            let dropped = udp::send_batch(socket.as_raw_fd(), &mut self.link_out);
            counters.add(Counter::SendDropped, dropped as u64);
        }
    }

    /// Retries parked frames, oldest first; returns whether some still wait.
    fn retry_parked(&mut self) -> bool {
        for (to, queue) in self.parked.iter_mut().enumerate() {
            let Some(Some(tx)) = self.outbound.get(to) else {
                continue;
            };
            while let Some(frame) = queue.pop_front() {
                match tx.try_send(frame) {
                    Ok(()) => {
                        self.parked_count = self.parked_count.saturating_sub(1);
                        self.to_wake[to] = true;
                    }
                    Err(TrySendError::Full(frame)) => {
                        queue.push_front(frame);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        self.parked_count = self.parked_count.saturating_sub(1);
                    }
                }
            }
        }
        self.parked_count > 0
    }

    /// Frames waiting in the queues from this process's other shards.
    fn queued(&self) -> usize {
        self.inbound.iter().map(Receiver::len).sum()
    }

    /// Wakes the shards whose queues received frames.
    fn wake(&mut self) {
        for (to, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                let _ = self.wakers[to].wake();
            }
        }
    }
}

/// Parks a frame that did not fit its queue. Credits and acknowledgements are kept (they carry
/// money or free it); handed-over client datagrams are dropped (UDP promises nothing; the
/// client retries).
fn park(
    queue: &mut VecDeque<LinkFrame>,
    count: &mut usize,
    frame: LinkFrame,
    counters: &ShardCounters,
) {
    match frame.payload {
        LinkPayload::Forward { .. } => counters.bump(Counter::HandoverDropped),
        LinkPayload::Credit { .. } | LinkPayload::Ack => {
            counters.bump(Counter::Backlog);
            queue.push_back(frame);
            *count = count.saturating_add(1);
        }
    }
}

/// One shard thread's node and everything it touches.
pub(crate) struct ShardLoop {
    node: ShardNode,
    /// The log's writer thread, when the shard is durable.
    writer: Option<LogWriter>,
    socket: mio::net::UdpSocket,
    receiver: udp::Receiver,
    poll: Poll,
    peers: Peers,
    stop: Arc<AtomicBool>,
    counters: Arc<ShardCounters>,
    /// Histograms kept here, copied to `metrics` every [`PUBLISH_EVERY`].
    stats: ShardStats,
    metrics: Arc<ShardMetrics>,
    published: Duration,
    started: Instant,
    inputs: Datagrams,
    frames: Vec<LinkFrame>,
    /// Deposit batches from the primary chain's follower, when one runs.
    deposits: Option<Receiver<DepositBatch>>,
    /// How long the last snapshot's cut took; the time spent encoding the snapshot being
    /// encoded, and in how many slices.
    cut_took: Duration,
    encoding: Duration,
    encoding_slices: u64,
}

impl ShardLoop {
    pub(crate) fn new(
        node: ShardNode,
        writer: Option<LogWriter>,
        socket: mio::net::UdpSocket,
        poll: Poll,
        peers: Peers,
        stop: Arc<AtomicBool>,
        ShardSource {
            counters, metrics, ..
        }: ShardSource,
    ) -> Self {
        Self {
            stats: ShardStats::default(),
            metrics,
            published: Duration::ZERO,
            receiver: udp::Receiver::new(&socket),
            node,
            writer,
            socket,
            poll,
            peers,
            stop,
            counters,
            started: Instant::now(),
            inputs: Datagrams::new(),
            frames: Vec::new(),
            cut_took: Duration::ZERO,
            encoding: Duration::ZERO,
            encoding_slices: 0,
            deposits: None,
        }
    }

    /// Takes deposit batches from `deposits` (see [`crate::deposits`]).
    pub(crate) fn with_deposits(mut self, deposits: Receiver<DepositBatch>) -> Self {
        self.deposits = Some(deposits);
        self
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs until shutdown or a disk failure (the shard must then stop rather than answer
    /// with state it could lose).
    pub(crate) fn run(mut self) {
        let me = self.node.shard().shard().0;
        if let Err(e) = self.run_until_stopped() {
            tracing::error!(shard = me, error = %e, "shard {me}: {e}, stopping");
            self.stop.store(true, Ordering::SeqCst);
        }
        // Whatever was applied since the last commit is made durable before the shard ends.
        let _ = self.persist();
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.finish();
        }
        self.publish();
    }

    fn run_until_stopped(&mut self) -> Result<(), StoreError> {
        let mut events = Events::with_capacity(8);
        // After a restart the node has credits to resend and acknowledgements to give.
        self.send()?;
        let mut busy = true;
        while !self.stop.load(Ordering::Relaxed) {
            self.wait(&mut events, busy);
            busy = false;
            for _ in 0..IO_LOOP_BOUND {
                if !self.round()? {
                    break;
                }
                busy = true;
            }
            // Datagrams read in a coalesced message and not yet processed: the socket will not
            // signal them again.
            busy |= self.receiver.has_staged();
            // A snapshot being encoded goes on a slice at a time when a round found nothing
            // to do, or after a bound of busy rounds, so requests seldom wait for a slice and
            // an overloaded shard still finishes it.
            if self.node.snapshot_encoding() {
                self.encode_snapshot_slice()?;
                busy = true;
            }
            busy |= self.housekeeping()?;
        }
        Ok(())
    }

    /// Waits for something to do: not at all when busy, else until an event, the node's next
    /// deadline or the idle timeout.
    fn wait(&mut self, events: &mut Events, busy: bool) {
        let mut timeout = if busy { Duration::ZERO } else { IDLE_POLL };
        if let Some(deadline) = self.node.next_deadline() {
            timeout = timeout.min(deadline.saturating_sub(self.now()));
        }
        if let Err(e) = self.poll.poll(events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(error = %e, "shard poll failed");
            self.stop.store(true, Ordering::SeqCst);
        }
        // Which source woke us does not matter: every round looks at all of them.
    }

    /// One round: receive, hand to the node, persist, send. Returns whether it found work.
    fn round(&mut self) -> Result<bool, StoreError> {
        let now = self.now();
        let frames_left = self.peers.receive(&mut self.node, now, &self.counters);
        let deposited = self.credit_deposits();
        self.inputs.clear();
        // Backpressure: while credits wait for their recipients, or records for the disk,
        // leave new requests in the kernel.
        let log_waits = self
            .writer
            .as_ref()
            .is_some_and(|w| w.in_flight() >= LOG_APPENDS_IN_FLIGHT);
        if self.node.backlog() + self.peers.parked_count < BACKLOG_LIMIT && !log_waits {
            let room = self.node.batch_room();
            match self
                .receiver
                .recv(self.socket.as_raw_fd(), &mut self.inputs, room)
            {
                Ok(n) => {
                    self.counters.add(Counter::Received, n as u64);
                    if n > 0 {
                        self.stats.batch_datagrams.observe(n as f64, 1);
                        tracing::trace!(datagrams = n, "batch read");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "shard receive failed"),
            }
        }
        let work = !self.inputs.is_empty() || self.node.has_forwarded();
        if work {
            self.node.handle_batch(now, &self.inputs);
        }
        self.send()?;
        Ok(work || frames_left || deposited)
    }

    /// Hands queued deposit batches to the node; returns whether there were any.
    fn credit_deposits(&mut self) -> bool {
        let Some(deposits) = &self.deposits else {
            return false;
        };
        let mut any = false;
        while let Ok(batch) = deposits.try_recv() {
            any = true;
            let me = self.node.shard().shard().0;
            match self.node.credit_deposits(&batch) {
                Ok(units) if !batch.credits.is_empty() => tracing::info!(
                    shard = me,
                    deposits = batch.credits.len(),
                    units = %units,
                    next_index = batch.to.next_index,
                    "shard {me}: credited {} deposits ({units} units), next deposit index {}",
                    batch.credits.len(),
                    batch.to.next_index
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(shard = me, error = %e, "shard {me}: deposit batch refused: {e}")
                }
            }
        }
        any
    }

    /// Tells the node what became durable meanwhile (the writer syncs while the shard works
    /// on), then hands the node's new records to the log writer with the replies that wait
    /// for them, which the writer sends as soon as they are durable.
    fn persist(&mut self) -> Result<(), StoreError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let (node, stats, started) = (&mut self.node, &mut self.stats, self.started);
        let durable = writer.poll(|replies, count, received, sent| {
            let sent = sent.saturating_duration_since(started);
            stats
                .reply_seconds
                .observe(sent.saturating_sub(received).as_secs_f64(), count as u64);
            node.recycle(replies);
        })?;
        if let Some(position) = durable {
            node.durable(position);
        }
        let mut handover = writer.handover();
        let logged = node.take_log(&mut handover.log);
        if node.take_held_replies(&mut handover.replies) || logged {
            writer.append(handover);
        } else {
            writer.recycle(handover);
        }
        Ok(())
    }

    /// Persists, then sends every released reply and every frame due.
    fn send(&mut self) -> Result<(), StoreError> {
        self.persist()?;
        let fd = self.socket.as_raw_fd();
        let mut now = None;
        while let Some((mut replies, received)) = self.node.poll_replies_timed() {
            let count = replies.len() as u64;
            let dropped = udp::send_batch(fd, &mut replies);
            self.counters.add(Counter::SendDropped, dropped as u64);
            self.node.recycle(replies);
            let sent = *now.get_or_insert_with(|| self.now());
            self.stats
                .reply_seconds
                .observe(sent.saturating_sub(received).as_secs_f64(), count);
        }
        self.node.transmit(self.now(), &mut self.frames);
        self.peers.send(&mut self.frames, &self.counters);
        self.snapshot_if_due()
    }

    /// Retransmissions due, parked frames, waking peers, publishing metrics when due. Returns
    /// whether work remains.
    fn housekeeping(&mut self) -> Result<bool, StoreError> {
        self.send()?;
        let parked = self.peers.retry_parked();
        self.peers.wake();
        let now = self.now();
        if now.saturating_sub(self.published) >= PUBLISH_EVERY {
            self.published = now;
            self.publish();
        }
        Ok(parked)
    }

    /// Sets the gauges (CPU time included) and copies the histograms out for the metrics
    /// endpoint: a copy of a few hundred bytes and one read of `/proc`, once a second.
    fn publish(&mut self) {
        let in_flight = self.writer.as_ref().map_or(0, LogWriter::in_flight);
        for (gauge, level) in [
            (Counter::QueuedFrames, self.peers.queued()),
            (Counter::BacklogFrames, self.peers.parked_count),
            (Counter::LogAppendsInFlight, in_flight),
            (Counter::Accounts, self.node.shard().accounts().len()),
        ] {
            self.counters.set(gauge, level as u64);
        }
        if let Ok(cpu) = fastpay_udp::thread_cpu_time() {
            self.counters.set(
                Counter::CpuMillis,
                cpu.as_millis().try_into().unwrap_or(u64::MAX),
            );
        }
        self.metrics.publish(&self.stats);
    }

    /// Starts a snapshot when the node asks for one, none is being encoded or written (the
    /// writer reports those that land) and the buffer prepared for it is ready (the writer
    /// starts preparing one when the node says a snapshot is near, and wakes the shard when
    /// it is): cuts the log and the state, to be encoded by [`Self::encode_snapshot_slice`].
    fn snapshot_if_due(&mut self) -> Result<(), StoreError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.node.snapshot_encoding()
            || writer.snapshot_in_progress()
            || !self.node.snapshot_near()
        {
            return Ok(());
        }
        writer.prepare_snapshot_buffer(|| self.node.snapshot_capacity());
        if !self.node.snapshot_due() {
            return Ok(());
        }
        let buffer = match writer.take_snapshot_buffer() {
            Taken::Ready(buffer) => buffer,
            Taken::Preparing => return Ok(()),
            Taken::Missing => Vec::with_capacity(self.node.snapshot_capacity()),
        };
        // Every record the snapshot includes goes to the log before the cut; every later one
        // after it.
        self.persist()?;
        if let Some(writer) = self.writer.as_mut() {
            writer.cut();
        }
        let started = Instant::now();
        self.node
            .begin_snapshot(buffer)
            .map_err(|_| StoreError::SnapshotTooLarge)?;
        self.cut_took = started.elapsed();
        self.encoding = Duration::ZERO;
        self.encoding_slices = 0;
        Ok(())
    }

    /// One slice of the snapshot being encoded (between rounds, so that requests wait for
    /// a slice at most rather than for the whole state); hands it to the writer once whole.
    fn encode_snapshot_slice(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let whole = self
            .node
            .encode_snapshot(SNAPSHOT_SLICE_ACCOUNTS)
            .map_err(|_| StoreError::SnapshotTooLarge)?;
        self.encoding += started.elapsed();
        self.encoding_slices += 1;
        let Some(snapshot) = whole else {
            return Ok(());
        };
        let bytes = snapshot.as_bytes().len();
        if let Some(writer) = self.writer.as_mut() {
            writer.snapshot(snapshot);
        }
        let (me, cut_ms, ms, slices) = (
            self.node.shard().shard().0,
            self.cut_took.as_secs_f64() * 1e3,
            self.encoding.as_secs_f64() * 1e3,
            self.encoding_slices,
        );
        tracing::info!(
            shard = me,
            cut_ms,
            encoded_ms = ms,
            slices,
            bytes,
            "shard {me}: snapshot started (state cut in {cut_ms:.1} ms, encoded in {ms:.1} ms \
             over {slices} slices between rounds, {bytes} bytes, written in the background)"
        );
        Ok(())
    }
}
