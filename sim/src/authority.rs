//! The authorities: honest ones made of real shard nodes on simulated disks, moved through
//! batches, syncs, snapshots, crashes and restarts; and the Byzantine one.

use crate::World;
use crate::contract::SimApprover;
use crate::disk::{CrashFault, SimDisk};
use crate::network::{Event, Node};
use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_node::counters::ShardCounters;
use fastpay_node::{
    AppliedCertificate, LogBatch, MemoryCertificates, NodeConfig, ShardNode, Transport,
};
use fastpay_wire::{
    AccountInfoResponse, AuthorityName, BATCH, Balance, Committee, Datagrams, KeyPair, LinkFrame,
    Message, RedeemApproval, SequenceNumber, ShardId, Signature, VoteReply, VoteSignature, decode,
    sign_vote,
};
use rand::RngExt;
use std::collections::VecDeque;
use std::sync::Arc;

/// Delay of an in-process hop between shards, in virtual microseconds.
const CROSS_SHARD_US: u64 = 50;
/// Longest a log write waits for its sync, in virtual microseconds.
const MAX_SYNC_US: u64 = 2_000;
/// Longest a background snapshot takes to land, in virtual microseconds.
const MAX_SNAPSHOT_US: u64 = 10_000;
/// Most accounts of a snapshot a shard encodes between two events (few: a snapshot takes
/// many slices, and the accounts change between them).
const MAX_SNAPSHOT_SLICE: usize = 4;
/// Virtual microseconds between two slices of a snapshot when nothing else happens.
const SNAPSHOT_SLICE_US: u64 = 100;
/// Longest a crashed process stays down, in virtual microseconds.
const MAX_DOWNTIME_US: u64 = 20_000;

/// One shard process (or thread) of an honest authority.
pub(crate) struct ShardHost {
    /// The running node; `None` while crashed.
    pub(crate) node: Option<ShardNode>,
    disk: SimDisk,
    inbox: VecDeque<(Node, Vec<u8>)>,
    /// Bumped by every crash: events scheduled for an earlier incarnation are void.
    pub(crate) incarnation: u64,
    wake_scheduled: bool,
    timer_at: Option<u64>,
    /// The node's records (and their certificates) of the current effects.
    log: LogBatch,
    frames: Vec<LinkFrame>,
    batch: Datagrams,
    /// The shard's certificate store, on its disk: it survives crashes.
    pub(crate) certificates: MemoryCertificates,
    /// Certificates applied by log writes not yet synced, with the position each reaches:
    /// stored once it is durable, as the engine's log writer does, lost in a crash.
    unsynced: Vec<(u64, Vec<AppliedCertificate>)>,
    /// Where this incarnation's deposit follower has brought the node (from the node's
    /// recovered cursor at each restart, as the engine's follower starts).
    pub(crate) follower: fastpay_wire::DepositCursor,
}

/// Stores the certificates of the log writes now durable up to `position`.
fn store_durable(
    unsynced: &mut Vec<(u64, Vec<AppliedCertificate>)>,
    certificates: &MemoryCertificates,
    position: u64,
) {
    let durable = unsynced.partition_point(|(p, _)| *p <= position);
    for (_, applied) in unsynced.drain(..durable) {
        certificates.store(&applied);
    }
}

impl ShardHost {
    /// Whether an event for `incarnation` (any, when `None`) finds this shard running it.
    fn runs(&self, incarnation: Option<u64>) -> bool {
        self.node.is_some() && incarnation.is_none_or(|i| i == self.incarnation)
    }
}

/// An authority of the simulated committee.
pub(crate) struct AuthorityNode {
    pub(crate) name: AuthorityName,
    /// Its key (deriving it from the seed costs a scalar multiplication: kept, not rederived
    /// for each message the Byzantine authority signs).
    key: Arc<KeyPair>,
    /// The Byzantine authority's plain shard states (it runs no nodes).
    byzantine: Option<Vec<AuthorityShard>>,
    /// The honest authority's shards.
    pub(crate) shards: Vec<ShardHost>,
}

impl AuthorityNode {
    pub(crate) fn new(
        key: KeyPair,
        byzantine: bool,
        committee: &Arc<Committee>,
        genesis: &Genesis,
        config: &crate::SimConfig,
    ) -> Self {
        let state = |s: u32| {
            AuthorityShard::new(
                KeyPair::from_seed(key.seed()),
                committee.clone(),
                ShardId(s),
                genesis,
            )
            .unwrap_or_else(|e| panic!("simulated shard: {e}"))
        };
        let mut node = Self {
            name: key.authority(),
            key: Arc::new(KeyPair::from_seed(key.seed())),
            byzantine: None,
            shards: Vec::new(),
        };
        if byzantine {
            node.byzantine = Some((0..config.shards).map(state).collect());
            return node;
        }
        node.shards = (0..config.shards)
            .map(|s| {
                let certificates = MemoryCertificates::new();
                let mut shard_node = ShardNode::new(
                    state(s),
                    node_config(config),
                    Arc::new(ShardCounters::default()),
                );
                shard_node.set_certificate_reader(Box::new(certificates.clone()));
                shard_node.set_redeem_approver(Box::new(SimApprover(node.name)));
                (shard_node, certificates)
            })
            .map(|(shard_node, certificates)| ShardHost {
                node: Some(shard_node),
                certificates,
                unsynced: Vec::new(),
                disk: SimDisk::default(),
                inbox: VecDeque::new(),
                incarnation: 0,
                wake_scheduled: false,
                timer_at: None,
                log: LogBatch::default(),
                frames: Vec::new(),
                batch: Datagrams::new(),
                follower: fastpay_wire::DepositCursor::default(),
            })
            .collect();
        node
    }

    pub(crate) fn is_byzantine(&self) -> bool {
        self.byzantine.is_some()
    }

    /// Whether every shard is running.
    pub(crate) fn all_up(&self) -> bool {
        self.shards.iter().all(|s| s.node.is_some())
    }
}

fn node_config(config: &crate::SimConfig) -> NodeConfig {
    let transport = if config.split_shards {
        Transport::Lossy
    } else {
        Transport::Reliable
    };
    NodeConfig {
        transports: vec![transport; config.shards as usize],
        durable: true,
        snapshot_after_bytes: config.snapshot_after_bytes,
        // The simulated network has no kernel queue: every datagram arrives fresh.
        shed_after: None,
    }
}

impl World {
    /// A datagram reaches authority `a`'s port: the kernel hands it to a shard's socket (the
    /// one it names, as steering does; in split mode, or when misrouted, another one).
    pub(crate) fn authority_receives(
        &mut self,
        a: usize,
        from: Node,
        bytes: Vec<u8>,
    ) -> Result<(), crate::SimFailure> {
        if self.authorities[a].is_byzantine() {
            let Ok((header, message)) = decode(&bytes) else {
                self.report.undecodable += 1;
                return Ok(());
            };
            self.byzantine_receives(a, from, header.shard, &message);
            return Ok(());
        }
        let n = self.config.shards as usize;
        let named = fastpay_wire::peek_header(&bytes)
            .ok()
            .map(|h| h.shard.0 as usize)
            .filter(|s| *s < n);
        let steered = !self.config.split_shards && !self.rng.random_bool(self.config.misroute_rate);
        let s = match named {
            Some(s) if steered => s,
            _ => self.rng.random_range(0..n),
        };
        let host = &mut self.authorities[a].shards[s];
        if host.node.is_none() {
            return Ok(());
        }
        host.inbox.push_back((from, bytes));
        self.wake(a, s);
        Ok(())
    }

    /// Schedules a batch for shard `s` if none is scheduled.
    fn wake(&mut self, a: usize, s: usize) {
        let host = &mut self.authorities[a].shards[s];
        if host.wake_scheduled {
            return;
        }
        host.wake_scheduled = true;
        let incarnation = host.incarnation;
        let delay = self.rng.random_range(1..=200);
        self.schedule(
            delay,
            Event::ShardWake {
                authority: a,
                shard: s,
                incarnation,
            },
        );
    }

    /// Shard `s` processes a batch of random size from its inbox.
    pub(crate) fn shard_wake(
        &mut self,
        a: usize,
        s: usize,
        incarnation: u64,
    ) -> Result<(), crate::SimFailure> {
        let size = self.rng.random_range(1..=BATCH);
        let now = self.now;
        let host = &mut self.authorities[a].shards[s];
        if !host.runs(Some(incarnation)) {
            return Ok(());
        }
        host.wake_scheduled = false;
        let Some(node) = host.node.as_mut() else {
            return Ok(());
        };
        host.batch.clear();
        let room = size.min(node.batch_room());
        while host.batch.len() < room {
            let Some((from, bytes)) = host.inbox.pop_front() else {
                break;
            };
            host.batch.push(from.address(), &bytes);
        }
        if host.batch.is_empty() && !node.has_forwarded() {
            return Ok(());
        }
        node.handle_batch(micros(now), &host.batch);
        self.report.batches += 1;
        if !host.inbox.is_empty() {
            self.wake(a, s);
        }
        self.drain_effects(a, s)
    }

    /// Shard `s`'s retransmission timer.
    pub(crate) fn shard_timer(
        &mut self,
        a: usize,
        s: usize,
        incarnation: u64,
    ) -> Result<(), crate::SimFailure> {
        let host = &mut self.authorities[a].shards[s];
        if !host.runs(Some(incarnation)) {
            return Ok(());
        }
        host.timer_at = None;
        self.drain_effects(a, s)
    }

    /// A frame from another shard of authority `a` arrives.
    pub(crate) fn frame_arrives(
        &mut self,
        a: usize,
        incarnation: Option<u64>,
        frame: LinkFrame,
    ) -> Result<(), crate::SimFailure> {
        let s = frame.to.0 as usize;
        let now = self.now;
        let host = &mut self.authorities[a].shards[s];
        if !host.runs(incarnation) {
            return Ok(());
        }
        let Some(node) = host.node.as_mut() else {
            return Ok(());
        };
        self.report.frames_delivered += 1;
        let from = frame.from;
        let credited = node.links().taken_from(from);
        node.handle_frame(micros(now), frame);
        if node.links().taken_from(from) > credited {
            self.report.cross_shard_credits += 1;
        }
        if node.has_forwarded() {
            self.wake(a, s);
        }
        self.drain_effects(a, s)
    }

    /// A log write of shard `s` is synced.
    pub(crate) fn disk_synced(
        &mut self,
        a: usize,
        s: usize,
        incarnation: u64,
        end: u64,
        position: u64,
    ) -> Result<(), crate::SimFailure> {
        let host = &mut self.authorities[a].shards[s];
        if !host.runs(Some(incarnation)) {
            return Ok(());
        }
        let Some(node) = host.node.as_mut() else {
            return Ok(());
        };
        host.disk.sync(end);
        node.durable(position);
        store_durable(&mut host.unsynced, &host.certificates, position);
        self.drain_effects(a, s)
    }

    pub(crate) fn snapshot_landed(&mut self, a: usize, s: usize, incarnation: u64) {
        let host = &mut self.authorities[a].shards[s];
        if host.runs(Some(incarnation)) {
            host.disk.snapshot_landed();
            self.report.snapshots += 1;
        }
    }

    /// Moves shard `s`'s effects out, as the runtime does: records to the disk (synced
    /// later), a snapshot when due, released replies to the network, frames to the other
    /// shards, and the next retransmission deadline to a timer.
    pub(crate) fn drain_effects(&mut self, a: usize, s: usize) -> Result<(), crate::SimFailure> {
        let now = self.now;
        let sync_delay = self.rng.random_range(1..=MAX_SYNC_US);
        let snapshot_delay = self.rng.random_range(1..=MAX_SNAPSHOT_US);
        let slice = self.rng.random_range(1..=MAX_SNAPSHOT_SLICE);
        let host = &mut self.authorities[a].shards[s];
        let incarnation = host.incarnation;
        let Some(node) = host.node.as_mut() else {
            return Ok(());
        };
        let mut events = Vec::new();
        host.log.clear();
        if node.take_log(&mut host.log) {
            let position = host.log.position;
            if !host.log.certificates.is_empty() {
                host.unsynced
                    .push((position, std::mem::take(&mut host.log.certificates)));
            }
            let end = host.disk.write(&host.log.records);
            events.push((
                sync_delay,
                Event::DiskSync {
                    authority: a,
                    shard: s,
                    incarnation,
                    end,
                    position,
                },
            ));
        }
        if node.snapshot_encoding() {
            // One slice of the snapshot being encoded, as the runtime does between rounds.
            let whole = node
                .encode_snapshot(slice)
                .expect("a simulated shard's state encodes far below the size limit");
            if let Some(snapshot) = whole {
                host.disk.write_snapshot(snapshot);
                events.push((
                    snapshot_delay,
                    Event::SnapshotLanded {
                        authority: a,
                        shard: s,
                        incarnation,
                    },
                ));
            }
        } else if node.snapshot_due() && !host.disk.snapshot_in_progress() {
            // The store syncs the log and cuts it; the node then knows it is durable and
            // cuts its state, which it encodes over the next events while records go on.
            host.disk.cut();
            node.durable(node.log_position());
            let position = node.log_position();
            store_durable(&mut host.unsynced, &host.certificates, position);
            node.begin_snapshot(Vec::new())
                .expect("a simulated shard's state encodes far below the size limit");
        }
        let mut replies = Vec::new();
        while let Some(batch) = node.poll_replies() {
            for i in 0..batch.len() {
                let (peer, bytes, _) = batch.get(i);
                replies.push((peer, bytes.to_vec()));
            }
            node.recycle(batch);
        }
        host.frames.clear();
        node.transmit(micros(now), &mut host.frames);
        let frames = std::mem::take(&mut host.frames);
        // A snapshot being encoded goes on even when nothing else happens.
        let slice_due = node
            .snapshot_encoding()
            .then(|| micros(now + SNAPSHOT_SLICE_US));
        if let Some(deadline) = node.next_deadline().into_iter().chain(slice_due).min() {
            let at = (deadline.as_micros() as u64).max(now + 1);
            if host.timer_at.is_none_or(|t| at < t) {
                host.timer_at = Some(at);
                events.push((
                    at - now,
                    Event::ShardTimer {
                        authority: a,
                        shard: s,
                        incarnation,
                    },
                ));
            }
        }
        for (delay, event) in events {
            self.schedule(delay, event);
        }
        for (peer, bytes) in replies {
            self.observe_reply(a, &bytes)?;
            if let Some(to) = Node::from_address(peer) {
                self.send_bytes(Node::Authority(a), to, bytes);
            }
        }
        for frame in &frames {
            self.deliver_frame(a, frame.clone());
        }
        self.authorities[a].shards[s].frames = frames;
        Ok(())
    }

    /// Carries a frame between two shards of authority `a`: FIFO and lossless between threads
    /// of one process (lost if the process dies), over the faulty network between processes.
    fn deliver_frame(&mut self, a: usize, frame: LinkFrame) {
        let to = frame.to.0 as usize;
        if !self.config.split_shards {
            let link = (a, frame.from.0, frame.to.0);
            let earliest = self.now + CROSS_SHARD_US;
            let time = self
                .link_clock
                .get(&link)
                .map_or(earliest, |&last| earliest.max(last));
            self.link_clock.insert(link, time);
            let incarnation = Some(self.authorities[a].shards[to].incarnation);
            self.queue.push(
                time,
                Event::Frame {
                    authority: a,
                    incarnation,
                    frame,
                },
            );
            return;
        }
        if !self.healed && self.rng.random_bool(self.config.drop_rate) {
            return;
        }
        if !self.healed && self.rng.random_bool(self.config.duplicate_rate) {
            let delay = self.rng.random_range(1..=self.config.max_delay_us);
            self.schedule(
                delay,
                Event::Frame {
                    authority: a,
                    incarnation: None,
                    frame: frame.clone(),
                },
            );
        }
        let delay = self.rng.random_range(1..=self.config.max_delay_us);
        self.schedule(
            delay,
            Event::Frame {
                authority: a,
                incarnation: None,
                frame,
            },
        );
    }

    /// Schedules authority `a`'s next crash.
    pub(crate) fn schedule_crash(&mut self, a: usize) {
        if self.config.crash_interval_us == 0 || self.authorities[a].is_byzantine() || self.healed {
            return;
        }
        let delay = self.rng.random_range(1..=2 * self.config.crash_interval_us);
        let shard = self
            .config
            .split_shards
            .then(|| self.rng.random_range(0..self.config.shards as usize));
        self.schedule(
            delay,
            Event::Crash {
                authority: a,
                shard,
            },
        );
    }

    /// A crash: the process loses its memory, its disks lose what was not synced.
    pub(crate) fn crash(&mut self, a: usize, shard: Option<usize>) {
        if self.healed {
            return;
        }
        let shards: Vec<usize> = match shard {
            Some(s) => vec![s],
            None => (0..self.authorities[a].shards.len()).collect(),
        };
        let mut crashed = false;
        for s in shards {
            let host = &mut self.authorities[a].shards[s];
            if host.node.is_none() {
                continue;
            }
            crashed = true;
            host.node = None;
            host.unsynced.clear();
            host.incarnation += 1;
            host.inbox.clear();
            host.wake_scheduled = false;
            host.timer_at = None;
            let fault = host.disk.crash(&mut self.rng);
            if matches!(
                fault,
                CrashFault::Torn | CrashFault::ZeroFilled | CrashFault::Scrambled
            ) {
                self.report.damaged_restarts += 1;
            }
        }
        if crashed {
            self.report.crashes += 1;
            let downtime = self.rng.random_range(1..=MAX_DOWNTIME_US);
            self.schedule(
                downtime,
                Event::Restart {
                    authority: a,
                    shard,
                },
            );
        }
    }

    /// A crashed process restarts: each of its shards recovers from its disk through the
    /// node's recovery, and only then do they start talking (as the engine spawns its shard
    /// threads once every shard has recovered).
    pub(crate) fn restart(
        &mut self,
        a: usize,
        shard: Option<usize>,
    ) -> Result<(), crate::SimFailure> {
        let shards: Vec<usize> = match shard {
            Some(s) => vec![s],
            None => (0..self.authorities[a].shards.len()).collect(),
        };
        for &s in &shards {
            self.recover_shard(a, s)?;
        }
        for &s in &shards {
            self.drain_effects(a, s)?;
            self.schedule_deposit_poll(a, s);
        }
        if self.authorities[a].all_up() {
            self.schedule_crash(a);
        }
        Ok(())
    }

    /// Shard `s` recovers from its disk; everything it acknowledged before the crash must
    /// still be there.
    fn recover_shard(&mut self, a: usize, s: usize) -> Result<(), crate::SimFailure> {
        let key = KeyPair::from_seed(self.authorities[a].key.seed());
        let state = AuthorityShard::new(
            key,
            self.committee.clone(),
            ShardId(s as u32),
            &self.genesis,
        )
        .map_err(|e| self.fail(format!("authority {a} shard {s}: {e}")))?;
        let config = node_config(&self.config);
        let name = self.authorities[a].name;
        let host = &mut self.authorities[a].shards[s];
        let (snapshot, records) = host
            .disk
            .recover()
            .map_err(|e| self.fail(format!("authority {a} shard {s} refused to recover: {e}")))?;
        let host = &mut self.authorities[a].shards[s];
        let mut node = ShardNode::recover(
            state,
            config,
            Arc::new(ShardCounters::default()),
            snapshot,
            records,
        );
        node.count_recovered_log(host.disk.log_bytes());
        // The replayed records' certificates, for a store that may lack the latest.
        host.unsynced.clear();
        let mut replayed = LogBatch::default();
        node.take_log(&mut replayed);
        host.certificates.store(&replayed.certificates);
        node.set_certificate_reader(Box::new(host.certificates.clone()));
        node.set_redeem_approver(Box::new(SimApprover(name)));
        host.follower = node.shard().deposit_cursor();
        host.node = Some(node);
        self.check_recovered(a, s)?;
        Ok(())
    }

    /// The Byzantine authority: each request meets a random one of its misbehaviours.
    pub(crate) fn byzantine_receives(
        &mut self,
        a: usize,
        from: Node,
        shard: ShardId,
        message: &Message,
    ) {
        let key = self.authorities[a].key.clone();
        match self.rng.random_range(0..5u8) {
            // Silent.
            0 => {}
            // Honest, as far as its own (possibly inconsistent) state goes.
            1 => {
                let Some(shards) = self.authorities[a].byzantine.as_mut() else {
                    return;
                };
                let Some(state) = shards.get_mut(shard.0 as usize) else {
                    return;
                };
                let handled = state.handle_message(message);
                // Its own credits land at once: its ledger is not checked.
                if let Some(update) = handled.cross_shard
                    && let Some(to) = shards.get_mut(update.recipient_shard.0 as usize)
                {
                    let _ = to.apply_cross_shard_update(&update);
                }
                if let Some(reply) = handled.reply {
                    self.send(Node::Authority(a), from, &reply, shard);
                }
            }
            // Equivocates: votes for anything, and acknowledges confirmations it never applied.
            2 => match message {
                Message::TransferOrder(order) => {
                    let vote = sign_vote(*order, &self.committee, &key);
                    self.send(
                        Node::Authority(a),
                        from,
                        &Message::Vote(VoteReply::of(&vote)),
                        shard,
                    );
                }
                Message::ConfirmationOrder(c) => {
                    let t = c.certificate.value.transfer;
                    let lie = AccountInfoResponse {
                        account: t.sender,
                        balance: Balance::new(1_000_000),
                        next_sequence_number: SequenceNumber::new(u64::MAX),
                        pending: None,
                        deposited: Balance::ZERO,
                    };
                    self.send(
                        Node::Authority(a),
                        from,
                        &Message::AccountInfoResponse(lie),
                        shard,
                    );
                }
                // Approves a redeem with a signature that is not its own.
                Message::RedeemRequest(request) => {
                    let t = request.certificate.value.transfer;
                    let forged = RedeemApproval {
                        sender: t.sender,
                        sequence_number: t.sequence_number,
                        r: self.rng.random(),
                        s: [0; 32],
                        v: 27,
                    };
                    self.send(
                        Node::Authority(a),
                        from,
                        &Message::RedeemApproval(forged),
                        shard,
                    );
                }
                _ => {}
            },
            // Signs garbage.
            3 => {
                if let Message::TransferOrder(order) = message {
                    let mut vote = sign_vote(*order, &self.committee, &key);
                    match &mut vote.signature {
                        VoteSignature::Single(s) => *s = Signature(self.rng.random()),
                        VoteSignature::Batched(p) => {
                            p.root_signature = Signature(self.rng.random())
                        }
                    }
                    self.send(
                        Node::Authority(a),
                        from,
                        &Message::Vote(VoteReply::of(&vote)),
                        shard,
                    );
                }
            }
            // Sends bytes that are not a message at all.
            _ => {
                let len = self.rng.random_range(0..300);
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
                self.send_bytes(Node::Authority(a), from, bytes);
            }
        }
    }
}

/// Virtual microseconds as the node's time.
fn micros(now: u64) -> std::time::Duration {
    std::time::Duration::from_micros(now)
}
