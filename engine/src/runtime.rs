//! The authority runtime: one pinned thread per shard, each owning one `SO_REUSEPORT` socket on
//! the authority's port, polled with mio; bounded crossbeam queues between every pair of shards
//! carry credits and misrouted datagrams.
//!
//! A shard's loop never blocks: it drains its queues and its socket in rounds of at most
//! [`BATCH`] datagrams, processes each round as one batch, flushes the replies with one
//! `sendmmsg`, and hands credits on. Only when everything is drained does it wait in `poll`,
//! woken by its socket, by a peer shard's [`Waker`], or by shutdown.

use crate::counters::{Counter, ShardCounters};
use crate::link::{Delivery, Link, LinkKey};
use crate::pipeline::{Handover, Outputs, ShardWorker};
use crate::store::{LinkState, Record, ShardStore, Snapshot, StoreError};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use fastpay_authority::{AuthorityShard, Genesis, ShardSetupError};
use fastpay_udp as udp;
use fastpay_wire::{BATCH, Committee, Datagrams, KeyPair, ShardId};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Handovers a queue between two shards holds. Deep enough to absorb a burst of cross-shard
/// confirmations from a full batch of every peer; past it, credits wait in a backlog.
pub const QUEUE_CAPACITY: usize = 4096;

/// Credits a shard parks (over all destinations) before it stops reading its socket: bounds
/// memory while the destination catches up; the kernel then sheds load and clients retry.
pub const BACKLOG_LIMIT: usize = 65_536;

/// Rounds of up to [`BATCH`] datagrams a shard runs per wakeup before polling again (without
/// waiting) to let the kernel's other events in. 16 rounds are about a millisecond of work.
pub const IO_LOOP_BOUND: usize = 16;

/// How long an idle shard sleeps in `poll` before re-checking the shutdown flag. Shutdown also
/// wakes it at once; this is only a safety net.
const IDLE_POLL: Duration = Duration::from_millis(200);

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
const LINK: Token = Token(2);

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The address is taken by another process.
    #[error("{0} is already in use by another process")]
    PortBusy(SocketAddr),
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The shard set-up was refused.
    #[error(transparent)]
    Setup(#[from] ShardSetupError),
    /// A `--cores` entry names no core of this machine.
    #[error("core {0} does not exist on this machine (it has {1})")]
    NoSuchCore(usize, usize),
    /// A shard's data directory could not be recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let context = context.into();
    move |source| EngineError::Io { context, source }
}

/// What the engine runs.
pub struct EngineConfig {
    /// The authority's secret key seed.
    pub key_seed: [u8; 32],
    /// The committee.
    pub committee: Arc<Committee>,
    /// The authority's public address (all shards bind it).
    pub listen: SocketAddr,
    /// The genesis balances.
    pub genesis: Genesis,
    /// Cores to pin shard threads to, shard `j` on `cores[j % len]`; `None` for every core.
    pub cores: Option<Vec<usize>>,
    /// Whether to attach the BPF program that steers datagrams to their shard's socket.
    pub steering: bool,
    /// Run only this shard (the others run in other processes, reached over the link);
    /// `None` runs every shard here.
    pub only_shard: Option<u32>,
    /// Link addresses of every shard of this authority (used with `only_shard`).
    pub link_addresses: Vec<SocketAddr>,
    /// Capacity of each queue between two shards ([`QUEUE_CAPACITY`] unless testing the
    /// backlog).
    pub queue_capacity: usize,
    /// Where each shard keeps its log and snapshot (`shard-<j>/` inside); `None` keeps state
    /// in memory only.
    pub data_dir: Option<PathBuf>,
    /// Log bytes after which a shard snapshots ([`crate::store::SNAPSHOT_AFTER_BYTES`]).
    pub snapshot_after_bytes: u64,
}

/// What a shard recovered from its data directory.
pub struct RecoveryReport {
    /// The shard.
    pub shard: u32,
    /// Records replayed from the log.
    pub replayed: usize,
    /// Whether a snapshot was loaded.
    pub from_snapshot: bool,
    /// A torn tail cut off the log: (offset, bytes).
    pub truncated: Option<(u64, u64)>,
}

/// A shard's credit links: numbering of credits sent, marks of credits applied, and the
/// credits sent but not yet known to be durably applied (resent after a restart).
struct Links {
    sent: Vec<u64>,
    applied: Vec<u64>,
    outbox: VecDeque<(u32, u64, fastpay_wire::CrossShardUpdate)>,
    /// Per source shard in another process: its epoch and the last credit applied from it.
    inbound: Vec<(u64, u64)>,
    /// Per destination in another process: the numbers of the credits handed to the link in
    /// this incarnation, in order (the link acknowledges them by position).
    remote_queue: Vec<VecDeque<u64>>,
    /// Per destination in another process: how many of this incarnation's credits it
    /// acknowledged, and the number of the last one.
    remote_acked: Vec<(u64, u64)>,
}

impl Links {
    fn new(n: usize) -> Self {
        Self {
            sent: vec![0; n],
            applied: vec![0; n],
            outbox: VecDeque::new(),
            inbound: vec![(0, 0); n],
            remote_queue: (0..n).map(|_| VecDeque::new()).collect(),
            remote_acked: vec![(0, 0); n],
        }
    }

    fn from_state(n: usize, state: LinkState) -> Self {
        let mut links = Self::new(n);
        for (i, v) in state.sent.into_iter().enumerate().take(n) {
            links.sent[i] = v;
        }
        for (i, v) in state.applied.into_iter().enumerate().take(n) {
            links.applied[i] = v;
        }
        links.outbox = state.outbox.into_iter().collect();
        for (i, v) in state.inbound.into_iter().enumerate().take(n) {
            links.inbound[i] = v;
        }
        links
    }

    fn state(&self) -> LinkState {
        LinkState {
            sent: self.sent.clone(),
            applied: self.applied.clone(),
            outbox: self.outbox.iter().cloned().collect(),
            inbound: self.inbound.clone(),
        }
    }

    /// Numbers a credit for `to` and keeps it until acknowledged.
    fn number(&mut self, to: u32, update: &fastpay_wire::CrossShardUpdate) -> u64 {
        let slot = &mut self.sent[to as usize];
        *slot = slot.saturating_add(1);
        self.outbox.push_back((to, *slot, update.clone()));
        *slot
    }
}

/// One shard's state, store and links after recovery.
struct Recovered {
    state: AuthorityShard,
    store: Option<ShardStore>,
    links: Links,
    report: RecoveryReport,
}

/// A running authority.
pub struct Engine {
    recovery: Vec<RecoveryReport>,
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
    counters: Vec<Arc<ShardCounters>>,
    local_addr: SocketAddr,
}

/// A shard's end of the links to the authority's shards in other processes.
struct LinkContext {
    socket: mio::net::UdpSocket,
    link: Link,
    addresses: Vec<SocketAddr>,
}

struct ShardContext {
    worker: ShardWorker,
    store: Option<ShardStore>,
    links: Links,
    /// `acked[from * n + to]`: the last credit from `from` that `to` has made durable.
    acked: Arc<Vec<AtomicU64>>,
    link: Option<LinkContext>,
    socket: mio::net::UdpSocket,
    poll: Poll,
    /// `outbound[j]`: the queue to shard `j` (none to ourselves).
    outbound: Vec<Option<Sender<Handover>>>,
    inbound: Vec<Receiver<Handover>>,
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
    counters: Arc<ShardCounters>,
    core: Option<core_affinity::CoreId>,
}

impl Engine {
    /// Binds every shard's socket (in shard order, so the BPF program's indexes match),
    /// builds the queues and starts the shard threads.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let key = KeyPair::from_seed(config.key_seed);
        let name = key.authority();
        let num_shards = config
            .committee
            .member(&name)
            .ok_or(ShardSetupError::NotInCommittee(name))?
            .num_shards;

        let local: Vec<u32> = match config.only_shard {
            Some(shard) if shard >= num_shards => {
                return Err(ShardSetupError::ShardOutOfRange {
                    shard: ShardId(shard),
                    num_shards,
                }
                .into());
            }
            Some(shard) => vec![shard],
            None => (0..num_shards).collect(),
        };
        let split = config.only_shard.is_some();

        // SO_REUSEPORT would let us share a port with a stray copy of ourselves; a plain bind
        // first tells us the port is really free. Split shards share the port on purpose, so
        // their exclusive link port plays that role.
        let mut links = Vec::new();
        let listen = if split {
            for &shard in &local {
                let address = *config.link_addresses.get(shard as usize).ok_or(
                    ShardSetupError::ShardOutOfRange {
                        shard: ShardId(shard),
                        num_shards,
                    },
                )?;
                let socket = UdpSocket::bind(address).map_err(|e| match e.kind() {
                    io::ErrorKind::AddrInUse => EngineError::PortBusy(address),
                    _ => EngineError::Io {
                        context: format!("bind the link of shard {shard} to {address}"),
                        source: e,
                    },
                })?;
                socket
                    .set_nonblocking(true)
                    .map_err(io_context("make the link socket nonblocking"))?;
                links.push(socket);
            }
            config.listen
        } else {
            let probe = UdpSocket::bind(config.listen).map_err(|e| match e.kind() {
                io::ErrorKind::AddrInUse => EngineError::PortBusy(config.listen),
                _ => EngineError::Io {
                    context: format!("bind {}", config.listen),
                    source: e,
                },
            })?;
            let listen = probe
                .local_addr()
                .map_err(io_context("read the bound address"))?;
            drop(probe);
            listen
        };

        let mut sockets = Vec::new();
        for &shard in &local {
            let socket = udp::bind_reuseport(listen).map_err(|e| match e.kind() {
                io::ErrorKind::AddrInUse => EngineError::PortBusy(listen),
                _ => EngineError::Io {
                    context: format!("bind shard {shard} to {listen}"),
                    source: e,
                },
            })?;
            sockets.push(socket);
        }
        // Steering indexes sockets in binding order, which only one process controls; shards
        // in separate processes rely on the flow hash and hop over the link instead.
        if config.steering && !split {
            if let Some(first) = sockets.first() {
                udp::attach_shard_steering(first)
                    .map_err(io_context("attach the shard-steering BPF program"))?;
            }
        }

        let available = core_affinity::get_core_ids().unwrap_or_default();
        let cores: Vec<core_affinity::CoreId> = match &config.cores {
            Some(list) => list
                .iter()
                .map(|&c| {
                    available
                        .iter()
                        .find(|id| id.id == c)
                        .copied()
                        .ok_or(EngineError::NoSuchCore(c, available.len()))
                })
                .collect::<Result<_, _>>()?,
            None => available,
        };

        let n = num_shards as usize;
        let is_local = |shard: usize| local.contains(&(shard as u32));
        let mut senders: Vec<Vec<Option<Sender<Handover>>>> = vec![vec![None; n]; n];
        let mut receivers: Vec<Vec<Receiver<Handover>>> = (0..n).map(|_| Vec::new()).collect();
        for (from, row) in senders.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from != to && is_local(from) && is_local(to) {
                    let (tx, rx) = bounded(config.queue_capacity.max(1));
                    *slot = Some(tx);
                    receivers[to].push(rx);
                }
            }
        }
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);

        let mut polls = Vec::new();
        let mut wakers = Vec::new();
        for _ in 0..n {
            // Every shard index gets a waker (so indexes line up); only local ones are used.
            let poll = Poll::new().map_err(io_context("create a poller"))?;
            let waker = Waker::new(poll.registry(), WAKER).map_err(io_context("create a waker"))?;
            polls.push(poll);
            wakers.push(Arc::new(waker));
        }

        let stop = Arc::new(AtomicBool::new(false));
        // Counters of every shard index, so reports name shards by their real number; shards
        // running elsewhere stay at zero.
        let counters: Vec<Arc<ShardCounters>> =
            (0..n).map(|_| Arc::new(ShardCounters::default())).collect();
        let mut threads = Vec::new();
        let mut links = links.into_iter();
        let mut polls: Vec<Option<Poll>> = polls.into_iter().map(Some).collect();
        // Build and recover the shards' states in parallel: each validates its genesis keys
        // and replays its own log.
        let recovered: Vec<Result<Recovered, EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = local
                .iter()
                .map(|&shard| {
                    let config = &config;
                    scope.spawn(move || recover_shard(config, shard, n))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(ShardSetupError::NotInCommittee(name).into()))
                })
                .collect()
        });
        let mut shards_recovered = Vec::new();
        for r in recovered {
            shards_recovered.push(r?);
        }
        // Credits a shard applied before the restart are acknowledged from the start.
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..n * n).map(|_| AtomicU64::new(0)).collect());
        for r in &shards_recovered {
            let to = r.report.shard as usize;
            for (from, applied) in r.links.applied.iter().enumerate() {
                acked[from * n + to].store(*applied, Ordering::SeqCst);
            }
        }
        let mut recovery = Vec::new();
        for ((shard, socket), r) in local
            .iter()
            .map(|s| *s as usize)
            .zip(sockets)
            .zip(shards_recovered)
        {
            let Recovered {
                state,
                store,
                links: shard_links,
                report,
            } = r;
            recovery.push(report);
            let shard_id = ShardId(shard as u32);
            let Some(poll) = polls[shard].take() else {
                continue;
            };
            let mut socket = mio::net::UdpSocket::from_std(socket);
            poll.registry()
                .register(&mut socket, SOCKET, Interest::READABLE)
                .map_err(io_context("register a socket"))?;
            let link = match links.next() {
                Some(link_socket) => {
                    let mut link_socket = mio::net::UdpSocket::from_std(link_socket);
                    poll.registry()
                        .register(&mut link_socket, LINK, Interest::READABLE)
                        .map_err(io_context("register a link socket"))?;
                    Some(LinkContext {
                        socket: link_socket,
                        link: Link::new(
                            shard_id,
                            num_shards,
                            LinkKey::derive(&config.key_seed),
                            epoch,
                        ),
                        addresses: config.link_addresses.clone(),
                    })
                }
                None => None,
            };
            let mut worker = ShardWorker::new(state, num_shards, counters[shard].clone());
            if store.is_some() {
                worker.record_changes();
            }
            let context = ShardContext {
                worker,
                store,
                links: shard_links,
                acked: acked.clone(),
                link,
                socket,
                poll,
                outbound: std::mem::take(&mut senders[shard]),
                inbound: std::mem::take(&mut receivers[shard]),
                wakers: wakers.clone(),
                stop: stop.clone(),
                counters: counters[shard].clone(),
                core: (!cores.is_empty()).then(|| cores[shard % cores.len()]),
            };
            let thread = std::thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || run_shard(context))
                .map_err(io_context("spawn a shard thread"))?;
            threads.push(thread);
        }
        Ok(Engine {
            recovery,
            threads,
            wakers,
            stop,
            counters,
            local_addr: listen,
        })
    }

    /// What each local shard recovered from its data directory.
    pub fn recovery(&self) -> &[RecoveryReport] {
        &self.recovery
    }

    /// The address the shards listen on (the actual port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Each shard's counters.
    pub fn counters(&self) -> &[Arc<ShardCounters>] {
        &self.counters
    }

    /// Stops every shard thread and waits for them; sockets close as the threads end.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Builds shard `shard`'s state: genesis, then its snapshot and log when durable. Replayed
/// records are returned for the worker (which owns the replay logic); confirmations among
/// them also rebuild the outbox here.
fn recover_shard(config: &EngineConfig, shard: u32, n: usize) -> Result<Recovered, EngineError> {
    let mut state = AuthorityShard::new(
        KeyPair::from_seed(config.key_seed),
        config.committee.clone(),
        ShardId(shard),
        &config.genesis,
    )?;
    let mut report = RecoveryReport {
        shard,
        replayed: 0,
        from_snapshot: false,
        truncated: None,
    };
    let Some(dir) = &config.data_dir else {
        return Ok(Recovered {
            state,
            store: None,
            links: Links::new(n),
            report,
        });
    };
    let (mut store, found) = ShardStore::open(&dir.join(format!("shard-{shard}")))?;
    store.snapshot_after(config.snapshot_after_bytes);
    let mut links = Links::new(n);
    if let Some(snapshot) = found.snapshot {
        state.restore(snapshot.shard);
        links = Links::from_state(n, snapshot.links);
        report.from_snapshot = true;
    }
    report.replayed = found.records.len();
    report.truncated = found.truncated;
    // Replay in log order; number the credits that confirmations emit exactly as when they
    // were first applied (log order is link order).
    for record in found.records {
        match record {
            Record::Vote(vote) => {
                state.restore_vote(vote);
            }
            Record::Confirm(order) => {
                if let Ok(confirmed) = state.confirm_verified(&order) {
                    if let Some(update) = confirmed.cross_shard {
                        links.number(update.recipient_shard.0, &update);
                    }
                }
            }
            Record::Credit {
                from,
                sequence,
                link_epoch,
                update,
            } => {
                let _ = state.apply_cross_shard_update(&update);
                let from = from as usize % n;
                if link_epoch == 0 {
                    links.applied[from] = links.applied[from].max(sequence);
                } else if (link_epoch, sequence) > links.inbound[from] {
                    links.inbound[from] = (link_epoch, sequence);
                }
            }
        }
    }
    Ok(Recovered {
        state,
        store: Some(store),
        links,
        report,
    })
}

/// Makes the batch's records durable (one write, one fsync) and then publishes which credits
/// this shard has applied, so their senders can forget them. Returns `false` if the disk
/// failed: the shard must stop rather than answer with state it could lose.
fn persist(ctx: &mut ShardContext, me: usize, n: usize) -> bool {
    let Some(store) = ctx.store.as_mut() else {
        // In memory only: applied is as good as it gets, so senders may forget at once.
        publish_applied(ctx, me, n);
        return true;
    };
    for record in ctx.worker.take_records() {
        store.append(&record);
    }
    if store.has_pending() {
        if let Err(e) = store.commit() {
            eprintln!("shard {me}: cannot persist its log, stopping: {e}");
            return false;
        }
        ctx.counters.bump(Counter::Fsyncs);
    }
    publish_applied(ctx, me, n);
    if let Some(store) = ctx.store.as_ref() {
        ctx.counters.set(Counter::DiskBytes, store.disk_bytes());
    }
    true
}

/// Takes a snapshot if the log asks for one. Called once a batch's credits have been numbered
/// and handed on, never between its commit and that: a snapshot taken there would hold the
/// batch's debits but not the credits they owe, and the log that would have rebuilt those
/// credits is the one the snapshot replaces. Returns `false` if the disk failed.
fn snapshot_if_due(ctx: &mut ShardContext, me: usize) -> bool {
    let Some(store) = ctx.store.as_mut() else {
        return true;
    };
    // Snapshots are written by a background thread from a copy of the state; the shard only
    // pays for the copy and goes on logging into the next log generation meanwhile.
    match store.poll_snapshot() {
        Ok(true) => eprintln!(
            "shard {me}: snapshot written ({} bytes on disk)",
            store.disk_bytes()
        ),
        Ok(false) => {}
        Err(e) => {
            eprintln!("shard {me}: cannot write its snapshot, stopping: {e}");
            return false;
        }
    }
    if store.wants_snapshot() {
        let started = Instant::now();
        let snapshot = Snapshot {
            shard: ctx.worker.shard().snapshot_unsorted(),
            links: ctx.links.state(),
        };
        let copied = started.elapsed();
        if let Err(e) = store.begin_snapshot(snapshot) {
            eprintln!("shard {me}: cannot start its snapshot, stopping: {e}");
            return false;
        }
        eprintln!(
            "shard {me}: snapshot started (state copied in {:.1} ms, written in the background)",
            copied.as_secs_f64() * 1e3
        );
    }
    true
}

/// Tells every sender which of its credits this shard has applied (and made durable).
fn publish_applied(ctx: &ShardContext, me: usize, n: usize) {
    for (from, applied) in ctx.links.applied.iter().enumerate() {
        ctx.acked[from * n + me].store(*applied, Ordering::Release);
    }
}

fn run_shard(mut ctx: ShardContext) {
    if let Some(core) = ctx.core {
        core_affinity::set_for_current(core);
    }
    let me = ctx.worker.shard().shard().0 as usize;
    let fd = ctx.socket.as_raw_fd();
    let link_fd = ctx.link.as_ref().map(|l| l.socket.as_raw_fd());
    let mut events = Events::with_capacity(8);
    let mut inputs = Datagrams::new();
    let mut receiver = udp::Receiver::new(&ctx.socket);
    let mut link_inputs = Datagrams::new();
    let mut link_outputs = Datagrams::new();
    let mut outputs = Outputs::default();
    let mut handed: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(BATCH);
    let shards = ctx.outbound.len();
    let mut backlog: Vec<VecDeque<Handover>> = (0..shards).map(|_| VecDeque::new()).collect();
    let mut backlogged = 0usize;
    let mut to_wake = vec![false; shards];
    let mut busy = true;

    // After a restart: resend, in order, every credit not known to be applied.
    let resend: Vec<(u32, u64, fastpay_wire::CrossShardUpdate)> = ctx
        .links
        .outbox
        .iter()
        .filter(|(to, seq, _)| {
            ctx.outbound
                .get(*to as usize)
                .and_then(Option::as_ref)
                .is_none()
                || *seq > ctx.acked[me * shards + *to as usize].load(Ordering::Acquire)
        })
        .cloned()
        .collect();
    for (to, sequence, update) in resend {
        let remote = ctx
            .outbound
            .get(to as usize)
            .and_then(Option::as_ref)
            .is_none();
        if let (true, Some(lc)) = (remote, ctx.link.as_mut()) {
            // A shard in another process: through the link, in order, in this new epoch.
            ctx.links.remote_queue[to as usize].push_back(sequence);
            lc.link.queue_credit(ShardId(to), update);
            continue;
        }
        let credit = Handover::Credit {
            from: me as u32,
            sequence,
            update,
        };
        park(
            &mut backlog[to as usize],
            &mut backlogged,
            credit,
            &ctx.counters,
        );
    }
    // Credits from other processes applied before a restart are not expected again.
    if let Some(lc) = ctx.link.as_mut() {
        for (from, (epoch, applied)) in ctx.links.inbound.iter().enumerate() {
            if *epoch != 0 {
                lc.link
                    .restore_inbound(ShardId(from as u32), *epoch, *applied);
            }
        }
    }

    while !ctx.stop.load(Ordering::Relaxed) {
        let mut timeout = if busy { Duration::ZERO } else { IDLE_POLL };
        if let Some(deadline) = ctx.link.as_ref().and_then(|l| l.link.next_deadline()) {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        if let Err(e) = ctx.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("shard poll failed: {e}");
                return;
            }
        }
        busy = false;
        for round in 0..IO_LOOP_BOUND {
            // Queued handovers first: credits apply at once; datagrams join this batch.
            handed.clear();
            let mut queues_left = false;
            for rx in &ctx.inbound {
                while handed.len() < BATCH / 2 {
                    match rx.try_recv() {
                        Ok(Handover::Credit {
                            from,
                            sequence,
                            update,
                        }) => {
                            let mark = &mut ctx.links.applied[from as usize];
                            if sequence <= *mark {
                                // Resent after a restart, and applied before it.
                                ctx.counters.bump(Counter::DuplicateCredit);
                                continue;
                            }
                            *mark = sequence;
                            ctx.worker.apply_credit(from, sequence, update);
                        }
                        Ok(Handover::Datagram { peer, bytes }) => handed.push((peer, bytes)),
                        Err(_) => break,
                    }
                }
                queues_left |= !rx.is_empty();
            }
            // Then the link from shards in other processes.
            if let (Some(lc), Some(link_fd)) = (ctx.link.as_mut(), link_fd) {
                link_inputs.clear();
                let room = BATCH / 2 - handed.len().min(BATCH / 2);
                if let Err(e) = udp::recv_batch(link_fd, &mut link_inputs, room.max(1)) {
                    eprintln!("shard link receive failed: {e}");
                }
                queues_left |= link_inputs.is_full();
                for i in 0..link_inputs.len() {
                    let (_, bytes, _) = link_inputs.get(i);
                    match lc.link.receive(bytes) {
                        Ok(Delivery::Credit(update, epoch, sequence)) => {
                            let from = update.certificate.value.transfer.sender;
                            let from = ctx.worker.shard().shard_of(&from).0 as usize;
                            ctx.links.inbound[from] = (epoch, sequence);
                            ctx.worker.apply_link_credit(&update, epoch, sequence);
                        }
                        Ok(Delivery::Forward(peer, datagram)) => handed.push((peer, datagram)),
                        Ok(Delivery::Nothing) => {}
                        Err(_) => ctx.counters.bump(Counter::LinkRefused),
                    }
                }
            }

            inputs.clear();
            let parked = backlogged
                + ctx.links.outbox.len()
                + ctx.link.as_ref().map_or(0, |l| l.link.unacked());
            // Backpressure: while credits are parked, leave new requests in the kernel.
            if parked < BACKLOG_LIMIT {
                let room = BATCH - handed.len();
                match receiver.recv(fd, &mut inputs, room) {
                    Ok(n) => ctx.counters.add(Counter::Received, n as u64),
                    Err(e) => eprintln!("shard receive failed: {e}"),
                }
            }
            if inputs.is_empty() && handed.is_empty() && !queues_left {
                // Nothing to answer, but credits applied above must still be made durable.
                if !persist(&mut ctx, me, shards) || !snapshot_if_due(&mut ctx, me) {
                    ctx.stop.store(true, Ordering::SeqCst);
                    return;
                }
                break;
            }

            ctx.worker.process(&inputs, &handed, &mut outputs);
            // Durable before any reply or credit of this batch leaves.
            if !persist(&mut ctx, me, shards) {
                ctx.stop.store(true, Ordering::SeqCst);
                return;
            }
            let dropped = udp::send_batch(fd, &mut outputs.replies);
            ctx.counters.add(Counter::SendDropped, dropped as u64);

            for (destination, handover) in outputs.handovers.drain(..) {
                let d = destination.0 as usize;
                let Some(tx) = ctx.outbound.get(d).and_then(Option::as_ref) else {
                    // Not in this process: over the link.
                    if let Some(lc) = ctx.link.as_mut() {
                        match handover {
                            Handover::Credit { update, .. } => {
                                ctx.counters.bump(Counter::LinkCredits);
                                let number = ctx.links.number(destination.0, &update);
                                ctx.links.remote_queue[d].push_back(number);
                                lc.link.queue_credit(destination, update);
                            }
                            Handover::Datagram { peer, bytes } => {
                                match lc.link.forward(destination, peer, &bytes) {
                                    Some(frame) => {
                                        queue_frame(lc, &mut link_outputs, d, &frame, &ctx.counters)
                                    }
                                    None => ctx.counters.bump(Counter::HandoverDropped),
                                }
                            }
                        }
                    }
                    continue;
                };
                let handover = match handover {
                    Handover::Credit { update, .. } => {
                        let sequence = ctx.links.number(destination.0, &update);
                        Handover::Credit {
                            from: me as u32,
                            sequence,
                            update,
                        }
                    }
                    datagram => datagram,
                };
                if !backlog[d].is_empty() {
                    park(&mut backlog[d], &mut backlogged, handover, &ctx.counters);
                    continue;
                }
                match tx.try_send(handover) {
                    Ok(()) => to_wake[d] = true,
                    Err(TrySendError::Full(handover)) => {
                        park(&mut backlog[d], &mut backlogged, handover, &ctx.counters)
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
            // Every credit of the batch is numbered (in the outbox): a snapshot may follow.
            if !snapshot_if_due(&mut ctx, me) {
                ctx.stop.store(true, Ordering::SeqCst);
                return;
            }
            if round + 1 == IO_LOOP_BOUND {
                busy = true;
            }
        }
        // Datagrams read in a coalesced message and not yet processed: the socket will not
        // signal them again.
        busy |= receiver.has_staged();

        // Link: new and timed-out credits, and acknowledgements.
        if let Some(lc) = ctx.link.as_mut() {
            for (to, frame) in lc.link.transmit(Instant::now()) {
                queue_frame(lc, &mut link_outputs, to.0 as usize, &frame, &ctx.counters);
            }
            let dropped = udp::send_batch(lc.socket.as_raw_fd(), &mut link_outputs);
            ctx.counters.add(Counter::SendDropped, dropped as u64);
        }

        // Forget credits their recipients have made durable: in process through the shared
        // marks, in other processes through the link's acknowledgements.
        if let Some(lc) = ctx.link.as_ref() {
            for (d, queue) in ctx.links.remote_queue.iter_mut().enumerate() {
                let (count, mark) = &mut ctx.links.remote_acked[d];
                while *count < lc.link.acked(ShardId(d as u32)) {
                    let Some(number) = queue.pop_front() else {
                        break;
                    };
                    *count += 1;
                    *mark = number;
                }
            }
        }
        while let Some((to, sequence, _)) = ctx.links.outbox.front() {
            let to = *to as usize;
            let acked = match ctx.outbound.get(to).and_then(Option::as_ref) {
                Some(_) => ctx.acked[me * shards + to].load(Ordering::Acquire),
                None => ctx.links.remote_acked[to].1,
            };
            if *sequence <= acked {
                ctx.links.outbox.pop_front();
            } else {
                break;
            }
        }
        ctx.counters
            .set(Counter::Outbox, ctx.links.outbox.len() as u64);
        if !ctx.links.outbox.is_empty() {
            // Keep looking until the acknowledgements arrive.
            busy = busy || ctx.links.outbox.len() > QUEUE_CAPACITY;
        }

        // Retry parked credits, oldest first, so each link stays FIFO.
        for (d, queue) in backlog.iter_mut().enumerate() {
            let Some(Some(tx)) = ctx.outbound.get(d) else {
                continue;
            };
            while let Some(handover) = queue.pop_front() {
                match tx.try_send(handover) {
                    Ok(()) => {
                        backlogged = backlogged.saturating_sub(1);
                        to_wake[d] = true;
                    }
                    Err(TrySendError::Full(handover)) => {
                        queue.push_front(handover);
                        busy = true;
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
        }
        for (d, wake) in to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                let _ = ctx.wakers[d].wake();
            }
        }
    }
    // Whatever was applied since the last commit is made durable before the shard ends.
    let _ = persist(&mut ctx, me, shards);
    if let Some(cpu) = thread_cpu_time() {
        ctx.counters.set(
            Counter::CpuMillis,
            cpu.as_millis().try_into().unwrap_or(u64::MAX),
        );
    }
}

/// CPU time the calling thread has used (the scheduler's own account in
/// `/proc/thread-self/schedstat`, nanoseconds), if the kernel reports it.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Adds a link frame for shard `to` to the outgoing batch, flushing the batch when full.
fn queue_frame(
    lc: &LinkContext,
    out: &mut Datagrams,
    to: usize,
    frame: &[u8],
    counters: &ShardCounters,
) {
    let Some(address) = lc.addresses.get(to) else {
        return;
    };
    if out.is_full() {
        let dropped = udp::send_batch(lc.socket.as_raw_fd(), out);
        counters.add(Counter::SendDropped, dropped as u64);
    }
    out.push(*address, frame);
}

/// Parks a handover that did not fit its queue: credits are kept (they carry money), misrouted
/// datagrams are dropped (UDP promises nothing; the client retries).
fn park(
    queue: &mut VecDeque<Handover>,
    backlogged: &mut usize,
    handover: Handover,
    counters: &ShardCounters,
) {
    match handover {
        Handover::Credit { .. } => {
            counters.bump(Counter::Backlog);
            queue.push_back(handover);
            *backlogged = backlogged.saturating_add(1);
        }
        Handover::Datagram { .. } => counters.bump(Counter::HandoverDropped),
    }
}
