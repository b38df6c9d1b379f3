//! A seeded, deterministic simulation of a whole FastPay committee, running the engine's real
//! shard nodes.
//!
//! Each honest authority is made of real [`fastpay_node::ShardNode`]s, each with a simulated
//! disk ([`disk`]) that keeps only what was synced; the nodes crash at any step and restart
//! from their disks through the node's own recovery. Shards of one authority talk over
//! in-process queues (reliable, dying with the process) or, with
//! [`SimConfig::split_shards`], as separate processes over the lossy network. Real clients
//! ([`fastpay_client`]) exchange real datagrams with real ed25519 signatures over a network
//! that drops, duplicates, delays and reorders them ([`network`]), under virtual time. One
//! authority may be Byzantine, and some clients try overdrafts, replays and double spends.
//! After every event the simulation checks the invariants ([`invariants`]); at the end the
//! network heals and it checks that every outbox drains and every ledger agrees.
//!
//! Everything random comes from one seed, so a failure replays exactly.

#![forbid(unsafe_code)]

mod authority;
mod clients;
mod contract;
pub mod disk;
mod invariants;
pub mod network;
mod primary;

use authority::AuthorityNode;
use fastpay_authority::Genesis;
use fastpay_client::ClientState;
use fastpay_wire::{
    AccountId, Amount, Balance, CertifiedTransferOrder, Committee, KeyPair, Message,
    SequenceNumber, ShardId, Transfer, TransferOrder, VoteScheme, encode_request, shard_of,
};
use network::{Event, EventQueue, Node};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The shape of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Everything random derives from this.
    pub seed: u64,
    /// Committee size (3f + 1).
    pub authorities: usize,
    /// Shards per authority.
    pub shards: u32,
    /// Whether each shard runs as its own process (lossy links, crashes one shard at a time)
    /// rather than all shards in one process (in-process queues, crashes the authority).
    pub split_shards: bool,
    /// Honest clients, each making `transfers_per_client` payments.
    pub honest_clients: usize,
    /// Clients that each try one double spend.
    pub double_spenders: usize,
    /// Payments each honest client makes.
    pub transfers_per_client: usize,
    /// Genesis balance of every client.
    pub initial_balance: u64,
    /// Probability that a datagram is lost.
    pub drop_rate: f64,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate_rate: f64,
    /// Probability that a datagram reaches a shard other than the one it names.
    pub misroute_rate: f64,
    /// Largest one-way delay, in virtual microseconds; delays are uniform, so datagrams reorder.
    pub max_delay_us: u64,
    /// Mean virtual time between crashes of each honest authority (0: no crashes).
    pub crash_interval_us: u64,
    /// Log bytes after which a node snapshots (small, so snapshots happen often).
    pub snapshot_after_bytes: u64,
    /// Whether the last authority is Byzantine.
    pub byzantine: bool,
    /// How every authority signs its votes.
    pub vote_scheme: VoteScheme,
    /// Virtual time after which unfinished honest clients count as a liveness failure.
    pub time_limit_us: u64,
    /// Probability that an honest client crashes at a tick and resumes from its last saved
    /// state (its wallet file).
    pub client_crash_rate: f64,
    /// Probability that a client that formed a certificate sends its confirmations before
    /// saving it (an old wallet that could lose it in a crash).
    pub unsaved_certificate_rate: f64,
    /// Probability that a payer hands its receipt to the recipient; the others learn their
    /// payments by downloading them from the authorities.
    pub handover_rate: f64,
    /// Probability that an idle honest client syncs at a tick (reads a page of an
    /// authority's list of its payments received).
    pub sync_rate: f64,
    /// Deposits into honest clients' accounts on the simulated primary chain.
    pub deposits: usize,
}

impl SimConfig {
    /// The CI shape: 4 authorities × 3 shards, 24 honest clients and 4 double spenders,
    /// 10% loss, 5% duplication, crashes, one Byzantine authority.
    pub fn standard(seed: u64) -> Self {
        Self {
            seed,
            authorities: 4,
            shards: 3,
            split_shards: false,
            honest_clients: 24,
            double_spenders: 4,
            transfers_per_client: 4,
            initial_balance: 1_000,
            drop_rate: 0.10,
            duplicate_rate: 0.05,
            misroute_rate: 0.05,
            max_delay_us: 5_000,
            crash_interval_us: 40_000,
            snapshot_after_bytes: 16 << 10,
            byzantine: true,
            vote_scheme: VoteScheme::Merkle,
            time_limit_us: 120_000_000,
            client_crash_rate: 0.03,
            unsaved_certificate_rate: 0.3,
            handover_rate: 0.5,
            sync_rate: 0.25,
            deposits: 12,
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub events: u64,
    /// Datagrams handed to the network.
    pub datagrams_sent: u64,
    /// Datagrams and link frames delivered (including duplicates).
    pub messages_delivered: u64,
    /// Datagrams lost.
    pub datagrams_dropped: u64,
    /// Extra copies delivered.
    pub datagrams_duplicated: u64,
    /// Datagrams the receiver could not decode (garbage from the Byzantine authority).
    pub undecodable: u64,
    /// Frames between shards delivered.
    pub frames_delivered: u64,
    /// Batches the shard nodes processed.
    pub batches: u64,
    /// Crashes (of an authority process, or of one shard process).
    pub crashes: u64,
    /// Restarts from a disk whose unsynced tail was torn or zero-filled.
    pub damaged_restarts: u64,
    /// Snapshots that landed.
    pub snapshots: u64,
    /// Cross-shard credits honest shards applied.
    pub cross_shard_credits: u64,
    /// Payments honest clients completed.
    pub transfers_completed: u64,
    /// Distinct certificates formed.
    pub certificates: u64,
    /// Overdraft orders sent (all must be refused by a quorum).
    pub overdrafts_attempted: u64,
    /// Double spends attempted.
    pub double_spends_attempted: u64,
    /// Double spends that certified one of their two orders.
    pub double_spends_certified: u64,
    /// Replies clients refused (bad votes, votes for other orders, strangers).
    pub replies_refused: u64,
    /// Honest clients that crashed and resumed from their saved state.
    pub client_crashes: u64,
    /// Certificates of their own transfers clients recovered from the committee (lost in a
    /// crash before they were saved).
    pub certificates_recovered: u64,
    /// Payments clients learned by downloading them from the authorities.
    pub payments_downloaded: u64,
    /// Deposits that landed on the simulated primary chain.
    pub deposits: u64,
    /// Payments honest clients sent out of FastPay, to the exit account.
    pub exits: u64,
    /// Exits the simulated contract paid, on a quorum's approvals.
    pub redeems: u64,
    /// Redeems the contract refused: replays of a paid one, and approvals short of a quorum.
    pub redeems_refused: u64,
    /// Virtual time at the end, in microseconds.
    pub virtual_time_us: u64,
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed to replay.
    pub seed: u64,
    /// Whether shards ran as separate processes.
    pub split_shards: bool,
    /// Events processed before the failure.
    pub step: u64,
    /// Virtual time of the failure.
    pub time_us: u64,
    /// What broke.
    pub what: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} ({} shards) failed at step {} (t = {} us): {}\n  replay with: \
             FASTPAY_SIM_SEED={} cargo test -p fastpay-sim --release --test committee_simulation",
            self.seed,
            if self.split_shards {
                "split"
            } else {
                "in-process"
            },
            self.step,
            self.time_us,
            self.what,
            self.seed
        )
    }
}

impl std::error::Error for SimFailure {}

/// How often an idle or waiting client wakes up, in virtual microseconds: a few round trips.
pub(crate) const RETRY_US: u64 = 20_000;

// A few dozen clients per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Role {
    Honest {
        /// Payments still to make.
        remaining: usize,
    },
    DoubleSpender {
        orders: Option<[TransferOrder; 2]>,
        halves: [Vec<usize>; 2],
        votes: [BTreeMap<fastpay_wire::AuthorityName, fastpay_wire::VoteSignature>; 2],
    },
}

pub(crate) struct ClientNode {
    pub(crate) state: ClientState,
    /// The account key's seed, to sign orders behind the client state's back.
    pub(crate) key_seed: [u8; 32],
    pub(crate) role: Role,
    /// The state as its wallet file last saved it: what a crash resumes from.
    pub(crate) saved: fastpay_client::ClientSnapshot,
    /// Sequence numbers of its transfers counted as finished (the harness's own account,
    /// which crashes do not rewind).
    pub(crate) finished: std::collections::BTreeSet<SequenceNumber>,
    /// What the client process is doing (an honest client's real client machine).
    pub(crate) operation: Option<clients::Operation>,
    /// The virtual time its operation asked to be woken at.
    pub(crate) wake_at: Option<u64>,
}

pub(crate) struct World {
    pub(crate) config: SimConfig,
    /// The instant virtual time zero stands for, for the client machines' clocks.
    pub(crate) epoch: std::time::Instant,
    pub(crate) rng: StdRng,
    pub(crate) now: u64,
    pub(crate) step: u64,
    pub(crate) queue: EventQueue,
    pub(crate) committee: Arc<Committee>,
    pub(crate) genesis: Genesis,
    pub(crate) authorities: Vec<AuthorityNode>,
    pub(crate) clients: Vec<ClientNode>,
    /// Whether the network has healed (the final phase: no loss, no crashes, no new
    /// payments).
    pub(crate) healed: bool,
    /// Last scheduled time of each in-process link (authority, from shard, to shard): frames
    /// between threads travel FIFO.
    pub(crate) link_clock: BTreeMap<(usize, u32, u32), u64>,
    /// Every transfer certified anywhere, by sender and sequence number.
    pub(crate) decided: BTreeMap<(AccountId, SequenceNumber), Transfer>,
    /// Every certificate formed, by sender and sequence number.
    pub(crate) certificates: BTreeMap<(AccountId, SequenceNumber), CertifiedTransferOrder>,
    /// Every vote an honest authority sent: (authority, sender, sequence number) → signature.
    pub(crate) votes_sent:
        BTreeMap<(usize, AccountId, SequenceNumber), fastpay_wire::VoteSignature>,
    /// The highest next sequence number an honest authority acknowledged for an account.
    pub(crate) acknowledged: BTreeMap<(usize, AccountId), SequenceNumber>,
    /// The simulated primary chain's confirmed deposits, in index order.
    pub(crate) chain: Vec<fastpay_wire::DepositCredit>,
    /// The simulated primary chain's redeems.
    pub(crate) contract: contract::SimContract,
    pub(crate) report: SimReport,
}

/// Runs one simulation; `Err` names the first broken invariant.
pub fn run(config: SimConfig) -> Result<SimReport, SimFailure> {
    let mut world = World::new(config);
    world.run()?;
    world.heal_and_settle()?;
    world.report.virtual_time_us = world.now;
    world.report.certificates = world.certificates.len() as u64;
    Ok(world.report)
}

impl World {
    fn new(config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let authority_keys: Vec<KeyPair> = (0..config.authorities)
            .map(|_| KeyPair::from_seed(rng.random()))
            .collect();
        let committee = Arc::new(
            Committee::equal_weights(authority_keys.iter().map(KeyPair::authority), config.shards)
                .unwrap_or_else(|e| panic!("simulated committee is invalid: {e}"))
                .with_vote_scheme(config.vote_scheme),
        );
        let client_count = config.honest_clients + config.double_spenders;
        let client_seeds: Vec<[u8; 32]> = (0..client_count).map(|_| rng.random()).collect();
        let client_keys: Vec<KeyPair> = client_seeds
            .iter()
            .map(|s| KeyPair::from_seed(*s))
            .collect();
        let genesis = Genesis::from_accounts(
            client_keys
                .iter()
                .map(|k| (k.account(), Amount::new(config.initial_balance))),
        )
        .unwrap_or_else(|e| panic!("simulated genesis is invalid: {e}"));
        let authorities = authority_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let byzantine = config.byzantine && i + 1 == config.authorities;
                AuthorityNode::new(key, byzantine, &committee, &genesis, &config)
            })
            .collect();
        let clients = client_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let role = if i < config.honest_clients {
                    Role::Honest {
                        remaining: config.transfers_per_client,
                    }
                } else {
                    Role::DoubleSpender {
                        orders: None,
                        halves: [Vec::new(), Vec::new()],
                        votes: [BTreeMap::new(), BTreeMap::new()],
                    }
                };
                let state = ClientState::new(
                    key,
                    committee.clone(),
                    Balance::new(i128::from(config.initial_balance)),
                );
                ClientNode {
                    key_seed: client_seeds[i],
                    saved: state.snapshot(),
                    state,
                    role,
                    finished: std::collections::BTreeSet::new(),
                    operation: None,
                    wake_at: None,
                }
            })
            .collect();
        let mut world = Self {
            epoch: std::time::Instant::now(),
            rng,
            now: 0,
            step: 0,
            queue: EventQueue::default(),
            committee,
            genesis,
            authorities,
            clients,
            healed: false,
            link_clock: BTreeMap::new(),
            decided: BTreeMap::new(),
            certificates: BTreeMap::new(),
            votes_sent: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            chain: Vec::new(),
            contract: contract::SimContract::default(),
            report: SimReport {
                seed: config.seed,
                ..SimReport::default()
            },
            config,
        };
        for client in 0..world.clients.len() {
            let start = world.rng.random_range(0..RETRY_US);
            world.schedule(start, Event::Tick { client });
        }
        for a in 0..world.authorities.len() {
            world.schedule_crash(a);
        }
        world.start_primary();
        world
    }

    pub(crate) fn fail(&self, what: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.config.seed,
            split_shards: self.config.split_shards,
            step: self.step,
            time_us: self.now,
            what: what.into(),
        }
    }

    pub(crate) fn schedule(&mut self, delay: u64, event: Event) {
        self.queue.push(self.now + delay, event);
    }

    /// Hands a datagram to the faulty network.
    pub(crate) fn send(&mut self, from: Node, to: Node, message: &Message, shard: ShardId) {
        // Requests carry the padding that lets batched votes fit within them.
        let padding = match to {
            Node::Authority(_) => self.committee.request_padding(),
            _ => 0,
        };
        let bytes = encode_request(message, shard, padding)
            .unwrap_or_else(|e| panic!("encode {message:?}: {e}"));
        self.send_bytes(from, to, bytes);
    }

    pub(crate) fn send_bytes(&mut self, from: Node, to: Node, bytes: Vec<u8>) {
        self.report.datagrams_sent += 1;
        if !self.healed && self.rng.random_bool(self.config.drop_rate) {
            self.report.datagrams_dropped += 1;
            return;
        }
        if !self.healed && self.rng.random_bool(self.config.duplicate_rate) {
            self.report.datagrams_duplicated += 1;
            let delay = self.rng.random_range(1..=self.config.max_delay_us);
            let copy = bytes.clone();
            self.schedule(
                delay,
                Event::Datagram {
                    from,
                    to,
                    bytes: copy,
                },
            );
        }
        let delay = self.rng.random_range(1..=self.config.max_delay_us);
        self.schedule(delay, Event::Datagram { from, to, bytes });
    }

    /// A client's request to one authority, naming the shard owning the account it is about,
    /// as the real client routes it (`fastpay_client::route`).
    pub(crate) fn client_send(&mut self, client: usize, authority: usize, message: &Message) {
        let shard = match fastpay_client::route(message) {
            Some(fastpay_client::Route::Shard(shard)) => shard,
            Some(fastpay_client::Route::Account(account)) => shard_of(&account, self.config.shards),
            None => shard_of(&self.clients[client].state.account(), self.config.shards),
        };
        self.send(
            Node::Client(client),
            Node::Authority(authority),
            message,
            shard,
        );
    }

    fn honest_clients_done(&self) -> bool {
        self.clients.iter().all(|c| match c.role {
            Role::Honest { remaining, .. } => remaining == 0 && c.state.pending().is_none(),
            Role::DoubleSpender { .. } => true,
        })
    }

    /// Runs events until every honest client is done (or time runs out: a liveness failure).
    fn run(&mut self) -> Result<(), SimFailure> {
        while !self.honest_clients_done() {
            let Some((time, event)) = self.queue.pop() else {
                break;
            };
            if time > self.config.time_limit_us {
                break;
            }
            self.handle(time, event)?;
        }
        if self.honest_clients_done() {
            return Ok(());
        }
        let stuck: Vec<usize> = (0..self.clients.len())
            .filter(|&c| match self.clients[c].role {
                Role::Honest { remaining, .. } => {
                    remaining > 0 || self.clients[c].state.pending().is_some()
                }
                Role::DoubleSpender { .. } => false,
            })
            .collect();
        Err(self.fail(format!(
            "liveness: honest clients {stuck:?} did not finish by t = {} us",
            self.config.time_limit_us
        )))
    }

    fn handle(&mut self, time: u64, event: Event) -> Result<(), SimFailure> {
        self.now = time;
        self.step += 1;
        self.report.events += 1;
        match event {
            Event::Datagram { from, to, bytes } => {
                self.report.messages_delivered += 1;
                match to {
                    Node::Authority(a) => self.authority_receives(a, from, bytes)?,
                    Node::Client(c) => self.client_receives(c, from, &bytes)?,
                    Node::Injector => {}
                }
            }
            Event::Frame {
                authority,
                incarnation,
                frame,
            } => {
                self.report.messages_delivered += 1;
                self.frame_arrives(authority, incarnation, frame)?;
            }
            Event::ShardWake {
                authority,
                shard,
                incarnation,
            } => self.shard_wake(authority, shard, incarnation)?,
            Event::ShardTimer {
                authority,
                shard,
                incarnation,
            } => self.shard_timer(authority, shard, incarnation)?,
            Event::DiskSync {
                authority,
                shard,
                incarnation,
                end,
                position,
            } => self.disk_synced(authority, shard, incarnation, end, position)?,
            Event::SnapshotLanded {
                authority,
                shard,
                incarnation,
            } => self.snapshot_landed(authority, shard, incarnation),
            Event::Crash { authority, shard } => self.crash(authority, shard),
            Event::Restart { authority, shard } => self.restart(authority, shard)?,
            Event::Tick { client } => {
                if !self.healed {
                    self.tick(client)?;
                }
            }
            Event::ClientWake { client, at } => self.client_wakes(client, at)?,
            Event::ChainDeposit => self.chain_deposit(),
            Event::DepositPoll {
                authority,
                shard,
                incarnation,
            } => self.deposit_poll(authority, shard, incarnation)?,
        }
        self.check_after_event()
    }

    /// The network heals: no more loss, duplication or crashes. Every crashed shard restarts,
    /// every certificate is delivered to every honest authority, and once everything settles
    /// every outbox must be empty and every honest ledger must match the certificates.
    fn heal_and_settle(&mut self) -> Result<(), SimFailure> {
        self.healed = true;
        self.settle()?;
        let certificates: Vec<CertifiedTransferOrder> =
            self.certificates.values().cloned().collect();
        for a in 0..self.authorities.len() {
            if self.authorities[a].is_byzantine() {
                continue;
            }
            for certificate in &certificates {
                let shard = shard_of(&certificate.value.transfer.sender, self.config.shards);
                let message = Message::ConfirmationOrder(fastpay_wire::ConfirmationOrder {
                    certificate: certificate.clone(),
                });
                self.send(Node::Injector, Node::Authority(a), &message, shard);
                // One at a time: a certificate may depend on the one before it.
                self.settle()?;
            }
        }
        // Every honest client syncs, as `client sync` would, and learns what it was paid;
        // then redeems what it sent out of FastPay and the contract has not paid, as `client
        // redeem` would: on the healed network each takes one round of approvals.
        for c in 0..self.clients.len() {
            if matches!(self.clients[c].role, Role::Honest { .. }) {
                self.final_sync(c)?;
                self.settle()?;
                while let Some(exit) = self.unredeemed_exit(c) {
                    self.start_redeem(c)?;
                    self.settle()?;
                    let t = exit.value.transfer;
                    if !self.contract.is_redeemed(t.sender, t.sequence_number) {
                        return Err(self.fail(format!(
                            "liveness: client {c}'s exit {t:?} got no quorum of approvals on \
                             the healed network"
                        )));
                    }
                }
            }
        }
        self.check_settled(&certificates)?;
        self.check_redeems_settled()
    }

    /// Runs every scheduled event but client ticks until nothing is left.
    fn settle(&mut self) -> Result<(), SimFailure> {
        let deadline = self.now + self.config.time_limit_us;
        while let Some((time, event)) = self.queue.pop() {
            if time > deadline {
                return Err(self.fail("the healed network never settled"));
            }
            self.handle(time, event)?;
        }
        Ok(())
    }
}
