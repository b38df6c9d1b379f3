//! [`ShardNode`]: one shard of an authority, datagrams and frames in, effects out.

use crate::certs::{AppliedCertificate, CertificateReader};
use crate::counters::{Counter, ShardCounters};
use crate::links::{Arrival, CreditLinks, Transport};
use crate::log::{
    EncodedSnapshot, LinkState, Record, SNAPSHOT_ACCOUNT_BYTES, Snapshot, append_record,
    largest_pending_vote,
};
use crate::redeem::RedeemApprover;
use fastpay_authority::{
    AuthorityError, AuthorityShard, ConfirmationCheck, Confirmed, DepositError, OrderCheck,
    ShardTotals, Voted,
};
use fastpay_wire::codec::{
    CodecError, MIN_CERTIFICATE_BYTES, StoredParts, certificate_wire_size, peek_subject,
};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountQuery, BATCH, BatchVerifier, CertificateAnswer,
    CertificatesResponse, ConfirmationOrder, CrossShardUpdate, Datagrams, DepositBatch, ErrorCode,
    ErrorReply, LinkFrame, LinkPayload, MAX_PAGE, MIN_QUERY_BYTES, Message, MessageKind,
    RedeemRequest, SUPPLY_QUERY_BYTES, SUPPLY_RECOUNT, SequenceNumber, ShardId, ShardSupply,
    SignedTransferOrder, TransferOrder, VoteReply, decode, encode_into,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Log bytes after which a node asks for a snapshot (the default): bounds both the disk used
/// and the time a restart spends replaying, while a snapshot of a million accounts (about
/// 100 MB) is written rarely enough not to matter.
pub const SNAPSHOT_AFTER_BYTES: u64 = 64 << 20;

/// Datagrams handed over by other shards that a node queues for its next batch; more are
/// dropped (and counted), as a socket would drop them.
pub const FORWARD_QUEUE: usize = BATCH;

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// How each shard of the authority is reached (this shard's own entry is unused).
    pub transports: Vec<Transport>,
    /// Whether effects wait for their records to be durable (a data directory is in use),
    /// and the certificates applied go to a certificate store with them
    /// ([`ShardNode::take_log`]). Without it, nothing is logged, every effect is released at
    /// once, and certificate queries are answered [`CertificateAnswer::Pruned`].
    pub durable: bool,
    /// Log bytes after which [`ShardNode::snapshot_due`] says so.
    pub snapshot_after_bytes: u64,
    /// Load shedding: orders and queries that waited in the kernel longer than this (as the
    /// receive reports in [`Datagrams::waited`]) are refused as `Overloaded` without being
    /// checked; confirmations only past [`CONFIRMATION_SHED_FACTOR`] times it. `None` never
    /// sheds.
    pub shed_after: Option<Duration>,
}

/// How many times longer than an order a confirmation may wait before it is shed: a
/// confirmation finishes a payment whose votes the committee already paid for, and frees the
/// sender's account, so it is the last request worth dropping.
pub const CONFIRMATION_SHED_FACTOR: u32 = 4;

/// The shedding budget an authority uses unless told otherwise: far past the latency of a
/// shard that keeps up (a few milliseconds), well within a client's patience (seconds).
pub const DEFAULT_SHED_AFTER: Duration = Duration::from_millis(200);

impl NodeConfig {
    /// A shard of `num_shards` whose peers all run in the same process (reliable queues),
    /// logging its records when `durable`.
    pub fn in_process(num_shards: u32, durable: bool) -> Self {
        Self {
            transports: vec![Transport::Reliable; num_shards as usize],
            durable,
            snapshot_after_bytes: SNAPSHOT_AFTER_BYTES,
            shed_after: Some(DEFAULT_SHED_AFTER),
        }
    }
}

/// A request waiting for the batch's signature verdicts.
enum Pending {
    Order {
        peer: SocketAddr,
        size: usize,
        order: TransferOrder,
        range: Range<usize>,
    },
    Confirmation {
        peer: SocketAddr,
        size: usize,
        order: ConfirmationOrder,
        range: Range<usize>,
    },
}

/// Effects waiting until the log is durable up to `position`.
struct Held {
    position: u64,
    replies: Option<Datagrams>,
    /// When the batch whose replies these are was handed in.
    received: Duration,
    numbered: Vec<u64>,
    taken: Vec<u64>,
}

/// What [`ShardNode::take_log`] hands the runtime in one piece: framed records to make
/// durable, and the certificates they applied, which may be stored only once the records are
/// durable up to `position`.
#[derive(Debug, Default)]
pub struct LogBatch {
    /// Framed records, in order (see [`crate::log`]).
    pub records: Vec<u8>,
    /// The certificates the records applied, in order.
    pub certificates: Vec<AppliedCertificate>,
    /// The log position the records reach.
    pub position: u64,
}

impl LogBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.records.clear();
        self.certificates.clear();
        self.position = 0;
    }
}

/// One shard of an authority as a sans-IO state machine.
///
/// Inputs: a batch of datagrams from the socket ([`handle_batch`](Self::handle_batch)), a
/// frame from another shard ([`handle_frame`](Self::handle_frame)), "the log is durable up
/// to here" ([`durable`](Self::durable)), and the time, passed to each. Effects: records to
/// log with the certificates they applied ([`take_log`](Self::take_log)), replies to send
/// ([`poll_replies`](Self::poll_replies)), frames for other shards
/// ([`transmit`](Self::transmit)), and "snapshot due" ([`snapshot_due`](Self::snapshot_due)).
/// No reply, credit or acknowledgement is released before the records it depends on are
/// durable. Recovery ([`recover`](Self::recover)) feeds a snapshot and the logged records
/// back through the same code that made them.
pub struct ShardNode {
    shard: AuthorityShard,
    me: ShardId,
    num_shards: u32,
    links: CreditLinks,
    counters: Arc<ShardCounters>,
    verifier: BatchVerifier,
    pending: Vec<Pending>,
    /// Votes of this batch waiting for their root signature: who asked, and the leaf.
    to_seal: Vec<((SocketAddr, usize), usize)>,
    /// The votes the shard sealed for this batch.
    sealed: Vec<SignedTransferOrder>,
    /// Datagrams handed over by other shards, for the next batch.
    forwarded: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams this shard hands over, until the next transmit.
    forwards: Vec<LinkFrame>,
    durable: bool,
    replaying: bool,
    /// Framed records not yet taken by the runtime.
    log: Vec<u8>,
    scratch: Vec<u8>,
    /// Records produced so far: the log position.
    position: u64,
    durable_position: u64,
    log_bytes: u64,
    snapshot_after: u64,
    shed_after: Option<Duration>,
    held: VecDeque<Held>,
    spare_held: Vec<Held>,
    /// Replies released, with the time their batch was handed in.
    ready: VecDeque<(Datagrams, Duration)>,
    spare_replies: Vec<Datagrams>,
    replies: Option<Datagrams>,
    /// Certificates applied and not yet taken by the runtime (only when durable).
    applied: Vec<AppliedCertificate>,
    /// Where certificate queries are answered from.
    certificates: Option<Box<dyn CertificateReader>>,
    /// Certificates read for one query's answer, with their arrival indexes.
    page: Vec<(u64, fastpay_wire::CertifiedTransferOrder)>,
    /// Payments credited on this shard so far: the next one's arrival index.
    arrivals: u64,
    /// Signs redeem approvals, when the authority follows the primary chain.
    approver: Option<Box<dyn RedeemApprover>>,
    /// Verifies one redeem request's certificate (outside the batch's verifier).
    redeem_verifier: BatchVerifier,
    /// The time the current batch was handed in.
    now: Duration,
    /// The last supply count and when it was taken: recounted at most every
    /// [`SUPPLY_RECOUNT`], so that a flood of supply queries costs one pass a second.
    supply: Option<(Duration, ShardSupply)>,
    /// The snapshot being encoded a slice at a time, if one was cut.
    encoding: Option<SnapshotEncoding>,
}

/// A snapshot cut and not yet wholly encoded: its bytes so far (the account count, then the
/// accounts encoded), and what follows the accounts, fixed at the cut.
struct SnapshotEncoding {
    parts: StoredParts,
    /// Serializes as a [`Snapshot`]'s fields after the accounts.
    tail: (ShardTotals, LinkState, u64),
}

impl ShardNode {
    /// A node for `shard`, fresh from genesis, reporting into `counters`.
    pub fn new(shard: AuthorityShard, config: NodeConfig, counters: Arc<ShardCounters>) -> Self {
        let me = shard.shard();
        let num_shards = config.transports.len() as u32;
        Self {
            shard,
            me,
            num_shards,
            links: CreditLinks::new(me, config.transports),
            counters,
            verifier: BatchVerifier::new(),
            pending: Vec::new(),
            to_seal: Vec::new(),
            sealed: Vec::new(),
            forwarded: Vec::new(),
            forwards: Vec::new(),
            durable: config.durable,
            replaying: false,
            log: Vec::new(),
            scratch: Vec::new(),
            position: 0,
            durable_position: 0,
            log_bytes: 0,
            snapshot_after: config.snapshot_after_bytes.max(1),
            shed_after: config.shed_after,
            held: VecDeque::new(),
            spare_held: Vec::new(),
            ready: VecDeque::new(),
            spare_replies: Vec::new(),
            replies: None,
            applied: Vec::new(),
            certificates: None,
            page: Vec::new(),
            arrivals: 0,
            approver: None,
            redeem_verifier: BatchVerifier::new(),
            now: Duration::ZERO,
            supply: None,
            encoding: None,
        }
    }

    /// Approves redeems on the primary chain with `approver` (without one, redeem requests
    /// are refused as `PrimaryUnavailable`).
    pub fn set_redeem_approver(&mut self, approver: Box<dyn RedeemApprover>) {
        self.approver = Some(approver);
    }

    /// Answers certificate queries from `reader` (without one, they are answered
    /// [`CertificateAnswer::Pruned`]).
    pub fn set_certificate_reader(&mut self, reader: Box<dyn CertificateReader>) {
        self.certificates = Some(reader);
    }

    /// A node for `shard` recovered from its last snapshot and the records logged since, in
    /// order: each record goes through the code that made it, without logging it again.
    pub fn recover(
        shard: AuthorityShard,
        config: NodeConfig,
        counters: Arc<ShardCounters>,
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = Record>,
    ) -> Self {
        let mut node = Self::new(shard, config, counters);
        node.replaying = true;
        if let Some(snapshot) = snapshot {
            node.shard.restore(snapshot.shard);
            node.links.restore(snapshot.links);
            node.arrivals = snapshot.arrivals;
        }
        for record in records {
            node.replay(record);
        }
        node.replaying = false;
        node.links.recovered();
        node.publish_deposits();
        node
    }

    fn replay(&mut self, record: Record) {
        match record {
            Record::Vote(vote) => {
                self.shard.restore_vote(vote);
            }
            Record::Confirm(order) => {
                let _ = self.apply_confirmation(&order);
            }
            Record::Credit {
                from,
                sequence,
                update,
            } => self.take_credit(ShardId(from), sequence, &update, Transport::Reliable),
            Record::RefusedCredit { from, sequence } => self.links.taken(ShardId(from), sequence),
            Record::Deposits(batch) => {
                let _ = self.credit_deposits(&batch);
            }
        }
    }

    /// Credits deposits from the primary chain: applies `batch` (which must continue from the
    /// shard's deposit cursor, see [`DepositBatch`]) and logs it, so that it is durable before
    /// any reply that shows its money leaves. Returns the units credited.
    pub fn credit_deposits(&mut self, batch: &DepositBatch) -> Result<u128, DepositError> {
        match self.shard.credit_deposits(batch) {
            Ok(units) => {
                self.record(|| Record::Deposits(batch.clone()));
                self.counters
                    .add(Counter::DepositsCredited, batch.credits.len() as u64);
                self.publish_deposits();
                Ok(units)
            }
            Err(error) => {
                self.counters.bump(Counter::DepositBatchesRefused);
                Err(error)
            }
        }
    }

    /// Sets the deposit gauges from the shard's durable state.
    fn publish_deposits(&self) {
        let deposited = u64::try_from(self.shard.deposited()).unwrap_or(u64::MAX);
        self.counters.set(Counter::DepositedUnits, deposited);
        self.counters.set(
            Counter::DepositNextIndex,
            self.shard.deposit_cursor().next_index,
        );
    }

    /// After recovery: `bytes` of log already on disk since the last snapshot count towards
    /// the next one, as if this incarnation had written them.
    pub fn count_recovered_log(&mut self, bytes: u64) {
        self.log_bytes = self.log_bytes.saturating_add(bytes);
    }

    /// The shard state.
    pub fn shard(&self) -> &AuthorityShard {
        &self.shard
    }

    /// The credit links (numbering, outbox, marks), for inspection.
    pub fn links(&self) -> &CreditLinks {
        &self.links
    }

    /// Credits not yet acknowledged by their recipients: the runtime stops reading new
    /// requests while this is too large.
    pub fn backlog(&self) -> usize {
        self.links.unacked()
    }

    /// Whether datagrams handed over by other shards wait for a batch.
    pub fn has_forwarded(&self) -> bool {
        !self.forwarded.is_empty()
    }

    /// How many datagrams the next batch can take from the socket: a batch's replies (one
    /// per datagram, its own and those handed over) must fit one reply buffer.
    pub fn batch_room(&self) -> usize {
        BATCH.saturating_sub(self.forwarded.len())
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Processes a batch: every datagram of `inputs`, then those other shards handed over.
    /// Route and decode each, run the cheap checks and queue the signatures that remain,
    /// verify them all at once, then commit in arrival order.
    pub fn handle_batch(&mut self, now: Duration, inputs: &Datagrams) {
        self.counters.bump(Counter::Batches);
        self.now = now;
        self.verifier.clear();
        self.pending.clear();
        let mut replies = self.spare_replies.pop().unwrap_or_default();
        replies.clear();
        self.replies = Some(replies);
        for i in 0..inputs.len() {
            let (peer, bytes, truncated) = inputs.get(i);
            if truncated {
                self.counters.bump(Counter::DecodeError);
                continue;
            }
            self.admit(peer, bytes, inputs.waited(i), true);
        }
        let forwarded = std::mem::take(&mut self.forwarded);
        for (peer, bytes) in &forwarded {
            self.admit(*peer, bytes, Duration::ZERO, false);
        }
        self.forwarded = forwarded;
        self.forwarded.clear();
        if !self.pending.is_empty() {
            // A confirmation may need no signature at all (a committee of one, whose own
            // vote is skipped): it still has to be committed.
            if !self.verifier.is_empty() {
                // Votes under a root already queued in this batch take its verdict: not checks.
                self.counters
                    .add(Counter::SignaturesChecked, self.verifier.checks() as u64);
                self.verifier.verify();
            }
            self.commit();
        }
        let replies = self.replies.take();
        self.seal(now, replies);
    }

    /// Takes a frame from another shard of this authority: its acknowledgement, and a credit
    /// to apply (once, in order) or a datagram for the next batch.
    pub fn handle_frame(&mut self, now: Duration, frame: LinkFrame) {
        let from = frame.from;
        if frame.to != self.me || from == self.me || from.0 >= self.num_shards {
            self.counters.bump(Counter::LinkRefused);
            return;
        }
        self.links.acknowledged(now, from, frame.ack);
        match frame.payload {
            LinkPayload::Ack => {}
            LinkPayload::Credit { sequence, update } => match self.links.arrival(from, sequence) {
                Arrival::Next => {
                    let transport = self.links.transport(from).unwrap_or(Transport::Lossy);
                    self.take_credit(from, sequence, &update, transport);
                    self.seal(now, None);
                }
                Arrival::Duplicate => self.counters.bump(Counter::DuplicateCredit),
                Arrival::Early => {}
            },
            LinkPayload::Forward { peer, datagram } => {
                if self.forwarded.len() < FORWARD_QUEUE {
                    self.forwarded.push((peer.into(), datagram));
                } else {
                    self.counters.bump(Counter::HandoverDropped);
                }
            }
        }
    }

    /// The log is durable up to `position` (from [`take_log`](Self::take_log)): release what
    /// waited for it.
    pub fn durable(&mut self, position: u64) {
        self.durable_position = self.durable_position.max(position);
        while self
            .held
            .front()
            .is_some_and(|h| h.position <= self.durable_position)
        {
            let Some(mut held) = self.held.pop_front() else {
                break;
            };
            self.links.made_durable(&held.numbered, &held.taken);
            if let Some(replies) = held.replies.take() {
                self.ready.push_back((replies, held.received));
            }
            self.spare_held.push(held);
        }
    }

    // ---- effects ------------------------------------------------------------------------

    /// Appends the records produced since the last call to `out.records` and the certificates
    /// they applied to `out.certificates`, and sets `out.position` to the position they reach;
    /// returns whether there was anything new. Pass the position to [`durable`](Self::durable)
    /// once the records are synced; the certificates may be stored from then on. After
    /// [`recover`](Self::recover) the first take holds the certificates of the replayed
    /// records (durable already) and no records, for a store that may have lost its latest
    /// additions.
    pub fn take_log(&mut self, out: &mut LogBatch) -> bool {
        out.position = self.position;
        if self.log.is_empty() && self.applied.is_empty() {
            return false;
        }
        out.records.extend_from_slice(&self.log);
        self.log.clear();
        out.certificates.append(&mut self.applied);
        true
    }

    /// Takes the replies still waiting for the log to be durable into `out`, each with the
    /// time its batch was handed in, for a runtime that sends them itself once the log is
    /// durable up to the position of the last [`take_log`](Self::take_log) (every one of them
    /// waits for that position or an earlier one): a disk thread can then send them the moment
    /// its sync returns, rather than when the shard next looks. The credits and
    /// acknowledgements that wait with them stay here until [`durable`](Self::durable).
    /// Returns whether it took any.
    pub fn take_held_replies(&mut self, out: &mut Vec<(Datagrams, Duration)>) -> bool {
        let before = out.len();
        for held in &mut self.held {
            if let Some(replies) = held.replies.take() {
                out.push((replies, held.received));
            }
        }
        out.len() > before
    }

    /// The log position reached so far (records produced, taken or not).
    pub fn log_position(&self) -> u64 {
        self.position
    }

    /// The next batch of replies whose records are durable; hand it back with
    /// [`recycle`](Self::recycle) once sent.
    pub fn poll_replies(&mut self) -> Option<Datagrams> {
        self.poll_replies_timed().map(|(replies, _)| replies)
    }

    /// Like [`poll_replies`](Self::poll_replies), with the `now` at which the batch that
    /// produced these replies was handed in (so the runtime can measure how long requests
    /// waited for their replies, durability included).
    pub fn poll_replies_timed(&mut self) -> Option<(Datagrams, Duration)> {
        self.ready.pop_front()
    }

    /// Returns a reply batch's buffers for reuse.
    pub fn recycle(&mut self, mut replies: Datagrams) {
        replies.clear();
        self.spare_replies.push(replies);
    }

    /// Frames for other shards due at `now` (handed-over datagrams, credits that may leave,
    /// acknowledgements), appended to `out`.
    pub fn transmit(&mut self, now: Duration, out: &mut Vec<LinkFrame>) {
        out.append(&mut self.forwards);
        self.links.transmit(now, out);
        self.counters
            .set(Counter::Outbox, self.links.unacked() as u64);
    }

    /// When [`transmit`](Self::transmit) next has something due without any input.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.links.next_deadline()
    }

    /// Whether the log has grown enough since the last snapshot to deserve one.
    pub fn snapshot_due(&self) -> bool {
        self.durable && self.log_bytes >= self.snapshot_after
    }

    /// Whether a snapshot will soon be due (the log has used seven eighths of its
    /// allowance): time to prepare the buffer it will be encoded into, away from the shard.
    pub fn snapshot_near(&self) -> bool {
        self.durable && self.log_bytes >= self.snapshot_after - self.snapshot_after / 8
    }

    /// Bytes enough for the snapshot's encoding as the state stands, with an eighth more for
    /// what it gains before the snapshot is taken: every account at its largest without a
    /// pending vote, and each pending vote at its largest.
    pub fn snapshot_capacity(&self) -> usize {
        let accounts = self.shard.accounts();
        let pending = accounts.values().filter(|a| a.pending.is_some()).count();
        let bytes = accounts.len() * SNAPSHOT_ACCOUNT_BYTES
            + pending * largest_pending_vote(self.shard.vote_scheme())
            + 4096;
        bytes + bytes / 8
    }

    /// The state's snapshot, encoded into a buffer of [`Self::snapshot_capacity`].
    pub fn snapshot(&mut self) -> Result<EncodedSnapshot, CodecError> {
        let buffer = Vec::with_capacity(self.snapshot_capacity());
        self.snapshot_into(buffer)
    }

    /// The state's snapshot, encoded at once over `buffer`'s bytes: [`begin_snapshot`]
    /// then [`encode_snapshot`] with no limit.
    ///
    /// [`begin_snapshot`]: Self::begin_snapshot
    /// [`encode_snapshot`]: Self::encode_snapshot
    pub fn snapshot_into(&mut self, buffer: Vec<u8>) -> Result<EncodedSnapshot, CodecError> {
        self.begin_snapshot(buffer)?;
        loop {
            if let Some(snapshot) = self.encode_snapshot(usize::MAX)? {
                return Ok(snapshot);
            }
        }
    }

    /// Cuts a snapshot of the state as it stands, which includes every record produced so
    /// far (so the runtime must have taken the log, and queued it, first; records produced
    /// from now on must go where a store keeps what the snapshot does not cover). The
    /// snapshot is then encoded over `buffer`'s bytes a slice at a time by
    /// [`encode_snapshot`](Self::encode_snapshot) while the node goes on: every account is
    /// encoded as it was at the cut, whatever changed it since. `buffer` is best one of
    /// [`Self::snapshot_capacity`] bytes with its pages touched, so encoding only writes;
    /// one too short is grown. A snapshot still being encoded is dropped.
    pub fn begin_snapshot(&mut self, buffer: Vec<u8>) -> Result<(), CodecError> {
        self.log_bytes = 0;
        self.encoding = None;
        let (accounts, totals) = self.shard.begin_cut();
        let mut parts = StoredParts::over(buffer);
        parts
            .push(&accounts)
            .inspect_err(|_| self.shard.end_cut())?;
        self.encoding = Some(SnapshotEncoding {
            parts,
            tail: (totals, self.links.state(), self.arrivals),
        });
        Ok(())
    }

    /// Whether a snapshot was cut and is not wholly encoded yet.
    pub fn snapshot_encoding(&self) -> bool {
        self.encoding.is_some()
    }

    /// Encodes `accounts` more accounts (at least one) of the snapshot being encoded;
    /// returns it once whole. Fails only past the stored encoding's size limit, which drops
    /// the snapshot.
    pub fn encode_snapshot(
        &mut self,
        accounts: usize,
    ) -> Result<Option<EncodedSnapshot>, CodecError> {
        let Some(encoding) = self.encoding.as_mut() else {
            return Ok(None);
        };
        let whole = self.shard.encode_cut(&mut encoding.parts, accounts);
        if !whole.inspect_err(|_| {
            self.encoding = None;
            self.shard.end_cut();
        })? {
            return Ok(None);
        }
        let Some(mut encoding) = self.encoding.take() else {
            return Ok(None);
        };
        encoding.parts.push(&encoding.tail)?;
        Ok(Some(EncodedSnapshot::from_bytes(
            encoding.parts.into_bytes(),
        )))
    }

    // ---- the pipeline -------------------------------------------------------------------

    /// Holds the effects produced so far until the log is durable up to here.
    fn seal(&mut self, now: Duration, replies: Option<Datagrams>) {
        let mut held = self.spare_held.pop().unwrap_or(Held {
            position: 0,
            replies: None,
            received: Duration::ZERO,
            numbered: Vec::new(),
            taken: Vec::new(),
        });
        held.position = self.position;
        held.replies = replies;
        held.received = now;
        self.links.marks(&mut held.numbered, &mut held.taken);
        self.held.push_back(held);
        if !self.durable {
            self.durable_position = self.position;
        }
        self.durable(self.durable_position);
    }

    /// The arrival index of a payment credited now (replay gives each the same one again).
    fn next_arrival(&mut self) -> u64 {
        let arrival = self.arrivals;
        self.arrivals = self.arrivals.saturating_add(1);
        arrival
    }

    fn record(&mut self, record: impl FnOnce() -> Record) {
        if !self.durable || self.replaying {
            return;
        }
        let before = self.log.len();
        if append_record(&record(), &mut self.scratch, &mut self.log) {
            self.position += 1;
            self.log_bytes += (self.log.len() - before) as u64;
        }
    }

    /// Applies a confirmation whose signatures verified (or that the log says was applied):
    /// debits the sender once and numbers the credit it owes another shard.
    fn apply_confirmation(
        &mut self,
        order: &ConfirmationOrder,
    ) -> Result<Confirmed, AuthorityError> {
        // A certificate with more votes than a quorum (every member's, say) is applied,
        // logged, stored and forwarded with a quorum's only: what a certificate query and a
        // confirmation must carry stays bounded (Committee::max_certificate_wire_size).
        let keep = self.shard.committee().quorum_prefix(&order.certificate);
        let trimmed;
        let order = match keep < order.certificate.signatures.len() {
            true => {
                let mut copy = order.clone();
                copy.certificate.signatures.truncate(keep);
                trimmed = copy;
                &trimmed
            }
            false => order,
        };
        let mut confirmed = self.shard.confirm_verified(order)?;
        if confirmed.applied {
            self.record(|| Record::Confirm(order.clone()));
            let t = order.certificate.value.transfer;
            let credited_here =
                t.recipient != t.sender && self.shard.shard_of(&t.recipient) == self.me;
            let arrival = credited_here.then(|| self.next_arrival());
            if self.durable {
                self.applied.push(AppliedCertificate {
                    certificate: order.certificate.clone(),
                    arrival,
                });
            }
        }
        if let Some(update) = confirmed.cross_shard.take() {
            if self.links.transport(update.recipient_shard) == Some(Transport::Lossy) {
                self.counters.bump(Counter::LinkCredits);
            }
            self.links.number(update);
        }
        Ok(confirmed)
    }

    /// Takes the next credit from `from`: applies it, checking its certificate when it came
    /// over a lossy transport, and records the outcome. A refused credit still moves the link
    /// on (it would be refused again forever) and replays as nothing.
    fn take_credit(
        &mut self,
        from: ShardId,
        sequence: u64,
        update: &CrossShardUpdate,
        transport: Transport,
    ) {
        let outcome = match transport {
            Transport::Reliable => self.shard.apply_cross_shard_update(update),
            // The batch's verifier is idle between batches; its verified roots serve credits.
            Transport::Lossy => self
                .shard
                .handle_cross_shard_update_with(update, &mut self.verifier),
        };
        self.links.taken(from, sequence);
        match outcome {
            Ok(()) => {
                self.counters.bump(Counter::Credited);
                let arrival = Some(self.next_arrival());
                if self.durable {
                    self.applied.push(AppliedCertificate {
                        certificate: update.certificate.clone(),
                        arrival,
                    });
                }
                self.record(|| Record::Credit {
                    from: from.0,
                    sequence,
                    update: update.clone(),
                });
            }
            Err(e) => {
                self.counters.bump(Counter::for_error(&e));
                self.record(|| Record::RefusedCredit {
                    from: from.0,
                    sequence,
                });
            }
        }
    }

    /// Decodes and routes one datagram that `waited` in the kernel, sheds it if it waited too
    /// long, and runs the cheap checks. Only datagrams that decode are handed over to another
    /// shard: garbage costs no queue space and no copy.
    fn admit(&mut self, peer: SocketAddr, bytes: &[u8], waited: Duration, may_hand_over: bool) {
        // Shed before decoding: under overload most datagrams read are shed, and reading the
        // subject at fixed offsets costs a fraction of a decode.
        if self.shed(peer, bytes, waited) {
            return;
        }
        let (header, message) = match decode(bytes) {
            Ok(decoded) => decoded,
            Err(_) => {
                self.counters.bump(Counter::DecodeError);
                return;
            }
        };
        if header.shard != self.me {
            if header.shard.0 >= self.num_shards || !may_hand_over {
                self.counters.bump(Counter::NoSuchShard);
                return;
            }
            self.counters.bump(Counter::WrongShard);
            self.forwards.push(LinkFrame {
                from: self.me,
                to: header.shard,
                ack: self.links.durable_taken_from(header.shard),
                payload: LinkPayload::Forward {
                    peer: peer.into(),
                    datagram: bytes.to_vec(),
                },
            });
            return;
        }
        let size = bytes.len();
        match message {
            Message::TransferOrder(order) => {
                match self.shard.check_transfer_order(&order, &mut self.verifier) {
                    Ok(OrderCheck::Replay(vote)) => {
                        self.counters.bump(Counter::Voted);
                        self.reply(peer, size, &Message::Vote(VoteReply::of(&vote)));
                    }
                    Ok(OrderCheck::Verify(index)) => self.pending.push(Pending::Order {
                        peer,
                        size,
                        order,
                        range: index..index + 1,
                    }),
                    Err(e) => self.refuse(
                        (peer, size),
                        &e,
                        order.transfer.sender,
                        order.transfer.sequence_number,
                    ),
                }
            }
            Message::ConfirmationOrder(order) => {
                let t = order.certificate.value.transfer;
                match self
                    .shard
                    .check_confirmation_order(&order, &mut self.verifier)
                {
                    Ok(ConfirmationCheck::AlreadyApplied(mut info)) => {
                        self.counters.bump(Counter::Confirmed);
                        // An acknowledgement needs no pending vote, and without it the reply
                        // always fits the confirmation.
                        info.pending = None;
                        self.reply(peer, size, &Message::AccountInfoResponse(info));
                    }
                    Ok(ConfirmationCheck::Verify(range)) => {
                        self.pending.push(Pending::Confirmation {
                            peer,
                            size,
                            order,
                            range,
                        })
                    }
                    Err(e) => self.refuse((peer, size), &e, t.sender, t.sequence_number),
                }
            }
            // A query shorter than a padded state query is answered by nothing (an answer
            // or a refusal could be as large as it).
            Message::AccountInfoRequest(_) if size < MIN_QUERY_BYTES => {
                self.counters.bump(Counter::AmplificationRefused);
            }
            Message::AccountInfoRequest(request) if request.query != AccountQuery::State => {
                self.answer_certificates(peer, size, &request);
            }
            Message::AccountInfoRequest(request) => {
                match self.shard.handle_account_info_request(&request) {
                    Ok(info) => {
                        self.counters.bump(Counter::Queried);
                        self.reply(peer, size, &Message::AccountInfoResponse(info));
                    }
                    Err(e) => self.refuse((peer, size), &e, request.account, SequenceNumber::ZERO),
                }
            }
            Message::RedeemRequest(request) => self.answer_redeem(peer, size, &request),
            Message::SupplyRequest(_) if size < SUPPLY_QUERY_BYTES => {
                self.counters.bump(Counter::AmplificationRefused);
            }
            Message::SupplyRequest(_) => {
                let supply = self.supply_count();
                self.counters.bump(Counter::Queried);
                self.reply(peer, size, &Message::Supply(supply));
            }
            // Credits travel only over the links between shards, never through the public
            // port: see `AuthorityShard`.
            Message::RedeemApproval(_)
            | Message::CrossShardUpdate(_)
            | Message::Vote(_)
            | Message::AccountInfoResponse(_)
            | Message::Error(_)
            | Message::ShardLink(_)
            | Message::Certificates(_)
            | Message::Supply(_) => self.counters.bump(Counter::Unexpected),
        }
    }

    /// The shard's supply as counted at most [`SUPPLY_RECOUNT`] ago.
    fn supply_count(&mut self) -> ShardSupply {
        match self.supply {
            Some((at, supply))
                if self.now.saturating_sub(at) < SUPPLY_RECOUNT && at <= self.now =>
            {
                supply
            }
            _ => {
                let supply = self.shard.supply();
                self.supply = Some((self.now, supply));
                supply
            }
        }
    }

    /// Answers a redeem request: this authority's approval if the certificate pays a
    /// primary-chain address with a quorum's valid votes (see `crate::redeem`).
    fn answer_redeem(&mut self, peer: SocketAddr, size: usize, request: &RedeemRequest) {
        let t = request.certificate.value.transfer;
        if self.approver.is_none() {
            let refusal = ErrorReply {
                code: ErrorCode::PrimaryUnavailable,
                account: t.sender,
                sequence_number: t.sequence_number,
            };
            return self.reply(peer, size, &Message::Error(refusal));
        }
        let address = match self
            .shard
            .verify_redeem(&request.certificate, &mut self.redeem_verifier)
        {
            Ok(address) => address,
            Err(e) => return self.refuse((peer, size), &e, t.sender, t.sequence_number),
        };
        let reply = match self.approver.as_ref().and_then(|a| a.approve(&t, address)) {
            Some(approval) => {
                self.counters.bump(Counter::RedeemsApproved);
                Message::RedeemApproval(approval)
            }
            None => Message::Error(ErrorReply {
                code: ErrorCode::PrimaryUnavailable,
                account: t.sender,
                sequence_number: t.sequence_number,
            }),
        };
        self.reply(peer, size, &reply);
    }

    /// Refuses a request as `Overloaded` when it waited past its budget: by then the shard is
    /// behind, and answering stale requests first would make every request late. A refusal
    /// costs a read of the request's subject at fixed offsets (no decode) and a small reply
    /// instead of signature checks, and tells the client at once to retry later. Returns
    /// whether the request was shed.
    fn shed(&mut self, peer: SocketAddr, datagram: &[u8], waited: Duration) -> bool {
        let Some(budget) = self.shed_after else {
            return false;
        };
        if waited <= budget {
            return false;
        }
        let Some((kind, account, sequence_number)) = peek_subject(datagram) else {
            return false;
        };
        let counter = match kind {
            MessageKind::TransferOrder => Counter::ShedOrders,
            MessageKind::AccountInfoRequest => Counter::ShedQueries,
            MessageKind::ConfirmationOrder
                if waited > budget.saturating_mul(CONFIRMATION_SHED_FACTOR) =>
            {
                Counter::ShedConfirmations
            }
            _ => return false,
        };
        self.counters.bump(counter);
        let refusal = ErrorReply {
            code: ErrorCode::Overloaded,
            account,
            sequence_number,
        };
        self.reply(peer, datagram.len(), &Message::Error(refusal));
        true
    }

    /// Answers a query for `account`'s payments received from arrival index `from` on with as
    /// many as fit in the query's `size`. The work is bounded by what the answer can carry:
    /// no more certificates are read than `size` could hold at [`MIN_CERTIFICATE_BYTES`] each
    /// (and at least one, to tell "nothing here" from "nothing fits"), each is sized once,
    /// and the answer is encoded once.
    fn answer_received(
        &mut self,
        peer: SocketAddr,
        size: usize,
        account: AccountId,
        from: u64,
        reader: &dyn CertificateReader,
    ) {
        let answer = |certificates, next, end| {
            Message::Certificates(CertificatesResponse {
                account,
                query: AccountQuery::Received(from),
                answer: CertificateAnswer::Received {
                    certificates,
                    next,
                    end,
                },
            })
        };
        // The answer's size without certificates (its fields are fixed-width).
        let mut buffer = [0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE];
        let Ok(empty) = encode_into(&answer(Vec::new(), from, 0), self.me, &mut buffer) else {
            return self.counters.bump(Counter::OtherRefusal);
        };
        let room = size.saturating_sub(empty);
        let max = (room / MIN_CERTIFICATE_BYTES).clamp(1, MAX_PAGE);
        let mut page = std::mem::take(&mut self.page);
        page.clear();
        let Ok(end) = reader.received(&account, from, max, &mut page) else {
            self.page = page;
            return self.counters.bump(Counter::OtherRefusal);
        };
        // The longest prefix that fits: each certificate adds its own size to the answer.
        let mut used = 0usize;
        let keep = page
            .iter()
            .take_while(|(_, c)| {
                used = used.saturating_add(certificate_wire_size(c));
                used <= room
            })
            .count();
        // A full read may have more after it; otherwise the list ends at the store's end (no
        // payment below it is missing from the store).
        let more = page.len() == max || keep < page.len();
        let next = match page[..keep].last() {
            Some((last, _)) if more => last.saturating_add(1),
            Some(_) => end.max(from),
            // Nothing to give: the reader is at the end.
            None if page.is_empty() => end.max(from),
            // Nothing fits this query: no progress.
            None => from,
        };
        let message = answer(
            page[..keep].iter().map(|(_, c)| c.clone()).collect(),
            next,
            end,
        );
        self.counters.bump(Counter::CertificateQueries);
        self.counters.add(Counter::CertificatesServed, keep as u64);
        self.reply(peer, size, &message);
        self.page = page;
    }

    /// Answers a certificate query from the store: the certificate asked for, or as many
    /// received certificates as fit in the query's own size, or a typed answer saying it is
    /// not here. The answer is never larger than the query.
    fn answer_certificates(&mut self, peer: SocketAddr, size: usize, request: &AccountInfoRequest) {
        let account = request.account;
        let info = match self.shard.account_info(&account) {
            Ok(info) => info,
            Err(e) => return self.refuse((peer, size), &e, account, SequenceNumber::ZERO),
        };
        let answer = match request.query {
            AccountQuery::State => return,
            AccountQuery::Certificate(sequence) if sequence >= info.next_sequence_number => {
                CertificateAnswer::NotApplied {
                    next_sequence_number: info.next_sequence_number,
                }
            }
            AccountQuery::Certificate(sequence) => {
                // Applied this round and not yet handed to the store: from here.
                let recent = self
                    .applied
                    .iter()
                    .rev()
                    .find(|a| a.key() == (account, sequence))
                    .map(|a| Ok(Some(a.certificate.clone())));
                match recent.or_else(|| {
                    self.certificates
                        .as_ref()
                        .map(|r| r.certificate(&account, sequence))
                }) {
                    Some(Ok(Some(certificate))) => CertificateAnswer::Certificate(certificate),
                    Some(Ok(None)) | None => CertificateAnswer::Pruned,
                    Some(Err(_)) => return self.counters.bump(Counter::OtherRefusal),
                }
            }
            AccountQuery::Received(from) => {
                let Some(reader) = self.certificates.take() else {
                    self.counters.bump(Counter::CertificateQueries);
                    let answer = Message::Certificates(CertificatesResponse {
                        account,
                        query: request.query,
                        answer: CertificateAnswer::Pruned,
                    });
                    return self.reply(peer, size, &answer);
                };
                self.answer_received(peer, size, account, from, reader.as_ref());
                self.certificates = Some(reader);
                return;
            }
        };
        self.counters.bump(Counter::CertificateQueries);
        if matches!(answer, CertificateAnswer::Certificate(_)) {
            self.counters.bump(Counter::CertificatesServed);
        }
        let message = Message::Certificates(CertificatesResponse {
            account,
            query: request.query,
            answer,
        });
        self.reply(peer, size, &message);
    }

    /// Applies the requests whose signatures all verified, in arrival order.
    fn commit(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for request in &pending {
            let (peer, transfer, range) = match request {
                Pending::Order {
                    peer,
                    size,
                    order,
                    range,
                } => ((*peer, *size), order.transfer, range),
                Pending::Confirmation {
                    peer,
                    size,
                    order,
                    range,
                } => ((*peer, *size), order.certificate.value.transfer, range),
            };
            if !self.verifier.verdicts()[range.clone()].iter().all(|ok| *ok) {
                let error = AuthorityError::InvalidSignature;
                self.refuse(peer, &error, transfer.sender, transfer.sequence_number);
                continue;
            }
            let outcome = match request {
                Pending::Order { order, .. } => match self.shard.vote_verified(order) {
                    Ok(Voted::Signed(vote)) => {
                        self.counters.bump(Counter::Voted);
                        self.record(|| Record::Vote(vote));
                        Ok(Message::Vote(VoteReply::of(&vote)))
                    }
                    Ok(Voted::Unsealed(leaf)) => {
                        self.to_seal.push((peer, leaf));
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Pending::Confirmation { order, .. } => {
                    self.apply_confirmation(order).map(|confirmed| {
                        self.counters.bump(Counter::Confirmed);
                        Message::AccountInfoResponse(confirmed.response)
                    })
                }
            };
            match outcome {
                Ok(reply) => self.reply(peer.0, peer.1, &reply),
                Err(e) => self.refuse(peer, &e, transfer.sender, transfer.sequence_number),
            }
        }
        // Hand the (empty) buffer back so its capacity is reused.
        self.pending = pending;
        self.pending.clear();
        self.sign_batch();
    }

    /// Signs the batch's votes with one root signature (batched votes), logs them, and
    /// answers every order that asked for one.
    fn sign_batch(&mut self) {
        if self.to_seal.is_empty() {
            return;
        }
        let mut sealed = std::mem::take(&mut self.sealed);
        sealed.clear();
        sealed.extend_from_slice(self.shard.seal_votes());
        for vote in &sealed {
            self.record(|| Record::Vote(*vote));
        }
        let to_seal = std::mem::take(&mut self.to_seal);
        for &(peer, leaf) in &to_seal {
            match sealed.get(leaf) {
                Some(vote) => {
                    self.counters.bump(Counter::Voted);
                    self.reply(peer.0, peer.1, &Message::Vote(VoteReply::of(vote)));
                }
                // `vote_verified` numbered the leaf in the batch `seal_votes` signed.
                None => self.counters.bump(Counter::SendDropped),
            }
        }
        self.to_seal = to_seal;
        self.to_seal.clear();
        self.sealed = sealed;
    }

    /// Refuses the request of `(peer, size)`.
    fn refuse(
        &mut self,
        (peer, size): (SocketAddr, usize),
        error: &AuthorityError,
        account: AccountId,
        sequence_number: SequenceNumber,
    ) {
        self.counters.bump(Counter::for_error(error));
        self.reply(
            peer,
            size,
            &Message::Error(error.reply(account, sequence_number)),
        );
    }

    /// Answers a request of `size` bytes from `peer`. Source addresses can be forged, so a
    /// reply larger than its request is not sent (and is counted): nobody can use an
    /// authority to amplify traffic towards a victim.
    fn reply(&mut self, peer: SocketAddr, size: usize, message: &Message) {
        let Some(replies) = self.replies.as_mut() else {
            return;
        };
        let Some(buffer) = replies.next_buffer(peer) else {
            self.counters.bump(Counter::SendDropped);
            return;
        };
        match encode_into(message, self.me, buffer) {
            Ok(len) if len <= size => replies.commit(len),
            Ok(_) => self.counters.bump(Counter::AmplificationRefused),
            Err(_) => self.counters.bump(Counter::SendDropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{decode_log, new_group, seal_group};

    /// Everything the node has to log, which must be something.
    fn take(node: &mut ShardNode) -> LogBatch {
        let mut taken = LogBatch::default();
        assert!(node.take_log(&mut taken), "nothing to log");
        taken
    }

    /// The records of `take_log` as the store writes them: one group.
    fn as_group(records: &[u8]) -> Vec<u8> {
        let mut group = Vec::new();
        new_group(&mut group);
        group.extend_from_slice(records);
        seal_group(&mut group);
        group
    }
    use fastpay_authority::Genesis;
    use fastpay_wire::{
        Amount, CertifiedTransferOrder, Committee, KeyPair, SignedTransferOrder, Transfer, encode,
        shard_of,
    };

    const SHARDS: u32 = 2;

    fn user(i: u8) -> KeyPair {
        KeyPair::from_seed([i; 32])
    }

    /// A payer on shard 0 and a payee on shard 1, each funded.
    fn parties() -> (KeyPair, KeyPair) {
        let on = |shard| {
            (1..=40)
                .map(user)
                .find(|k| shard_of(&k.account(), SHARDS) == ShardId(shard))
                .unwrap()
        };
        (on(0), on(1))
    }

    /// The key of the committee's one authority.
    fn authority() -> KeyPair {
        KeyPair::from_seed([200; 32])
    }

    /// One authority with `SHARDS` shards.
    fn committee() -> Arc<Committee> {
        Arc::new(Committee::equal_weights([authority().authority()], SHARDS).unwrap())
    }

    fn node(shard: u32, durable: bool) -> ShardNode {
        let (authority, committee) = (authority(), committee());
        let (payer, payee) = parties();
        let genesis = Genesis::from_accounts(
            [payer, payee]
                .iter()
                .map(|k| (k.account(), Amount::new(100))),
        )
        .unwrap();
        let state = AuthorityShard::new(authority, committee, ShardId(shard), &genesis).unwrap();
        ShardNode::new(
            state,
            NodeConfig::in_process(SHARDS, durable),
            Arc::new(ShardCounters::default()),
        )
    }

    fn batch(message: &Message) -> Datagrams {
        let mut batch = Datagrams::new();
        batch.push(
            "127.0.0.1:9".parse().unwrap(),
            &encode(message, ShardId(0)).unwrap(),
        );
        batch
    }

    /// The payer's order (shard 0) of 30 to the payee (shard 1), for `committee`.
    fn payment_of_30(committee: &Committee) -> TransferOrder {
        let (payer, payee) = parties();
        TransferOrder::new(
            Transfer {
                sender: payer.account(),
                recipient: payee.account(),
                amount: Amount::new(30),
                sequence_number: SequenceNumber::ZERO,
                user_data: None,
            },
            &committee.id(),
            &payer,
        )
    }

    /// A confirmation of a payment of 30 from the payer (shard 0) to the payee (shard 1).
    fn confirmation() -> ConfirmationOrder {
        let order = payment_of_30(&committee());
        let vote = SignedTransferOrder::new(order, &committee().id(), &authority());
        ConfirmationOrder {
            certificate: CertifiedTransferOrder {
                value: order,
                signatures: vec![(vote.authority, vote.signature)],
            },
        }
    }

    fn balance(node: &ShardNode, account: &AccountId) -> i128 {
        node.shard().accounts()[account].balance.units()
    }

    /// The one reply of a batch that was handled in memory (nothing waits for a disk).
    fn only_reply(node: &mut ShardNode) -> Message {
        let replies = node.poll_replies().expect("a reply batch");
        assert_eq!(replies.len(), 1);
        decode(replies.get(0).1).unwrap().1
    }

    #[test]
    fn an_encoded_snapshot_decodes_to_the_state() {
        let mut node = node(0, true);
        // A debit with its credit waiting for shard 1, then a vote pending for the payee
        // (owned by shard 1: refused) and the payer's next order (voted, pending).
        node.handle_batch(
            Duration::ZERO,
            &batch(&Message::ConfirmationOrder(confirmation())),
        );
        let (payer, payee) = parties();
        let next = TransferOrder::new(
            Transfer {
                sender: payer.account(),
                recipient: payee.account(),
                amount: Amount::new(5),
                sequence_number: SequenceNumber::new(1),
                user_data: None,
            },
            &committee().id(),
            &payer,
        );
        node.handle_batch(Duration::ZERO, &batch(&Message::TransferOrder(next)));
        assert!(node.shard().accounts()[&payer.account()].pending.is_some());
        let expected = Snapshot {
            shard: node.shard().snapshot(),
            links: node.links.state(),
            arrivals: node.arrivals,
        };
        assert!(
            !expected.links.outbox.is_empty(),
            "the credit is in the snapshot"
        );

        let mut decoded = node.snapshot().unwrap().decode().unwrap();
        decoded.shard.sort();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_snapshot_encoded_in_slices_is_the_state_at_its_cut() {
        let key = authority();
        let committee = committee();
        let payers: Vec<KeyPair> = (1..=u8::MAX)
            .map(user)
            .filter(|k| shard_of(&k.account(), SHARDS) == ShardId(0))
            .take(20)
            .collect();
        let genesis =
            Genesis::from_accounts(payers.iter().map(|k| (k.account(), Amount::new(100)))).unwrap();
        let state = AuthorityShard::new(key, committee.clone(), ShardId(0), &genesis).unwrap();
        let mut node = ShardNode::new(
            state,
            NodeConfig::in_process(SHARDS, true),
            Arc::new(ShardCounters::default()),
        );
        // Orders, then confirmations (debits, credits here and for shard 1), all from payers
        // whose accounts are encoded before and after the changes.
        let order = |p: &KeyPair, to: AccountId, sequence: u64| {
            TransferOrder::new(
                Transfer {
                    sender: p.account(),
                    recipient: to,
                    amount: Amount::new(7),
                    sequence_number: SequenceNumber::new(sequence),
                    user_data: None,
                },
                &committee.id(),
                p,
            )
        };
        let (_, elsewhere) = parties();
        let confirm = |o: TransferOrder| {
            let vote = SignedTransferOrder::new(o, &committee.id(), &authority());
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: CertifiedTransferOrder {
                    value: o,
                    signatures: vec![(vote.authority, vote.signature)],
                },
            })
        };
        let round = |node: &mut ShardNode, messages: Vec<Message>| {
            let mut requests = Datagrams::new();
            for m in &messages {
                requests.push(
                    "127.0.0.1:9".parse().unwrap(),
                    &encode(m, ShardId(0)).unwrap(),
                );
            }
            node.handle_batch(Duration::ZERO, &requests);
            let position = take(node).position;
            node.durable(position);
            while let Some(replies) = node.poll_replies() {
                node.recycle(replies);
            }
        };
        round(
            &mut node,
            vec![confirm(order(&payers[0], elsewhere.account(), 0))],
        );
        let at_cut = Snapshot {
            shard: node.shard().snapshot(),
            links: node.links.state(),
            arrivals: node.arrivals,
        };
        node.begin_snapshot(Vec::new()).unwrap();
        assert!(node.snapshot_encoding());
        let mut slices = 0;
        let encoded = loop {
            if let Some(encoded) = node.encode_snapshot(1).unwrap() {
                break encoded;
            }
            slices += 1;
            let p = &payers[slices % payers.len()];
            let next = node.shard().accounts()[&p.account()]
                .next_sequence_number
                .value();
            let local = payers[(slices + 1) % payers.len()].account();
            let to = if slices % 2 == 0 {
                local
            } else {
                elsewhere.account()
            };
            round(&mut node, vec![Message::TransferOrder(order(p, to, next))]);
            round(&mut node, vec![confirm(order(p, to, next))]);
        };
        assert_eq!(slices, payers.len() - 1, "one account a slice");
        assert!(!node.snapshot_encoding());
        let mut decoded = encoded.decode().unwrap();
        decoded.shard.sort();
        assert_eq!(decoded, at_cut);
        let now = Snapshot {
            shard: node.shard().snapshot(),
            links: node.links.state(),
            arrivals: node.arrivals,
        };
        assert_ne!(now.shard, at_cut.shard, "the accounts changed meanwhile");
        assert_ne!(now.links, at_cut.links, "and the links");
        assert_ne!(now.arrivals, at_cut.arrivals, "and the arrivals");
    }

    #[test]
    fn a_certificate_of_every_members_vote_is_kept_with_a_quorum_only() {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed([210 + i; 32])).collect();
        let committee = Arc::new(
            Committee::equal_weights(keys.iter().map(KeyPair::authority), SHARDS).unwrap(),
        );
        let (payer, payee) = parties();
        let genesis = Genesis::from_accounts(
            [&payer, &payee]
                .iter()
                .map(|k| (k.account(), Amount::new(100))),
        )
        .unwrap();
        let state = AuthorityShard::new(
            KeyPair::from_seed([210; 32]),
            committee.clone(),
            ShardId(0),
            &genesis,
        )
        .unwrap();
        let mut node = ShardNode::new(
            state,
            NodeConfig::in_process(SHARDS, true),
            Arc::new(ShardCounters::default()),
        );
        let order = payment_of_30(&committee);
        let confirmation = ConfirmationOrder {
            certificate: CertifiedTransferOrder {
                value: order,
                signatures: keys
                    .iter()
                    .map(|key| {
                        let vote = SignedTransferOrder::new(order, &committee.id(), key);
                        (vote.authority, vote.signature)
                    })
                    .collect(),
            },
        };
        node.handle_batch(
            Duration::ZERO,
            &batch(&Message::ConfirmationOrder(confirmation.clone())),
        );
        assert_eq!(balance(&node, &payer.account()), 70);
        let logged = take(&mut node);
        let [applied] = logged.certificates.as_slice() else {
            panic!("{} certificates applied", logged.certificates.len());
        };
        assert_eq!(
            applied.certificate.signatures,
            confirmation.certificate.signatures[..3]
        );
    }

    #[test]
    fn requests_that_waited_past_the_budget_are_refused_as_overloaded() {
        let (payer, payee) = parties();
        let order = TransferOrder::new(
            Transfer {
                sender: payer.account(),
                recipient: payee.account(),
                amount: Amount::new(5),
                sequence_number: SequenceNumber::ZERO,
                user_data: None,
            },
            &committee().id(),
            &payer,
        );
        let budget = DEFAULT_SHED_AFTER;
        let mut shard = node(0, false);
        let aged = |message: &Message, waited: Duration| {
            let mut inputs = batch(message);
            inputs.set_waited(0, waited);
            inputs
        };

        // A stale order is refused without a vote; the same order fresh gets one.
        shard.handle_batch(
            Duration::ZERO,
            &aged(&Message::TransferOrder(order), budget * 2),
        );
        match only_reply(&mut shard) {
            Message::Error(refusal) => assert_eq!(
                (refusal.code, refusal.account, refusal.sequence_number),
                (ErrorCode::Overloaded, payer.account(), SequenceNumber::ZERO)
            ),
            other => panic!("expected Overloaded, got {other:?}"),
        }
        assert!(shard.shard().accounts()[&payer.account()].pending.is_none());
        assert_eq!(shard.counters.get(Counter::ShedOrders), 1);
        assert_eq!(shard.counters.get(Counter::SignaturesChecked), 0);
        shard.handle_batch(
            Duration::ZERO,
            &aged(&Message::TransferOrder(order), budget),
        );
        assert!(matches!(only_reply(&mut shard), Message::Vote(_)));

        // A confirmation as old is still applied: it is shed only past four budgets.
        let confirm = Message::ConfirmationOrder(confirmation());
        shard.handle_batch(Duration::ZERO, &aged(&confirm, budget * 2));
        assert!(matches!(
            only_reply(&mut shard),
            Message::AccountInfoResponse(_)
        ));
        assert_eq!(balance(&shard, &payer.account()), 70);
        let mut fresh = node(0, false);
        fresh.handle_batch(
            Duration::ZERO,
            &aged(
                &confirm,
                budget * CONFIRMATION_SHED_FACTOR + Duration::from_millis(1),
            ),
        );
        assert!(matches!(
            only_reply(&mut fresh),
            Message::Error(ErrorReply {
                code: ErrorCode::Overloaded,
                ..
            })
        ));
        assert_eq!(fresh.counters.get(Counter::ShedConfirmations), 1);
        assert_eq!(balance(&fresh, &payer.account()), 100);
    }

    /// Replies taken for the runtime to send are the ones not yet durable, taken once; the
    /// credit that waits with them still waits for `durable`.
    #[test]
    fn held_replies_taken_leave_the_credits_waiting_for_the_log() {
        let mut sender = node(0, true);
        let confirm = Message::ConfirmationOrder(confirmation());
        sender.handle_batch(Duration::from_millis(3), &batch(&confirm));
        let taken = take(&mut sender);
        let mut held = Vec::new();
        assert!(sender.take_held_replies(&mut held));
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].1, Duration::from_millis(3));
        assert!(
            !sender.take_held_replies(&mut held),
            "the same replies taken twice"
        );
        let mut frames = Vec::new();
        sender.transmit(Duration::ZERO, &mut frames);
        assert!(frames.is_empty(), "a credit before its debit is durable");
        sender.durable(taken.position);
        assert!(
            sender.poll_replies().is_none(),
            "taken replies released again"
        );
        sender.transmit(Duration::ZERO, &mut frames);
        assert_eq!(
            frames.len(),
            1,
            "the credit leaves once the debit is durable"
        );

        // A node that logs nothing has nothing held: its replies are ready at once.
        let mut memory = node(0, false);
        memory.handle_batch(Duration::ZERO, &batch(&confirm));
        assert!(!memory.take_held_replies(&mut held));
        assert!(memory.poll_replies().is_some());
    }

    #[test]
    fn nothing_leaves_before_it_is_durable_and_each_credit_is_taken_once() {
        let (payer, payee) = parties();
        let (mut sender, mut receiver) = (node(0, true), node(1, true));
        sender.handle_batch(
            Duration::ZERO,
            &batch(&Message::ConfirmationOrder(confirmation())),
        );
        let mut frames = Vec::new();
        sender.transmit(Duration::ZERO, &mut frames);
        assert!(
            sender.poll_replies().is_none(),
            "a reply before its record is durable"
        );
        assert!(frames.is_empty(), "a credit before its debit is durable");

        let LogBatch {
            records: log,
            position,
            ..
        } = take(&mut sender);
        sender.durable(position);
        assert_eq!(
            sender.poll_replies_timed().map(|(r, at)| (r.len(), at)),
            Some((1, Duration::ZERO)),
            "the replies carry the time their batch came in"
        );
        sender.transmit(Duration::ZERO, &mut frames);
        assert_eq!(frames.len(), 1);

        // Delivered twice (a resend after a restart would do that): taken once.
        receiver.handle_frame(Duration::ZERO, frames[0].clone());
        receiver.handle_frame(Duration::ZERO, frames[0].clone());
        assert_eq!(balance(&receiver, &payee.account()), 130);
        let mut acks = Vec::new();
        receiver.transmit(Duration::ZERO, &mut acks);
        assert!(
            acks.iter().all(|frame| frame.ack == 0),
            "an acknowledgement before the credit is durable"
        );
        acks.clear();
        let LogBatch {
            records: receiver_log,
            position,
            ..
        } = take(&mut receiver);
        receiver.durable(position);
        receiver.transmit(Duration::ZERO, &mut acks);
        assert_eq!(acks.iter().map(|frame| frame.ack).collect::<Vec<_>>(), [1]);
        sender.handle_frame(Duration::ZERO, acks.remove(0));
        assert_eq!(sender.backlog(), 0, "the acknowledged credit is forgotten");

        // Recovery feeds the logs back: the same state, and the credit is not taken again.
        let decoded = decode_log(&as_group(&log)).unwrap();
        assert!(decoded.torn.is_none());
        let records = decoded.records;
        let recovered = ShardNode::recover(
            node(0, true).shard,
            NodeConfig::in_process(SHARDS, true),
            Arc::new(ShardCounters::default()),
            None,
            records,
        );
        assert_eq!(balance(&recovered, &payer.account()), 70);
        assert_eq!(
            recovered.backlog(),
            1,
            "not known to be acknowledged: resent"
        );
        let records = decode_log(&as_group(&receiver_log)).unwrap().records;
        let mut receiver = ShardNode::recover(
            node(1, true).shard,
            NodeConfig::in_process(SHARDS, true),
            Arc::new(ShardCounters::default()),
            None,
            records,
        );
        receiver.handle_frame(Duration::ZERO, frames[0].clone());
        assert_eq!(balance(&receiver, &payee.account()), 130);
    }

    /// A round of orders to an authority that batches its votes: one root signature for the
    /// round, replies only once the votes are durable, each reply within its (padded) request,
    /// and recovery restores the very votes sent.
    #[test]
    fn a_round_of_orders_gets_votes_under_one_root() {
        use fastpay_wire::{VoteScheme, VoteSignature, encode_padded, encode_request};
        let key = authority();
        let committee = Arc::new(
            Committee::equal_weights([key.authority()], SHARDS)
                .unwrap()
                .with_vote_scheme(VoteScheme::Merkle),
        );
        // A full batch: the deepest proofs one round gives.
        let payers: Vec<KeyPair> = (1..=u8::MAX)
            .map(user)
            .filter(|k| shard_of(&k.account(), SHARDS) == ShardId(0))
            .take(BATCH)
            .collect();
        let genesis =
            Genesis::from_accounts(payers.iter().map(|k| (k.account(), Amount::new(100)))).unwrap();
        let make = || {
            let state =
                AuthorityShard::new(authority(), committee.clone(), ShardId(0), &genesis).unwrap();
            ShardNode::new(
                state,
                NodeConfig::in_process(SHARDS, true),
                Arc::new(ShardCounters::default()),
            )
        };
        let mut node = make();
        let orders: Vec<TransferOrder> = payers
            .iter()
            .map(|p| {
                TransferOrder::new(
                    Transfer {
                        sender: p.account(),
                        recipient: payers[0].account(),
                        amount: Amount::new(1),
                        sequence_number: SequenceNumber::ZERO,
                        user_data: None,
                    },
                    &committee.id(),
                    p,
                )
            })
            .collect();
        let mut requests = Datagrams::new();
        for order in &orders {
            let bytes = encode_padded(
                &Message::TransferOrder(*order),
                ShardId(0),
                committee.request_padding(),
            )
            .unwrap();
            requests.push("127.0.0.1:9".parse().unwrap(), &bytes);
        }
        node.handle_batch(Duration::ZERO, &requests);
        assert!(node.poll_replies().is_none(), "a vote before it is durable");
        let LogBatch {
            records: log,
            position,
            ..
        } = take(&mut node);
        node.durable(position);
        let replies = node.poll_replies().unwrap();
        assert_eq!(replies.len(), orders.len());
        assert_eq!(node.counters.get(Counter::AmplificationRefused), 0);
        let mut roots = std::collections::HashSet::new();
        for i in 0..replies.len() {
            let (_, bytes, _) = replies.get(i);
            let Ok((_, Message::Vote(reply))) = decode(bytes) else {
                panic!("not a vote");
            };
            let order = orders
                .iter()
                .find(|o| reply.for_order(o).is_some())
                .unwrap();
            let VoteSignature::Batched(proof) = reply.signature else {
                panic!("a per-vote signature from a batching authority");
            };
            roots.insert(proof.root_signature);
            assert_eq!(
                committee.verify_vote(
                    &reply.authority,
                    &order.vote_bytes(&committee.id()),
                    &reply.signature,
                    None
                ),
                Ok(())
            );
            assert_eq!(
                node.shard().accounts()[&order.transfer.sender]
                    .pending
                    .map(|v| v.signature),
                Some(reply.signature)
            );
        }
        assert_eq!(roots.len(), 1, "one root signature for the round");

        // A state query as clients send it is answered with the pending vote, deepest proof
        // and all: the committee's padding makes room for it.
        for order in &orders {
            let account = order.transfer.sender;
            let query = Message::AccountInfoRequest(AccountInfoRequest::new(account));
            let bytes = encode_request(&query, ShardId(0), committee.request_padding()).unwrap();
            let Some(Message::AccountInfoResponse(info)) = ask_bytes(&mut node, &bytes) else {
                panic!("a state query with a pending batched vote went unanswered");
            };
            let pending = node.shard().accounts()[&account].pending;
            assert!(pending.is_some());
            assert_eq!(info.pending, pending);
        }
        assert_eq!(node.counters.get(Counter::AmplificationRefused), 0);

        // A snapshot of pending batched votes fits the room estimated for it (the buffer is
        // prepared ahead of it, and growing it would stall the shard).
        let room = node.snapshot_capacity();
        let encoded = node.snapshot_into(vec![0xa5; room]).unwrap();
        assert!(
            encoded.as_bytes().len() < room,
            "{} > {room}",
            encoded.as_bytes().len()
        );
        // Written over a buffer or grown in one, too short or empty: the same bytes.
        for buffer in [Vec::new(), vec![0xa5; 100], Vec::with_capacity(room)] {
            assert_eq!(node.snapshot_into(buffer).unwrap(), encoded);
        }

        // Recovery restores the votes that were sent, proofs and all.
        let records = decode_log(&as_group(&log)).unwrap().records;
        let recovered = ShardNode::recover(
            make().shard,
            NodeConfig::in_process(SHARDS, true),
            Arc::new(ShardCounters::default()),
            None,
            records,
        );
        for order in &orders {
            let account = &order.transfer.sender;
            assert_eq!(
                recovered.shard().accounts()[account].pending,
                node.shard().accounts()[account].pending
            );
        }
    }

    /// Sends `query` to `node` as one datagram and returns the answer, if any.
    fn ask(node: &mut ShardNode, query: AccountInfoRequest) -> Option<Message> {
        let bytes = encode(&Message::AccountInfoRequest(query), node.me).unwrap();
        ask_bytes(node, &bytes)
    }

    /// Sends `bytes` to `node` as one datagram and returns the answer, if any.
    fn ask_bytes(node: &mut ShardNode, bytes: &[u8]) -> Option<Message> {
        let mut datagrams = Datagrams::new();
        datagrams.push("127.0.0.1:9".parse().unwrap(), bytes);
        node.handle_batch(Duration::ZERO, &datagrams);
        let mut answer = None;
        while let Some(replies) = node.poll_replies() {
            for i in 0..replies.len() {
                let (_, bytes, _) = replies.get(i);
                answer = decode(bytes).ok().map(|(_, message)| message);
            }
            node.recycle(replies);
        }
        answer
    }

    fn answer(message: Option<Message>) -> CertificateAnswer {
        match message {
            Some(Message::Certificates(response)) => response.answer,
            other => panic!("expected certificates, got {other:?}"),
        }
    }

    #[test]
    fn applied_certificates_are_emitted_once_durable_and_served_from_the_store() {
        use crate::certs::MemoryCertificates;
        let (payer, payee) = parties();
        let (mut sender, mut receiver) = (node(0, true), node(1, true));
        let (sent, received) = (MemoryCertificates::new(), MemoryCertificates::new());
        sender.set_certificate_reader(Box::new(sent.clone()));
        receiver.set_certificate_reader(Box::new(received.clone()));
        let confirmation = confirmation();
        sender.handle_batch(
            Duration::ZERO,
            &batch(&Message::ConfirmationOrder(confirmation.clone())),
        );
        let taken = take(&mut sender);
        assert_eq!(taken.certificates.len(), 1);
        assert_eq!(
            taken.certificates[0].arrival, None,
            "the payee is on the other shard"
        );
        sent.store(&taken.certificates);
        sender.durable(taken.position);
        while sender.poll_replies().is_some() {}
        let mut frames = Vec::new();
        sender.transmit(Duration::ZERO, &mut frames);
        receiver.handle_frame(Duration::ZERO, frames.remove(0));
        let credited = take(&mut receiver);
        assert_eq!(credited.certificates[0].arrival, Some(0));
        received.store(&credited.certificates);
        receiver.durable(credited.position);

        let size = fastpay_wire::CERTIFICATE_QUERY_BYTES;
        let zero = SequenceNumber::ZERO;
        let one = SequenceNumber::new(1);
        assert_eq!(
            answer(ask(
                &mut sender,
                AccountInfoRequest::certificate(payer.account(), zero, size)
            )),
            CertificateAnswer::Certificate(confirmation.certificate.clone())
        );
        assert_eq!(
            answer(ask(
                &mut sender,
                AccountInfoRequest::certificate(payer.account(), one, size)
            )),
            CertificateAnswer::NotApplied {
                next_sequence_number: one
            }
        );
        assert_eq!(
            answer(ask(
                &mut receiver,
                AccountInfoRequest::received(payee.account(), 0, size)
            )),
            CertificateAnswer::Received {
                certificates: vec![confirmation.certificate.clone()],
                next: 1,
                end: 1
            }
        );
        // Applied but not in the store (say, before the store existed): typed as pruned.
        let mut forgetful = node(0, true);
        forgetful.handle_batch(
            Duration::ZERO,
            &batch(&Message::ConfirmationOrder(confirmation.clone())),
        );
        // Asked before the round's certificates are handed to the store: served from the
        // node's own list (the answer leaves once the records are durable).
        let query = AccountInfoRequest::certificate(payer.account(), zero, size);
        assert!(ask(&mut forgetful, query.clone()).is_none());
        let position = take(&mut forgetful).position;
        forgetful.durable(position);
        let mut last = None;
        while let Some(replies) = forgetful.poll_replies() {
            last = decode(replies.get(replies.len() - 1).1)
                .ok()
                .map(|(_, m)| m);
        }
        assert_eq!(
            answer(last),
            CertificateAnswer::Certificate(confirmation.certificate.clone())
        );
        // Handed over (above) to a store that drops it.
        assert_eq!(
            answer(ask(
                &mut forgetful,
                AccountInfoRequest::certificate(payer.account(), zero, size)
            )),
            CertificateAnswer::Pruned
        );
        // A query too small for the certificate, or unpadded, gets nothing.
        let mut short = AccountInfoRequest::certificate(payer.account(), zero, size);
        short.padding.truncate(200);
        let got = ask(&mut sender, short);
        assert!(got.is_none(), "{got:?}");
        let mut unpadded = AccountInfoRequest::new(payer.account());
        unpadded.padding.clear();
        assert!(ask(&mut sender, unpadded).is_none());
    }

    /// `count` payments from one payer to one payee, as a store holds them.
    fn stored_payments(count: u64) -> (KeyPair, Vec<crate::certs::AppliedCertificate>) {
        let (payer, payee) = parties();
        let all = (0..count)
            .map(|sequence| {
                let order = TransferOrder::new(
                    Transfer {
                        sender: payer.account(),
                        recipient: payee.account(),
                        amount: Amount::new(1),
                        sequence_number: SequenceNumber::new(sequence),
                        user_data: None,
                    },
                    &committee().id(),
                    &payer,
                );
                let vote = SignedTransferOrder::new(order, &committee().id(), &authority());
                crate::certs::AppliedCertificate {
                    certificate: CertifiedTransferOrder {
                        value: order,
                        signatures: vec![(vote.authority, vote.signature)],
                    },
                    arrival: Some(sequence),
                }
            })
            .collect();
        (payee, all)
    }

    /// A reader that counts the certificates it hands out.
    struct CountingReader(
        crate::certs::MemoryCertificates,
        Arc<std::sync::atomic::AtomicUsize>,
    );

    impl CertificateReader for CountingReader {
        fn certificate(
            &self,
            sender: &AccountId,
            sequence: SequenceNumber,
        ) -> Result<Option<CertifiedTransferOrder>, crate::certs::ReadError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.certificate(sender, sequence)
        }

        fn received(
            &self,
            recipient: &AccountId,
            from: u64,
            max: usize,
            out: &mut Vec<(u64, CertifiedTransferOrder)>,
        ) -> Result<u64, crate::certs::ReadError> {
            let before = out.len();
            let end = self.0.received(recipient, from, max, out);
            self.1
                .fetch_add(out.len() - before, std::sync::atomic::Ordering::Relaxed);
            end
        }
    }

    #[test]
    fn a_query_reads_no_more_certificates_than_its_answer_can_carry() {
        let (payee, all) = stored_payments(20);
        let store = crate::certs::MemoryCertificates::new();
        store.store(&all);
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut receiver = node(1, true);
        receiver.set_certificate_reader(Box::new(CountingReader(store, read.clone())));
        let mut ask = |bytes: usize| {
            let mut query = AccountInfoRequest::received(payee.account(), 0, 0);
            let overhead = encode(&Message::AccountInfoRequest(query.clone()), ShardId(1))
                .unwrap()
                .len()
                - query.padding.len();
            query.padding.resize(bytes - overhead, 0);
            let mut datagrams = Datagrams::new();
            let datagram = encode(&Message::AccountInfoRequest(query), ShardId(1)).unwrap();
            assert_eq!(datagram.len(), bytes);
            datagrams.push("127.0.0.1:9".parse().unwrap(), &datagram);
            read.store(0, std::sync::atomic::Ordering::Relaxed);
            receiver.handle_batch(Duration::ZERO, &datagrams);
            let replies = receiver.poll_replies().unwrap();
            let (_, reply, _) = replies.get(0);
            let Ok((_, Message::Certificates(response))) = decode(reply) else {
                panic!("no page");
            };
            assert!(reply.len() <= bytes);
            receiver.recycle(replies);
            let CertificateAnswer::Received { certificates, .. } = response.answer else {
                panic!("not a page");
            };
            (
                certificates.len(),
                read.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        // The smallest query answered holds one certificate of a committee of one, and
        // reads only that one, not a page.
        assert_eq!(ask(MIN_QUERY_BYTES), (1, 1));
        // Room for three at the minimum size: three read, three served.
        assert_eq!(ask(1000), (3, 3));
        // A whole datagram: a page at most.
        let (served, read_all) = ask(fastpay_wire::codec::MAX_DATAGRAM_SIZE);
        assert!(served > 2 && read_all <= MAX_PAGE, "{served} {read_all}");
    }

    #[test]
    fn a_page_holds_what_fits_in_its_query() {
        use crate::certs::MemoryCertificates;
        let mut receiver = node(1, true);
        let store = MemoryCertificates::new();
        receiver.set_certificate_reader(Box::new(store.clone()));
        // Twenty payments to the payee in the store (the node serves what the store holds).
        let (payee, all) = stored_payments(20);
        store.store(&all);
        let mut from = 0;
        let mut pages = 0;
        let mut got = Vec::new();
        while from < 20 {
            let mut query = AccountInfoRequest::received(payee.account(), from, 0);
            query.padding.truncate(1500);
            let size = encode(&Message::AccountInfoRequest(query.clone()), ShardId(1))
                .unwrap()
                .len();
            let mut datagrams = Datagrams::new();
            datagrams.push(
                "127.0.0.1:9".parse().unwrap(),
                &encode(&Message::AccountInfoRequest(query), ShardId(1)).unwrap(),
            );
            receiver.handle_batch(Duration::ZERO, &datagrams);
            let replies = receiver.poll_replies().unwrap();
            let (_, bytes, _) = replies.get(0);
            assert!(bytes.len() <= size, "{} > {size}", bytes.len());
            let Ok((_, Message::Certificates(response))) = decode(bytes) else {
                panic!("no page");
            };
            receiver.recycle(replies);
            let CertificateAnswer::Received {
                certificates,
                next,
                end,
            } = response.answer
            else {
                panic!("not a page");
            };
            assert_eq!(end, 20);
            assert!(!certificates.is_empty());
            assert_eq!(next, from + certificates.len() as u64);
            got.extend(certificates);
            from = next;
            pages += 1;
        }
        assert!(pages > 2, "a page of 1500 bytes holds a few certificates");
        let expected: Vec<_> = all.into_iter().map(|a| a.certificate).collect();
        assert_eq!(got, expected);
    }
}
