//! One shard's per-batch pipeline, without sockets or threads: datagrams in, replies and
//! handovers out. The runtime feeds it what it read; benches and tests feed it directly.
//!
//! For each batch: route and decode every datagram, run the cheap checks (shard, sequence
//! number, replay, funds, signer set) and queue the signatures that remain, verify them all
//! with one batch equation (bisecting on failure), then commit in arrival order and write the
//! replies. Nothing here allocates per datagram except a handover of a misrouted datagram and
//! the vote list of a decoded certificate.

use crate::counters::{Counter, ShardCounters};
use crate::store::Record;
use fastpay_authority::{AuthorityError, AuthorityShard, ConfirmationCheck, OrderCheck};
use fastpay_wire::Datagrams;
use fastpay_wire::{
    BatchVerifier, ConfirmationOrder, CrossShardUpdate, Message, SequenceNumber, ShardId,
    TransferOrder, VoteReply, decode, encode_into,
};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

/// Something one shard hands to another shard of the same process.
#[derive(Debug)]
pub enum Handover {
    /// The credit side of a confirmed transfer (trusted: it comes from our own shard), the
    /// `sequence`-th credit on the link from shard `from`.
    Credit {
        /// The sending shard.
        from: u32,
        /// Position on the link from `from` to the receiver (from 1).
        sequence: u64,
        /// The credit.
        update: CrossShardUpdate,
    },
    /// A datagram that the kernel delivered to the wrong shard's socket.
    Datagram {
        /// Who sent it, so the owner can reply.
        peer: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Where a batch's effects go.
#[derive(Default)]
pub struct Outputs {
    /// Replies to send.
    pub replies: Datagrams,
    /// Handovers for other shards, with their destination. Credits come out with sequence
    /// zero: the runtime numbers them per link.
    pub handovers: Vec<(ShardId, Handover)>,
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

/// One shard's state and scratch space.
pub struct ShardWorker {
    shard: AuthorityShard,
    num_shards: u32,
    verifier: BatchVerifier,
    pending: Vec<Pending>,
    counters: Arc<ShardCounters>,
    /// What changed the state since the runtime last took it, when durability is on.
    records: Option<Vec<Record>>,
}

impl ShardWorker {
    /// A worker for `shard`, one of `num_shards`, reporting into `counters`.
    pub fn new(shard: AuthorityShard, num_shards: u32, counters: Arc<ShardCounters>) -> Self {
        Self {
            shard,
            num_shards,
            verifier: BatchVerifier::new(),
            pending: Vec::new(),
            counters,
            records: None,
        }
    }

    /// Keeps a record of every state change for the log (durability on).
    pub fn record_changes(&mut self) {
        self.records = Some(Vec::new());
    }

    /// The records since the last call, to log before any reply of this batch leaves.
    pub fn take_records(&mut self) -> impl Iterator<Item = Record> + '_ {
        self.records.iter_mut().flat_map(|r| r.drain(..))
    }

    fn record(&mut self, record: impl FnOnce() -> Record) {
        if let Some(records) = self.records.as_mut() {
            records.push(record());
        }
    }

    /// The shard state.
    pub fn shard(&self) -> &AuthorityShard {
        &self.shard
    }

    /// Applies a credit handed over by another shard of this process, the `sequence`-th on
    /// the link from shard `from`.
    pub fn apply_credit(&mut self, from: u32, sequence: u64, update: CrossShardUpdate) {
        match self.shard.apply_cross_shard_update(&update) {
            Ok(fastpay_authority::CreditOutcome::Applied) => {
                self.counters.bump(Counter::Credited);
                self.record(|| Record::Credit {
                    from,
                    sequence,
                    link_epoch: 0,
                    update,
                });
            }
            Ok(fastpay_authority::CreditOutcome::Duplicate) => {
                self.counters.bump(Counter::DuplicateCredit)
            }
            Err(e) => self.counters.bump(Counter::for_error(&e)),
        }
    }

    /// Verifies and applies a credit that came from another process over the link (the
    /// `sequence`-th of the sender's incarnation `epoch`): its certificate must prove it.
    pub fn apply_link_credit(&mut self, update: &CrossShardUpdate, epoch: u64, sequence: u64) {
        match self.shard.handle_cross_shard_update(update) {
            Ok(fastpay_authority::CreditOutcome::Applied) => self.counters.bump(Counter::Credited),
            Ok(fastpay_authority::CreditOutcome::Duplicate) => {
                self.counters.bump(Counter::DuplicateCredit)
            }
            Err(e) => self.counters.bump(Counter::for_error(&e)),
        }
        // Logged whatever the outcome: the record also says how far the link got, and the
        // sender forgets every credit this shard acknowledges. (Replaying a duplicate or a
        // refused credit changes nothing.)
        let from = self
            .shard
            .shard_of(&update.certificate.value.transfer.sender)
            .0;
        let update = update.clone();
        self.record(|| Record::Credit {
            from,
            sequence,
            link_epoch: epoch,
            update,
        });
    }

    /// Processes a batch: every datagram of `inputs`, then `handed` (datagrams other shards
    /// passed on). `out.replies` must have room for one reply per input.
    pub fn process(
        &mut self,
        inputs: &Datagrams,
        handed: &[(SocketAddr, Vec<u8>)],
        out: &mut Outputs,
    ) {
        self.counters.bump(Counter::Batches);
        self.verifier.clear();
        self.pending.clear();
        for i in 0..inputs.len() {
            let (peer, bytes, truncated) = inputs.get(i);
            if truncated {
                self.counters.bump(Counter::DecodeError);
                continue;
            }
            self.admit(peer, bytes, true, out);
        }
        for (peer, bytes) in handed {
            self.admit(*peer, bytes, false, out);
        }
        if self.pending.is_empty() {
            return;
        }
        // A confirmation may need no signature at all (a committee of one, whose own vote
        // is skipped): it still has to be committed.
        if !self.verifier.is_empty() {
            self.counters
                .add(Counter::SignaturesChecked, self.verifier.len() as u64);
            self.verifier.verify();
        }
        self.commit(out);
    }

    /// Decodes and routes one datagram and runs the cheap checks. Only datagrams that decode
    /// are handed over to another shard: garbage costs no queue space and no copy.
    fn admit(&mut self, peer: SocketAddr, bytes: &[u8], may_hand_over: bool, out: &mut Outputs) {
        let (header, message) = match decode(bytes) {
            Ok(decoded) => decoded,
            Err(_) => {
                self.counters.bump(Counter::DecodeError);
                return;
            }
        };
        if header.shard != self.shard.shard() {
            if header.shard.0 >= self.num_shards || !may_hand_over {
                self.counters.bump(Counter::NoSuchShard);
                return;
            }
            self.counters.bump(Counter::WrongShard);
            out.handovers.push((
                header.shard,
                Handover::Datagram {
                    peer,
                    bytes: bytes.to_vec(),
                },
            ));
            return;
        }
        let size = bytes.len();
        match message {
            Message::TransferOrder(order) => {
                match self.shard.check_transfer_order(&order, &mut self.verifier) {
                    Ok(OrderCheck::Replay(vote)) => {
                        self.counters.bump(Counter::Voted);
                        self.reply(peer, size, &Message::Vote(VoteReply::of(&vote)), out);
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
                        out,
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
                        self.reply(peer, size, &Message::AccountInfoResponse(info), out);
                    }
                    Ok(ConfirmationCheck::Verify(range)) => {
                        self.pending.push(Pending::Confirmation {
                            peer,
                            size,
                            order,
                            range,
                        })
                    }
                    Err(e) => self.refuse((peer, size), &e, t.sender, t.sequence_number, out),
                }
            }
            Message::AccountInfoRequest(request) => {
                match self.shard.handle_account_info_request(&request) {
                    Ok(info) => {
                        self.counters.bump(Counter::Queried);
                        self.reply(peer, size, &Message::AccountInfoResponse(info), out);
                    }
                    Err(e) => {
                        self.refuse((peer, size), &e, request.account, SequenceNumber::ZERO, out)
                    }
                }
            }
            // Credits travel only over in-process queues (or the authenticated link between
            // processes), never through the public port: see `AuthorityShard`.
            Message::CrossShardUpdate(_)
            | Message::Vote(_)
            | Message::AccountInfoResponse(_)
            | Message::Error(_)
            | Message::ShardLink(_) => self.counters.bump(Counter::Unexpected),
        }
    }

    /// Applies the requests whose signatures all verified, in arrival order.
    fn commit(&mut self, out: &mut Outputs) {
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
                self.refuse(peer, &error, transfer.sender, transfer.sequence_number, out);
                continue;
            }
            let outcome = match request {
                Pending::Order { order, .. } => self.shard.vote_verified(order).map(|vote| {
                    self.counters.bump(Counter::Voted);
                    if let Some(records) = self.records.as_mut() {
                        records.push(Record::Vote(vote));
                    }
                    Message::Vote(VoteReply::of(&vote))
                }),
                Pending::Confirmation { order, .. } => {
                    self.shard.confirm_verified(order).map(|confirmed| {
                        self.counters.bump(Counter::Confirmed);
                        if confirmed.applied {
                            if let Some(records) = self.records.as_mut() {
                                records.push(Record::Confirm(order.clone()));
                            }
                        }
                        if let Some(update) = confirmed.cross_shard {
                            out.handovers.push((
                                update.recipient_shard,
                                Handover::Credit {
                                    from: self.shard.shard().0,
                                    sequence: 0,
                                    update,
                                },
                            ));
                        }
                        Message::AccountInfoResponse(confirmed.response)
                    })
                }
            };
            match outcome {
                Ok(reply) => self.reply(peer.0, peer.1, &reply, out),
                Err(e) => self.refuse(peer, &e, transfer.sender, transfer.sequence_number, out),
            }
        }
        // Hand the (empty) buffer back so its capacity is reused.
        self.pending = pending;
        self.pending.clear();
    }

    /// Refuses the request of `(peer, size)`.
    fn refuse(
        &mut self,
        (peer, size): (SocketAddr, usize),
        error: &AuthorityError,
        account: fastpay_wire::AccountId,
        sequence_number: SequenceNumber,
        out: &mut Outputs,
    ) {
        self.counters.bump(Counter::for_error(error));
        self.reply(
            peer,
            size,
            &Message::Error(error.reply(account, sequence_number)),
            out,
        );
    }

    /// Answers a request of `size` bytes from `peer`. Source addresses can be forged, so a
    /// reply larger than its request is not sent (and is counted): nobody can use an
    /// authority to amplify traffic towards a victim.
    fn reply(&mut self, peer: SocketAddr, size: usize, message: &Message, out: &mut Outputs) {
        let shard = self.shard.shard();
        let Some(buffer) = out.replies.next_buffer(peer) else {
            self.counters.bump(Counter::SendDropped);
            return;
        };
        match encode_into(message, shard, buffer) {
            Ok(len) if len <= size => out.replies.commit(len),
            Ok(_) => self.counters.bump(Counter::AmplificationRefused),
            Err(_) => self.counters.bump(Counter::SendDropped),
        }
    }
}
