//! A seeded, deterministic simulation of a whole FastPay committee.
//!
//! Real authority shards ([`fastpay_authority`]) and real clients ([`fastpay_client`]) exchange
//! real datagrams ([`fastpay_wire::codec`]) with real ed25519 signatures over a simulated
//! network that drops, duplicates, delays and reorders them, under virtual time. One authority
//! may be Byzantine (it equivocates, signs garbage, lies, or stays silent), some clients try
//! overdrafts, replays and double spends. After every event the simulation checks:
//!
//! - **conservation**: at every honest authority, the balances of all its shards plus the
//!   credits in flight between them equal the genesis supply;
//! - **agreement**: no two different transfers are certified or applied for one sender and
//!   sequence number, anywhere;
//! - **exactly-once credit**: every credit applied at an authority matches a debit applied
//!   there, and none is applied twice.
//!
//! At the end it checks **liveness** (every honest client finished all its transfers), then
//! delivers every certificate to every honest authority and checks that they all hold the
//! same ledger, equal to genesis plus the certified transfers, and that every client's own
//! view of its balance matches it.
//!
//! Everything random comes from one seed, so a failure replays exactly.

#![forbid(unsafe_code)]

use fastpay_authority::{AuthorityShard, CreditOutcome, Genesis};
use fastpay_client::ClientState;
use fastpay_wire::{
    AccountId, AccountInfoResponse, Amount, AuthorityName, Balance, CertifiedTransferOrder,
    Committee, ConfirmationOrder, CrossShardUpdate, KeyPair, Message, SequenceNumber, ShardId,
    Signature, SignedTransferOrder, Transfer, TransferOrder, VoteReply, decode, encode, shard_of,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
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
    /// Probability that an in-process credit is delivered a second time, after the first.
    pub credit_redelivery_rate: f64,
    /// Largest one-way delay, in virtual microseconds; delays are uniform, so datagrams reorder.
    pub max_delay_us: u64,
    /// Whether the last authority is Byzantine.
    pub byzantine: bool,
    /// Virtual time after which unfinished honest clients count as a liveness failure.
    pub time_limit_us: u64,
}

impl SimConfig {
    /// The CI shape: 4 authorities × 3 shards, 24 honest clients and 4 double spenders,
    /// 10% loss, 5% duplication, one Byzantine authority.
    pub fn standard(seed: u64) -> Self {
        Self {
            seed,
            authorities: 4,
            shards: 3,
            honest_clients: 24,
            double_spenders: 4,
            transfers_per_client: 4,
            initial_balance: 1_000,
            drop_rate: 0.10,
            duplicate_rate: 0.05,
            credit_redelivery_rate: 0.05,
            max_delay_us: 5_000,
            byzantine: true,
            time_limit_us: 60_000_000,
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Events processed (datagrams, credits, timers).
    pub events: u64,
    /// Datagrams handed to the network.
    pub datagrams_sent: u64,
    /// Datagrams delivered (including duplicates).
    pub datagrams_delivered: u64,
    /// Datagrams lost.
    pub datagrams_dropped: u64,
    /// Extra copies delivered.
    pub datagrams_duplicated: u64,
    /// Datagrams the receiver could not decode (garbage from the Byzantine authority).
    pub undecodable: u64,
    /// Cross-shard credits applied by honest authorities.
    pub cross_shard_credits: u64,
    /// Redelivered credits recognised as duplicates.
    pub duplicate_credits_ignored: u64,
    /// Payments honest clients completed.
    pub transfers_completed: u64,
    /// Distinct certificates formed.
    pub certificates: u64,
    /// Overdraft orders sent (all must be refused by a quorum).
    pub overdrafts_attempted: u64,
    /// Double spends attempted, and how many got a certificate for one of the two orders.
    pub double_spends_attempted: u64,
    /// Double spends that certified one of their two orders.
    pub double_spends_certified: u64,
    /// Replies clients refused (bad votes, votes for other orders, strangers).
    pub replies_refused: u64,
    /// Virtual time at the end, in microseconds.
    pub virtual_time_us: u64,
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed to replay.
    pub seed: u64,
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
            "simulation seed {} failed at step {} (t = {} us): {}\n  replay with: \
             FASTPAY_SIM_SEED={} cargo test -p fastpay-sim --test committee_simulation",
            self.seed, self.step, self.time_us, self.what, self.seed
        )
    }
}

impl std::error::Error for SimFailure {}

/// A participant's network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Authority(usize),
    Client(usize),
}

#[derive(Debug)]
enum Event {
    Datagram {
        from: Node,
        to: Node,
        bytes: Vec<u8>,
    },
    CrossShard {
        authority: usize,
        update: CrossShardUpdate,
        /// A redelivered copy (as a crash-recovering outbox would resend): must be a no-op.
        copy: bool,
    },
    Tick {
        client: usize,
    },
}

struct Scheduled {
    time: u64,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.order) == (other.time, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.order).cmp(&(self.time, self.order))
    }
}

/// How often an idle or waiting client wakes up, in virtual microseconds: a few round trips.
const RETRY_US: u64 = 20_000;
/// Delay of an in-process cross-shard hop, in virtual microseconds.
const CROSS_SHARD_US: u64 = 50;

struct AuthorityNode {
    name: AuthorityName,
    shards: Vec<AuthorityShard>,
    byzantine: Option<KeyPair>,
    /// Units sent between this authority's shards and not yet credited.
    in_flight: i128,
}

// A few dozen clients per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Role {
    Honest {
        /// Payments still to make.
        remaining: usize,
    },
    DoubleSpender {
        orders: Option<[TransferOrder; 2]>,
        halves: [Vec<usize>; 2],
        votes: [BTreeMap<AuthorityName, Signature>; 2],
    },
}

struct ClientNode {
    state: ClientState,
    /// The account key's seed, to sign orders behind the client state's back.
    key_seed: [u8; 32],
    role: Role,
}

struct World {
    config: SimConfig,
    rng: StdRng,
    now: u64,
    order: u64,
    step: u64,
    queue: BinaryHeap<Scheduled>,
    committee: Arc<Committee>,
    genesis: Genesis,
    authorities: Vec<AuthorityNode>,
    clients: Vec<ClientNode>,
    /// Last scheduled time of each in-process link (authority, from shard, to shard): credits
    /// travel FIFO, as over the engine's channels.
    link_clock: BTreeMap<(usize, u32, u32), u64>,
    /// Every transfer certified or applied anywhere, by sender and sequence number.
    decided: BTreeMap<(AccountId, SequenceNumber), Transfer>,
    /// Debits applied, per honest authority, needing a cross-shard credit.
    debits: BTreeMap<(usize, AccountId, SequenceNumber), bool>,
    /// Every certificate formed, by sender and sequence number.
    certificates: BTreeMap<(AccountId, SequenceNumber), CertifiedTransferOrder>,
    report: SimReport,
}

/// Runs one simulation; `Err` names the first broken invariant.
pub fn run(config: SimConfig) -> Result<SimReport, SimFailure> {
    let mut world = World::new(config);
    world.run()?;
    world.final_sync()?;
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
                .unwrap_or_else(|e| panic!("simulated committee is invalid: {e}")),
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
                let byzantine = (config.byzantine && i + 1 == config.authorities)
                    .then(|| KeyPair::from_seed(key.seed()));
                let shards = (0..config.shards)
                    .map(|s| {
                        AuthorityShard::new(
                            KeyPair::from_seed(key.seed()),
                            committee.clone(),
                            ShardId(s),
                            &genesis,
                        )
                        .unwrap_or_else(|e| panic!("simulated shard: {e}"))
                    })
                    .collect();
                AuthorityNode {
                    name: key.authority(),
                    shards,
                    byzantine,
                    in_flight: 0,
                }
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
                ClientNode {
                    key_seed: client_seeds[i],
                    state: ClientState::new(
                        key,
                        committee.clone(),
                        Balance::new(i128::from(config.initial_balance)),
                    ),
                    role,
                }
            })
            .collect();
        let mut world = Self {
            rng,
            now: 0,
            order: 0,
            step: 0,
            queue: BinaryHeap::new(),
            committee,
            genesis,
            authorities,
            clients,
            link_clock: BTreeMap::new(),
            decided: BTreeMap::new(),
            debits: BTreeMap::new(),
            certificates: BTreeMap::new(),
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
        world
    }

    fn fail(&self, what: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.config.seed,
            step: self.step,
            time_us: self.now,
            what: what.into(),
        }
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.schedule_at(self.now + delay, event);
    }

    fn schedule_at(&mut self, time: u64, event: Event) {
        self.order += 1;
        self.queue.push(Scheduled {
            time,
            order: self.order,
            event,
        });
    }

    /// Hands a datagram to the faulty network.
    fn send(&mut self, from: Node, to: Node, message: &Message, shard: ShardId) {
        let bytes = encode(message, shard).unwrap_or_else(|e| panic!("encode {message:?}: {e}"));
        self.send_bytes(from, to, bytes);
    }

    fn send_bytes(&mut self, from: Node, to: Node, bytes: Vec<u8>) {
        self.report.datagrams_sent += 1;
        if self.rng.random_bool(self.config.drop_rate) {
            self.report.datagrams_dropped += 1;
            return;
        }
        if self.rng.random_bool(self.config.duplicate_rate) {
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

    /// A client's request to one authority, routed to the shard owning `account`.
    fn client_send(&mut self, client: usize, authority: usize, message: &Message) {
        let account = match message {
            Message::TransferOrder(o) => o.transfer.sender,
            Message::ConfirmationOrder(c) => c.certificate.value.transfer.sender,
            Message::AccountInfoRequest(r) => r.account,
            _ => self.clients[client].state.account(),
        };
        let shard = shard_of(&account, self.config.shards);
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

    fn run(&mut self) -> Result<(), SimFailure> {
        while let Some(next) = self.queue.pop() {
            if self.honest_clients_done() {
                return Ok(());
            }
            if next.time > self.config.time_limit_us {
                break;
            }
            self.now = next.time;
            self.step += 1;
            self.report.events += 1;
            match next.event {
                Event::Datagram { from, to, bytes } => {
                    self.report.datagrams_delivered += 1;
                    match to {
                        Node::Authority(a) => self.authority_receives(a, from, &bytes)?,
                        Node::Client(c) => self.client_receives(c, from, &bytes)?,
                    }
                }
                Event::CrossShard {
                    authority,
                    update,
                    copy,
                } => self.credit(authority, &update, copy)?,
                Event::Tick { client } => self.tick(client),
            }
            self.check_conservation()?;
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

    // ---- invariants ------------------------------------------------------------------------

    fn check_conservation(&self) -> Result<(), SimFailure> {
        let supply = self.genesis.total().units();
        for (i, authority) in self.authorities.iter().enumerate() {
            if authority.byzantine.is_some() {
                continue;
            }
            let mut total = authority.in_flight;
            for shard in &authority.shards {
                let balance = shard
                    .total_balance()
                    .map_err(|e| self.fail(format!("authority {i}: {e}")))?;
                total += balance.units();
            }
            if total != supply {
                return Err(self.fail(format!(
                    "conservation: authority {i} holds {total} (with {} in flight), genesis is {supply}",
                    authority.in_flight
                )));
            }
        }
        Ok(())
    }

    /// Records that `transfer` was certified or applied; two different transfers for one
    /// sender and sequence number break agreement.
    fn decide(&mut self, transfer: Transfer, source: &str) -> Result<(), SimFailure> {
        let key = (transfer.sender, transfer.sequence_number);
        match self.decided.get(&key) {
            Some(existing) if *existing != transfer => Err(self.fail(format!(
                "agreement: {source} decided {transfer:?} but {existing:?} was decided for the \
                 same sender and sequence number"
            ))),
            Some(_) => Ok(()),
            None => {
                self.decided.insert(key, transfer);
                Ok(())
            }
        }
    }

    fn certificate_formed(
        &mut self,
        certificate: CertifiedTransferOrder,
    ) -> Result<(), SimFailure> {
        let transfer = certificate.value.transfer;
        self.decide(transfer, "a client's certificate")?;
        self.certificates
            .entry((transfer.sender, transfer.sequence_number))
            .or_insert(certificate);
        Ok(())
    }

    // ---- authorities -----------------------------------------------------------------------

    fn authority_receives(&mut self, a: usize, from: Node, bytes: &[u8]) -> Result<(), SimFailure> {
        let Ok((header, message)) = decode(bytes) else {
            self.report.undecodable += 1;
            return Ok(());
        };
        if self.authorities[a].byzantine.is_some() {
            self.byzantine_receives(a, from, header.shard, &message);
            return Ok(());
        }
        let Some(shard) = self.authorities[a].shards.get_mut(header.shard.0 as usize) else {
            return Ok(());
        };
        // Watch the sender's sequence number to see whether a confirmation applied a debit.
        let watched = match &message {
            Message::ConfirmationOrder(c) => Some(c.certificate.value.transfer),
            _ => None,
        };
        let before = watched.map(|t| {
            shard
                .accounts()
                .get(&t.sender)
                .map(|s| s.next_sequence_number)
                .unwrap_or_default()
        });
        let handled = shard.handle_message(&message);
        let after = watched.map(|t| {
            shard
                .accounts()
                .get(&t.sender)
                .map(|s| s.next_sequence_number)
                .unwrap_or_default()
        });
        if let (Some(transfer), Some(before), Some(after)) = (watched, before, after) {
            if after != before {
                if transfer.sequence_number.try_next().ok() != Some(after) {
                    return Err(self.fail(format!(
                        "authority {a} moved {:?} from {before} to {after} applying seq {}",
                        transfer.sender, transfer.sequence_number
                    )));
                }
                self.decide(transfer, "an honest authority's debit")?;
                let needs_credit = handled.cross_shard.is_some();
                let key = (a, transfer.sender, transfer.sequence_number);
                if self.debits.insert(key, needs_credit).is_some() {
                    return Err(self.fail(format!("authority {a} applied debit {key:?} twice")));
                }
            }
        }
        if let Some(update) = handled.cross_shard {
            let from_shard = header.shard.0;
            let to_shard = update.recipient_shard.0;
            let amount = i128::from(update.certificate.value.transfer.amount.units());
            self.authorities[a].in_flight += amount;
            let link = (a, from_shard, to_shard);
            let earliest = self.now + CROSS_SHARD_US;
            let time = self
                .link_clock
                .get(&link)
                .map_or(earliest, |&last| earliest.max(last));
            self.link_clock.insert(link, time);
            if self.rng.random_bool(self.config.credit_redelivery_rate) {
                let copy = update.clone();
                self.link_clock.insert(link, time + 1);
                self.schedule_at(
                    time + 1,
                    Event::CrossShard {
                        authority: a,
                        update: copy,
                        copy: true,
                    },
                );
            }
            self.schedule_at(
                time,
                Event::CrossShard {
                    authority: a,
                    update,
                    copy: false,
                },
            );
        }
        if let Some(reply) = handled.reply {
            self.send(Node::Authority(a), from, &reply, header.shard);
        }
        Ok(())
    }

    fn credit(
        &mut self,
        a: usize,
        update: &CrossShardUpdate,
        copy: bool,
    ) -> Result<(), SimFailure> {
        let transfer = update.certificate.value.transfer;
        let amount = i128::from(transfer.amount.units());
        let authority = &mut self.authorities[a];
        if !copy {
            authority.in_flight -= amount;
        }
        let Some(shard) = authority.shards.get_mut(update.recipient_shard.0 as usize) else {
            return Err(self.fail(format!("authority {a}: credit for a missing shard")));
        };
        match shard.apply_cross_shard_update(update) {
            Ok(CreditOutcome::Applied) => {
                if authority.byzantine.is_some() {
                    return Ok(());
                }
                if copy {
                    return Err(self.fail(format!(
                        "exactly-once: authority {a} applied a redelivered credit {transfer:?}"
                    )));
                }
                self.report.cross_shard_credits += 1;
                let key = (a, transfer.sender, transfer.sequence_number);
                match self.debits.get_mut(&key) {
                    Some(needs) if *needs => {
                        *needs = false;
                        Ok(())
                    }
                    Some(_) => {
                        Err(self.fail(format!("exactly-once: credit {key:?} applied twice")))
                    }
                    None => Err(self.fail(format!("exactly-once: credit {key:?} without a debit"))),
                }
            }
            Ok(CreditOutcome::Duplicate) if copy => {
                self.report.duplicate_credits_ignored += 1;
                Ok(())
            }
            // Each debit emits its credit once, so a first delivery is never a duplicate.
            Ok(CreditOutcome::Duplicate) => Err(self.fail(format!(
                "authority {a}: first credit {transfer:?} seen as duplicate"
            ))),
            Err(e) => Err(self.fail(format!("authority {a}: in-process credit refused: {e}"))),
        }
    }

    /// The Byzantine authority: each request meets a random one of its misbehaviours.
    fn byzantine_receives(&mut self, a: usize, from: Node, shard: ShardId, message: &Message) {
        let Some(key) = self.authorities[a].byzantine.as_ref() else {
            return;
        };
        let key = KeyPair::from_seed(key.seed());
        match self.rng.random_range(0..5u8) {
            // Silent.
            0 => {}
            // Honest, as far as its own (possibly inconsistent) state goes.
            1 => {
                if let Some(s) = self.authorities[a].shards.get_mut(shard.0 as usize) {
                    let handled = s.handle_message(message);
                    if let Some(reply) = handled.reply {
                        self.send(Node::Authority(a), from, &reply, shard);
                    }
                    // Its own cross-shard credits are not tracked: its ledger is not checked.
                    if let Some(update) = handled.cross_shard {
                        self.schedule(
                            CROSS_SHARD_US,
                            Event::CrossShard {
                                authority: a,
                                update,
                                copy: false,
                            },
                        );
                    }
                }
            }
            // Equivocates: votes for anything, and acknowledges confirmations it never applied.
            2 => match message {
                Message::TransferOrder(order) => {
                    let vote = SignedTransferOrder::new(*order, &key);
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
                    };
                    self.send(
                        Node::Authority(a),
                        from,
                        &Message::AccountInfoResponse(lie),
                        shard,
                    );
                }
                _ => {}
            },
            // Signs garbage.
            3 => {
                if let Message::TransferOrder(order) = message {
                    let mut vote = SignedTransferOrder::new(*order, &key);
                    vote.signature = Signature(self.rng.random());
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

    // ---- clients ---------------------------------------------------------------------------

    fn authority_index(from: Node) -> Option<usize> {
        match from {
            Node::Authority(a) => Some(a),
            Node::Client(_) => None,
        }
    }

    fn client_receives(&mut self, c: usize, from: Node, bytes: &[u8]) -> Result<(), SimFailure> {
        let Ok((_, message)) = decode(bytes) else {
            self.report.undecodable += 1;
            return Ok(());
        };
        let Some(a) = Self::authority_index(from) else {
            return Ok(());
        };
        let name = self.authorities[a].name;
        if matches!(self.clients[c].role, Role::DoubleSpender { .. }) {
            return self.double_spender_receives(c, a, message);
        }
        match message {
            Message::Vote(reply) => match self.clients[c].state.handle_vote_reply(&reply) {
                Ok(Some(certificate)) => {
                    self.certificate_formed(certificate)?;
                    self.send_pending(c);
                }
                Ok(None) => {}
                Err(_) => self.report.replies_refused += 1,
            },
            Message::AccountInfoResponse(info) => {
                match self.clients[c].state.handle_account_info(name, &info) {
                    Ok(true) => self.transfer_finished(c),
                    Ok(false) => {}
                    Err(_) => self.report.replies_refused += 1,
                }
            }
            Message::Error(error) => {
                for request in self.clients[c].state.catch_up(&name, &error) {
                    self.client_send(c, a, &request);
                }
            }
            _ => self.report.replies_refused += 1,
        }
        Ok(())
    }

    /// An honest client's payment is confirmed by a quorum: hand the certificate to its
    /// recipient, as a payer hands over a receipt.
    fn transfer_finished(&mut self, c: usize) {
        self.report.transfers_completed += 1;
        let Some(certificate) = self.clients[c].state.sent_certificates().last().cloned() else {
            return;
        };
        if let Role::Honest { remaining } = &mut self.clients[c].role {
            *remaining = remaining.saturating_sub(1);
        }
        self.hand_over(certificate);
        self.schedule(1, Event::Tick { client: c });
    }

    fn hand_over(&mut self, certificate: CertifiedTransferOrder) {
        let recipient = certificate.value.transfer.recipient;
        if let Some(r) = self
            .clients
            .iter()
            .position(|r| r.state.account() == recipient)
        {
            // An invalid certificate here would be caught by the final ledger check.
            let _ = self.clients[r].state.receive_certificate(certificate);
        }
    }

    /// Sends the request of the transfer in progress to every authority still owing a reply.
    fn send_pending(&mut self, c: usize) {
        for a in 0..self.authorities.len() {
            let name = self.authorities[a].name;
            if let Some(request) = self.clients[c].state.request_for(&name) {
                self.client_send(c, a, &request);
            }
        }
    }

    fn tick(&mut self, c: usize) {
        let next = RETRY_US + self.rng.random_range(0..RETRY_US);
        self.schedule(next, Event::Tick { client: c });
        if matches!(self.clients[c].role, Role::DoubleSpender { .. }) {
            self.double_spender_tick(c);
            return;
        }
        // Keep lagging authorities in sync: resend one authority what it has not acknowledged.
        let a = self.rng.random_range(0..self.authorities.len());
        let name = self.authorities[a].name;
        for request in self.clients[c]
            .state
            .confirmations_missing_at(&name)
            .into_iter()
            .take(2)
        {
            self.client_send(c, a, &request);
        }
        if self.clients[c].state.pending().is_some() {
            self.send_pending(c);
            return;
        }
        let Role::Honest { remaining, .. } = self.clients[c].role else {
            return;
        };
        if remaining == 0 {
            return;
        }
        let roll = self.rng.random_range(0..100u8);
        if roll < 10 {
            self.overdraft(c);
        } else if roll < 20 {
            self.replay_last(c);
        } else {
            self.pay(c);
        }
    }

    fn pay(&mut self, c: usize) {
        let balance = self.clients[c].state.balance().units();
        let cap = u64::try_from(balance.clamp(0, 100)).unwrap_or(0);
        if cap == 0 {
            // Nothing to spend: this client's remaining payments cannot be valid.
            if let Role::Honest { remaining, .. } = &mut self.clients[c].role {
                *remaining = 0;
            }
            return;
        }
        let recipient = if self.rng.random_bool(0.1) {
            // Someone the committee has never seen.
            AccountId(self.rng.random())
        } else {
            let r = self.rng.random_range(0..self.clients.len());
            self.clients[r].state.account()
        };
        let amount = Amount::new(self.rng.random_range(1..=cap));
        match self.clients[c].state.transfer(recipient, amount, None) {
            Ok(_) => self.send_pending(c),
            Err(e) => panic!("simulated honest client refused a valid transfer: {e}"),
        }
    }

    /// An order for more than the whole money supply, sent behind the client state's back.
    fn overdraft(&mut self, c: usize) {
        self.report.overdrafts_attempted += 1;
        let supply = u64::try_from(self.genesis.total().units()).unwrap_or(u64::MAX);
        let state = &self.clients[c].state;
        let key = self.client_key(c);
        let order = TransferOrder::new(
            Transfer {
                sender: state.account(),
                recipient: state.account(),
                amount: Amount::new(supply.saturating_add(1)),
                sequence_number: state.next_sequence_number(),
                user_data: None,
            },
            &key,
        );
        for a in 0..self.authorities.len() {
            self.client_send(c, a, &Message::TransferOrder(order));
        }
    }

    /// Replays the last certificate and its order: both must be harmless.
    fn replay_last(&mut self, c: usize) {
        let Some(certificate) = self.clients[c].state.sent_certificates().last().cloned() else {
            return self.pay(c);
        };
        let a = self.rng.random_range(0..self.authorities.len());
        self.client_send(c, a, &Message::TransferOrder(certificate.value));
        self.client_send(
            c,
            a,
            &Message::ConfirmationOrder(ConfirmationOrder { certificate }),
        );
    }

    fn client_key(&self, c: usize) -> KeyPair {
        KeyPair::from_seed(self.clients[c].key_seed)
    }

    // ---- double spenders -------------------------------------------------------------------

    fn double_spender_tick(&mut self, c: usize) {
        if self.clients[c].state.pending().is_some() {
            // A certificate formed: confirm it like anyone else (and keep racing the other
            // order below, hoping for a second certificate).
            self.send_pending(c);
        }
        let Role::DoubleSpender { orders, halves, .. } = &self.clients[c].role else {
            return;
        };
        let (orders, halves) = match orders {
            Some(o) => (*o, halves.clone()),
            None => {
                self.report.double_spends_attempted += 1;
                let key = self.client_key(c);
                let state = &self.clients[c].state;
                let amount = Amount::new(self.config.initial_balance);
                let make = |recipient: AccountId| {
                    TransferOrder::new(
                        Transfer {
                            sender: state.account(),
                            recipient,
                            amount,
                            sequence_number: SequenceNumber::ZERO,
                            user_data: None,
                        },
                        &key,
                    )
                };
                let r1 = self.clients[self.rng.random_range(0..self.clients.len())]
                    .state
                    .account();
                let orders = [make(r1), make(AccountId(self.rng.random()))];
                // Split the committee in two; the Byzantine authority sees both orders.
                let mut all: Vec<usize> = (0..self.authorities.len()).collect();
                for i in (1..all.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    all.swap(i, j);
                }
                let mid = all.len() / 2;
                let mut halves = [all[..mid].to_vec(), all[mid..].to_vec()];
                if self.config.byzantine {
                    let byz = self.authorities.len() - 1;
                    for half in &mut halves {
                        if !half.contains(&byz) {
                            half.push(byz);
                        }
                    }
                }
                if let Role::DoubleSpender {
                    orders: o,
                    halves: h,
                    ..
                } = &mut self.clients[c].role
                {
                    *o = Some(orders);
                    *h = halves.clone();
                }
                (orders, halves)
            }
        };
        // The first round goes to opposite halves; later rounds race both orders to everyone,
        // so every authority sees the conflict.
        let first_round = matches!(&self.clients[c].role, Role::DoubleSpender { votes, .. }
            if votes.iter().all(BTreeMap::is_empty));
        for (i, order) in orders.iter().enumerate() {
            for a in 0..self.authorities.len() {
                if halves[i].contains(&a) || !first_round {
                    self.client_send(c, a, &Message::TransferOrder(*order));
                }
            }
        }
    }

    fn double_spender_receives(
        &mut self,
        c: usize,
        a: usize,
        message: Message,
    ) -> Result<(), SimFailure> {
        let name = self.authorities[a].name;
        match message {
            Message::Vote(vote) => {
                let Role::DoubleSpender { orders, votes, .. } = &mut self.clients[c].role else {
                    return Ok(());
                };
                let Some(orders) = orders else {
                    return Ok(());
                };
                let Some(key) = self.committee.public_key(&vote.authority) else {
                    self.report.replies_refused += 1;
                    return Ok(());
                };
                // The reply names the sequence number both orders share: the signature tells
                // which order it is for.
                let Some(i) = orders.iter().position(|o| {
                    vote.for_order(o).is_some()
                        && key.verify(&o.vote_bytes(), &vote.signature).is_ok()
                }) else {
                    self.report.replies_refused += 1;
                    return Ok(());
                };
                votes[i].insert(vote.authority, vote.signature);
                let weight: u64 = votes[i].keys().map(|n| self.committee.weight(n)).sum();
                if weight < self.committee.quorum_threshold() {
                    return Ok(());
                }
                let certificate = CertifiedTransferOrder {
                    value: orders[i],
                    signatures: votes[i].iter().map(|(n, s)| (*n, *s)).collect(),
                };
                let transfer = certificate.value.transfer;
                if self
                    .certificates
                    .contains_key(&(transfer.sender, transfer.sequence_number))
                {
                    // Already certified: a second certificate is only news if it conflicts,
                    // which `certificate_formed` reports.
                    if self
                        .decided
                        .get(&(transfer.sender, transfer.sequence_number))
                        != Some(&transfer)
                    {
                        self.certificate_formed(certificate)?;
                    }
                    return Ok(());
                }
                self.report.double_spends_certified += 1;
                self.certificate_formed(certificate.clone())?;
                if let Err(e) = self.clients[c].state.adopt_certificate(certificate) {
                    return Err(self.fail(format!("double spender could not adopt: {e}")));
                }
                self.send_pending(c);
            }
            Message::AccountInfoResponse(info) => {
                if let Ok(true) = self.clients[c].state.handle_account_info(name, &info) {
                    if let Some(certificate) = self.clients[c].state.sent_certificates().last() {
                        let certificate = certificate.clone();
                        self.hand_over(certificate);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ---- the end ---------------------------------------------------------------------------

    /// Delivers every certificate to every honest authority, loss-free, then checks that all
    /// honest authorities hold the same ledger, equal to genesis plus the certified transfers,
    /// and that every client's view of its balance matches it.
    fn final_sync(&mut self) -> Result<(), SimFailure> {
        // Credits still queued are delivered first (the engine would deliver them too).
        let mut pending: Vec<Scheduled> = Vec::new();
        while let Some(event) = self.queue.pop() {
            pending.push(event);
        }
        pending.reverse();
        for scheduled in pending {
            if let Event::CrossShard {
                authority,
                update,
                copy,
            } = scheduled.event
            {
                self.credit(authority, &update, copy)?;
            }
        }
        let certificates: Vec<CertifiedTransferOrder> =
            self.certificates.values().cloned().collect();
        for a in 0..self.authorities.len() {
            if self.authorities[a].byzantine.is_some() {
                continue;
            }
            for certificate in &certificates {
                let transfer = certificate.value.transfer;
                let shard = shard_of(&transfer.sender, self.config.shards);
                let message = Message::ConfirmationOrder(ConfirmationOrder {
                    certificate: certificate.clone(),
                });
                let handled = self.authorities[a].shards[shard.0 as usize].handle_message(&message);
                if let Some(e) = handled.error {
                    return Err(self.fail(format!(
                        "final sync: authority {a} refused certificate {transfer:?}: {e}"
                    )));
                }
                if let Some(update) = handled.cross_shard {
                    let amount = i128::from(update.certificate.value.transfer.amount.units());
                    self.authorities[a].in_flight += amount;
                    let key = (a, transfer.sender, transfer.sequence_number);
                    self.decide(transfer, "final sync")?;
                    self.debits.insert(key, true);
                    self.credit(a, &update, false)?;
                }
            }
        }
        self.check_conservation()?;
        if let Some((key, _)) = self.debits.iter().find(|(_, needs)| **needs) {
            return Err(self.fail(format!("exactly-once: debit {key:?} was never credited")));
        }

        // The expected ledger: genesis plus every certified transfer.
        let mut expected: BTreeMap<AccountId, i128> = self
            .genesis
            .accounts()
            .iter()
            .map(|(a, amount)| (*a, i128::from(amount.units())))
            .collect();
        for certificate in &certificates {
            let t = certificate.value.transfer;
            let amount = i128::from(t.amount.units());
            *expected.entry(t.sender).or_default() -= amount;
            *expected.entry(t.recipient).or_default() += amount;
        }
        for (a, authority) in self.authorities.iter().enumerate() {
            if authority.byzantine.is_some() {
                continue;
            }
            let mut ledger: BTreeMap<AccountId, i128> = BTreeMap::new();
            for shard in &authority.shards {
                for (account, state) in shard.accounts() {
                    ledger.insert(*account, state.balance.units());
                }
            }
            ledger.retain(|account, balance| *balance != 0 || expected.contains_key(account));
            let mut want = expected.clone();
            want.retain(|account, balance| *balance != 0 || ledger.contains_key(account));
            if ledger != want {
                let diff: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| ledger.get(k) != Some(v))
                    .take(3)
                    .collect();
                return Err(self.fail(format!(
                    "ledger: authority {a} disagrees with the certificates on {diff:?}"
                )));
            }
        }
        // Payers hand every receipt over; then each client's own view must match the ledger.
        for certificate in certificates {
            self.hand_over(certificate);
        }
        for (c, client) in self.clients.iter().enumerate() {
            let want = expected.get(&client.state.account()).copied().unwrap_or(0);
            if client.state.balance().units() != want {
                return Err(self.fail(format!(
                    "client {c} believes its balance is {}, the ledger says {want}",
                    client.state.balance()
                )));
            }
        }
        Ok(())
    }
}
