//! The authority runtime: one pinned thread per shard, each owning one `SO_REUSEPORT` socket on
//! the authority's port, polled with mio; bounded crossbeam queues between every pair of shards
//! of the process carry the frames of the credit links (and datagrams that reached the wrong
//! shard), and a link socket per shard carries them to shards in other processes.
//!
//! This module sets an authority up (binds, recovers each shard from its data directory,
//! builds the queues, spawns the threads); [`crate::shard_loop`] is the loop each thread runs.
//! Neither decides anything: the decisions are the [`ShardNode`]'s.

use crate::counters::ShardCounters;
use crate::deposits::DepositInlet;
use crate::link::LinkKey;
use crate::log_writer::{LogWriter, ShardDisk, count_certificates};
use crate::metrics::{ShardMetrics, ShardSource};
use crate::network_record::{self, NetworkRecordError};
use crate::shard_loop::{Peers, ShardLoop};
use crate::store::StoreError;
use crossbeam_channel::{Receiver, Sender, bounded};
use fastpay_authority::{AuthorityShard, Genesis, ShardSetupError};
use fastpay_node::{LogBatch, NodeConfig, RedeemApprover, ShardNode, Transport};
use fastpay_udp as udp;
use fastpay_wire::{Committee, KeyPair, LinkFrame, ShardId};
use mio::{Interest, Poll, Token, Waker};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Frames a queue between two shards holds. Deep enough to absorb a burst of cross-shard
/// confirmations from a full batch of every peer; past it, frames wait in the sender's
/// backlog.
pub const QUEUE_CAPACITY: usize = 4096;

pub(crate) const SOCKET: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
pub(crate) const LINK: Token = Token(2);

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
    /// A shard's data is another network's, or it voted in this one and its data is gone.
    #[error(transparent)]
    Network(#[from] NetworkRecordError),
    /// Another process runs this shard already (the in-memory lock is taken).
    #[error(
        "shard {shard} of authority {authority} is already running in another process \
         ({holder}; its lock {lock:?} is taken); refusing to start a second copy, which could \
         sign two conflicting votes"
    )]
    ShardRunning {
        /// The shard.
        shard: u32,
        /// The authority.
        authority: fastpay_wire::AuthorityName,
        /// The abstract socket name used as the lock.
        lock: String,
        /// Who holds it, as far as `/proc` says.
        holder: String,
    },
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let context = context.into();
    move |source| EngineError::Io { context, source }
}

/// Makes each shard's [`RedeemApprover`] (when the authority approves redeems on the primary
/// chain).
pub type ApproverFactory = Arc<dyn Fn() -> Box<dyn RedeemApprover> + Send + Sync>;

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
    /// The authority's voting record ([`crate::network_record`]): with a data directory, a
    /// shard whose data is gone refuses to start in a network this record says it voted in.
    /// `None` skips that check (the data's own network is still checked).
    pub voting_record: Option<PathBuf>,
    /// Log bytes after which a shard snapshots ([`crate::store::SNAPSHOT_AFTER_BYTES`]).
    pub snapshot_after_bytes: u64,
    /// Requests that waited longer than this in the kernel are shed
    /// ([`fastpay_node::NodeConfig::shed_after`]); `None` never sheds.
    pub shed_after: Option<Duration>,
    /// Each shard's redeem approver; `None` refuses redeem requests.
    pub redeem_approver: Option<ApproverFactory>,
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

/// A running authority.
pub struct Engine {
    recovery: Vec<RecoveryReport>,
    /// The in-memory shards' locks, held while the engine runs.
    _locks: Vec<UnixListener>,
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
    counters: Vec<Arc<ShardCounters>>,
    metrics: Vec<Arc<ShardMetrics>>,
    local: Vec<u32>,
    local_addr: SocketAddr,
    /// Each local shard's way in for deposits, until a follower takes them.
    deposit_inlets: Vec<DepositInlet>,
}

/// The queues between the shards of this process: `senders[from][to]`, and each shard's
/// receiving ends.
struct Queues {
    senders: Vec<Vec<Option<Sender<LinkFrame>>>>,
    receivers: Vec<Vec<Receiver<LinkFrame>>>,
}

impl Engine {
    /// Locks and recovers every local shard, binds each one's socket (in shard order, so the
    /// BPF program's indexes match), builds the queues and starts the shard threads.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let key = KeyPair::from_seed(config.key_seed);
        let name = key.authority();
        let num_shards = config
            .committee
            .member(&name)
            .ok_or(ShardSetupError::NotInCommittee(name))?
            .num_shards;
        let local = local_shards(&config, num_shards)?;
        let cores = resolve_cores(config.cores.as_deref())?;
        let n = num_shards as usize;
        // Shards of this process are reached over queues, the others over the link.
        let transports: Vec<Transport> = (0..n)
            .map(|j| match local.contains(&(j as u32)) {
                true => Transport::Reliable,
                false => Transport::Lossy,
            })
            .collect();
        let Queues {
            mut senders,
            mut receivers,
        } = build_queues(n, &local, config.queue_capacity);
        // Counters of every shard index, so reports name shards by their real number; shards
        // running elsewhere stay at zero.
        let counters: Vec<Arc<ShardCounters>> =
            (0..n).map(|_| Arc::new(ShardCounters::default())).collect();
        let metrics: Vec<Arc<ShardMetrics>> =
            (0..n).map(|_| Arc::new(ShardMetrics::default())).collect();
        // Durable shards are locked by their data directory; in-memory ones by a name.
        let locks = match config.data_dir {
            Some(_) => Vec::new(),
            None => lock_in_memory(name, &local)?,
        };
        let recovered = recover_shards(&config, &local, &transports, &counters)?;
        // Sockets only once every shard is locked and recovered: a second copy of a shard
        // stops at its lock before it can share the port.
        let split = config.only_shard.is_some();
        let (listen, link_sockets) = if split {
            (config.listen, bind_links(&config, &local, num_shards)?)
        } else {
            (probe_listen(config.listen)?, Vec::new())
        };
        let sockets = bind_shard_sockets(listen, &local)?;
        // Steering indexes sockets in binding order, which only one process controls; shards
        // in separate processes rely on the flow hash and hop over the link instead.
        if config.steering
            && !split
            && let Some(first) = sockets.first()
        {
            udp::attach_shard_steering(first)
                .map_err(io_context("attach the shard-steering BPF program"))?;
        }

        let (mut polls, wakers) = pollers(n)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut engine = Engine {
            _locks: locks,
            recovery: Vec::new(),
            threads: Vec::new(),
            wakers: wakers.clone(),
            stop: stop.clone(),
            counters: counters.clone(),
            metrics: metrics.clone(),
            local: local.clone(),
            local_addr: listen,
            deposit_inlets: Vec::new(),
        };
        let mut link_sockets = link_sockets.into_iter();
        let link_key = LinkKey::derive(&config.key_seed, &config.committee.id());
        for ((shard, socket), (node, disk, report)) in local
            .iter()
            .map(|s| *s as usize)
            .zip(sockets)
            .zip(recovered)
        {
            engine.recovery.push(report);
            let Some(poll) = polls[shard].take() else {
                continue;
            };
            let (inlet, deposits) = DepositInlet::new(
                shard as u32,
                node.shard().deposit_cursor(),
                counters[shard].clone(),
                wakers[shard].clone(),
            );
            engine.deposit_inlets.push(inlet);
            let (socket, link) = register(&poll, socket, link_sockets.next(), link_key.clone())?;
            let peers = Peers::new(
                std::mem::take(&mut senders[shard]),
                std::mem::take(&mut receivers[shard]),
                wakers.clone(),
                link,
                config.link_addresses.clone(),
            );
            let source = ShardSource {
                shard: shard as u32,
                counters: counters[shard].clone(),
                metrics: metrics[shard].clone(),
            };
            let writer = disk
                .map(|disk| {
                    // The writer sends the replies it made durable from the shard's socket.
                    let socket = socket.as_fd().try_clone_to_owned()?;
                    LogWriter::spawn(disk, socket, wakers[shard].clone(), &source)
                })
                .transpose()
                .map_err(io_context("spawn a log writer"))?;
            let shard_loop =
                ShardLoop::new(node, writer, socket, poll, peers, stop.clone(), source)
                    .with_deposits(deposits);
            let core = (!cores.is_empty()).then(|| cores[shard % cores.len()]);
            let thread = spawn(shard, shard_loop, core)?;
            engine.threads.push(thread);
        }
        Ok(engine)
    }

    /// Each local shard's way in for deposits from the primary chain, for the follower that
    /// feeds them (empty after the first call).
    pub fn take_deposit_inlets(&mut self) -> Vec<DepositInlet> {
        std::mem::take(&mut self.deposit_inlets)
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

    /// The shards of this process with their counters and published metrics, for the
    /// metrics endpoint.
    pub fn metric_sources(&self) -> Vec<ShardSource> {
        self.local
            .iter()
            .map(|&shard| ShardSource {
                shard,
                counters: self.counters[shard as usize].clone(),
                metrics: self.metrics[shard as usize].clone(),
            })
            .collect()
    }

    /// Stops every shard thread and waits for them; sockets close as the threads end.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    /// An engine that failed half-way through `start` (or is dropped) stops what it started.
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Each shard index's poller (taken by its thread) and the wakers of all of them.
type Pollers = (Vec<Option<Poll>>, Vec<Arc<Waker>>);

/// A poller and a waker for every shard index (so indexes line up); only local ones are
/// used.
fn pollers(n: usize) -> Result<Pollers, EngineError> {
    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    for _ in 0..n {
        let poll = Poll::new().map_err(io_context("create a poller"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(io_context("create a waker"))?;
        polls.push(Some(poll));
        wakers.push(Arc::new(waker));
    }
    Ok((polls, wakers))
}

/// Registers a shard's socket, and its link socket (split mode), with its poller.
fn register(
    poll: &Poll,
    socket: UdpSocket,
    link: Option<UdpSocket>,
    link_key: LinkKey,
) -> Result<(mio::net::UdpSocket, Option<(mio::net::UdpSocket, LinkKey)>), EngineError> {
    let mut socket = mio::net::UdpSocket::from_std(socket);
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)
        .map_err(io_context("register a socket"))?;
    let Some(link) = link else {
        return Ok((socket, None));
    };
    let mut link = mio::net::UdpSocket::from_std(link);
    poll.registry()
        .register(&mut link, LINK, Interest::READABLE)
        .map_err(io_context("register a link socket"))?;
    Ok((socket, Some((link, link_key))))
}

/// Starts shard `shard`'s thread, pinned to `core`.
fn spawn(
    shard: usize,
    shard_loop: ShardLoop,
    core: Option<core_affinity::CoreId>,
) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(format!("shard-{shard}"))
        .spawn(move || {
            // Every event of this thread names its shard.
            let _span = tracing::info_span!("shard", shard).entered();
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            shard_loop.run();
        })
        .map_err(io_context("spawn a shard thread"))
}

/// Takes, for each local shard, an abstract Unix socket named after the authority and the
/// shard: the in-memory equivalent of a data directory's lock, released by the kernel when the
/// process ends however it ends.
fn lock_in_memory(
    authority: fastpay_wire::AuthorityName,
    local: &[u32],
) -> Result<Vec<UnixListener>, EngineError> {
    local
        .iter()
        .map(|&shard| {
            let lock = format!("fastpay/{authority}/shard-{shard}");
            let address = std::os::unix::net::SocketAddr::from_abstract_name(lock.as_bytes())
                .map_err(io_context("name the shard lock"))?;
            UnixListener::bind_addr(&address).map_err(|e| match e.kind() {
                io::ErrorKind::AddrInUse => EngineError::ShardRunning {
                    shard,
                    authority,
                    holder: abstract_socket_holder(&lock)
                        .map_or_else(|| "process unknown".to_string(), |pid| format!("pid {pid}")),
                    lock,
                },
                _ => io_context("take the shard lock")(e),
            })
        })
        .collect()
}

/// The process holding the abstract Unix socket `name`, found through `/proc`: the socket's
/// inode in `/proc/net/unix`, then the process with a descriptor on it. `None` when `/proc`
/// does not say (another network namespace, or no permission to read a process's
/// descriptors).
fn abstract_socket_holder(name: &str) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let path = format!("@{name}");
    let inode = table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() >= 8 && fields[7] == path).then(|| fields[6].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|link| link.as_os_str() == target.as_str())
                })
                .then_some(pid)
        })
}

/// The shards this process runs.
fn local_shards(config: &EngineConfig, num_shards: u32) -> Result<Vec<u32>, EngineError> {
    match config.only_shard {
        Some(shard) if shard >= num_shards => Err(ShardSetupError::ShardOutOfRange {
            shard: ShardId(shard),
            num_shards,
        }
        .into()),
        Some(shard) => Ok(vec![shard]),
        None => Ok((0..num_shards).collect()),
    }
}

/// Binds the link socket of each local shard (split mode). The link port is exclusive, so a
/// second copy of the shard fails here rather than sharing the public port.
fn bind_links(
    config: &EngineConfig,
    local: &[u32],
    num_shards: u32,
) -> Result<Vec<UdpSocket>, EngineError> {
    let mut links = Vec::new();
    for &shard in local {
        let address =
            *config
                .link_addresses
                .get(shard as usize)
                .ok_or(ShardSetupError::ShardOutOfRange {
                    shard: ShardId(shard),
                    num_shards,
                })?;
        let socket = udp::bind_exclusive(address).map_err(bind_error(
            address,
            format!("bind the link of shard {shard} to {address}"),
        ))?;
        links.push(socket);
    }
    Ok(links)
}

/// The error of a failed bind to `address`: the port taken by another process, or `context`.
fn bind_error(address: SocketAddr, context: String) -> impl FnOnce(io::Error) -> EngineError {
    move |e| match e.kind() {
        io::ErrorKind::AddrInUse => EngineError::PortBusy(address),
        _ => EngineError::Io { context, source: e },
    }
}

/// SO_REUSEPORT would let us share a port with a stray copy of ourselves; a plain bind first
/// tells us the port is really free. Returns the address actually bound (port 0 resolved).
fn probe_listen(listen: SocketAddr) -> Result<SocketAddr, EngineError> {
    let probe = UdpSocket::bind(listen).map_err(bind_error(listen, format!("bind {listen}")))?;
    probe
        .local_addr()
        .map_err(io_context("read the bound address"))
}

/// One `SO_REUSEPORT` socket per local shard, in shard order.
fn bind_shard_sockets(listen: SocketAddr, local: &[u32]) -> Result<Vec<UdpSocket>, EngineError> {
    local
        .iter()
        .map(|shard| {
            udp::bind_reuseport(listen).map_err(bind_error(
                listen,
                format!("bind shard {shard} to {listen}"),
            ))
        })
        .collect()
}

/// The cores to pin to: the configured ones (each must exist), or every core.
fn resolve_cores(wanted: Option<&[usize]>) -> Result<Vec<core_affinity::CoreId>, EngineError> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    let Some(list) = wanted else {
        return Ok(available);
    };
    list.iter()
        .map(|&c| {
            available
                .iter()
                .find(|id| id.id == c)
                .copied()
                .ok_or(EngineError::NoSuchCore(c, available.len()))
        })
        .collect()
}

/// A bounded queue between every ordered pair of local shards.
fn build_queues(n: usize, local: &[u32], capacity: usize) -> Queues {
    let is_local = |shard: usize| local.contains(&(shard as u32));
    let mut senders: Vec<Vec<Option<Sender<LinkFrame>>>> = vec![vec![None; n]; n];
    let mut receivers: Vec<Vec<Receiver<LinkFrame>>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to && is_local(from) && is_local(to) {
                let (tx, rx) = bounded(capacity.max(1));
                *slot = Some(tx);
                receivers[to].push(rx);
            }
        }
    }
    Queues { senders, receivers }
}

type RecoveredShard = (ShardNode, Option<ShardDisk>, RecoveryReport);

/// Recovers every local shard in parallel: each validates its genesis keys and replays its
/// own log.
fn recover_shards(
    config: &EngineConfig,
    local: &[u32],
    transports: &[Transport],
    counters: &[Arc<ShardCounters>],
) -> Result<Vec<RecoveredShard>, EngineError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = local
            .iter()
            .map(|&shard| {
                let counters = counters[shard as usize].clone();
                scope.spawn(move || recover_shard(config, shard, transports.to_vec(), counters))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EngineError::Io {
                        context: "recover a shard".into(),
                        source: io::Error::other("the recovery thread panicked"),
                    })
                })
            })
            .collect()
    })
}

/// Builds shard `shard`: genesis, then its snapshot and log fed back through its node.
fn recover_shard(
    config: &EngineConfig,
    shard: u32,
    transports: Vec<Transport>,
    counters: Arc<ShardCounters>,
) -> Result<RecoveredShard, EngineError> {
    let state = AuthorityShard::new(
        KeyPair::from_seed(config.key_seed),
        config.committee.clone(),
        ShardId(shard),
        &config.genesis,
    )?;
    let node_config = NodeConfig {
        transports,
        // Records and certificates are kept in the data directory; without one, nothing is
        // logged and queries for certificates are answered "pruned".
        durable: config.data_dir.is_some(),
        snapshot_after_bytes: config.snapshot_after_bytes,
        shed_after: config.shed_after,
    };
    let mut report = RecoveryReport {
        shard,
        replayed: 0,
        from_snapshot: false,
        truncated: None,
    };
    let Some(dir) = &config.data_dir else {
        let mut node = ShardNode::new(state, node_config, counters);
        if let Some(make) = &config.redeem_approver {
            node.set_redeem_approver(make());
        }
        return Ok((node, None, report));
    };
    let shard_dir = crate::store::shard_dir(dir, shard);
    network_record::claim(
        &shard_dir,
        shard,
        config.committee.id(),
        config.voting_record.as_deref(),
    )?;
    let (disk, found) = ShardDisk::open(&shard_dir, shard)?;
    report.replayed = found.records.len();
    report.from_snapshot = found.snapshot.is_some();
    report.truncated = found.truncated;
    let mut node = ShardNode::recover(
        state,
        node_config,
        counters.clone(),
        found.snapshot,
        found.records,
    );
    node.count_recovered_log(disk.log.log_bytes());
    // The replayed records' certificates (no records: those are durable already): the store
    // may have lost its unsynced latest ones.
    let mut replayed = LogBatch::default();
    node.take_log(&mut replayed);
    disk.certificates
        .store_durable(replayed.certificates)
        .map_err(StoreError::from)?;
    count_certificates(&disk.certificates, &counters);
    node.set_certificate_reader(Box::new(disk.certificates.reader()));
    if let Some(make) = &config.redeem_approver {
        node.set_redeem_approver(make());
    }
    Ok((node, Some(disk), report))
}
