//! The clients: honest payers (through the real client state machine), and double spenders
//! that sign two orders for one sequence number behind it.

use crate::contract::RedeemRefusal;
use crate::network::{Event, Node};
use crate::{RETRY_US, Role, SimFailure, World};
use fastpay_client::{
    Action, ApprovalAnswer, ClientState, CollectApprovals, DriveError, Exchange, Goal, SyncAccount,
    SyncError, SyncReport, Timing, Transfers,
};
use fastpay_wire::{
    AccountId, Amount, AuthorityName, CertifiedTransferOrder, ConfirmationOrder, KeyPair, Message,
    PRIMARY_EXIT, SequenceNumber, Transfer, TransferOrder, decode,
};
use rand::RngExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an honest client's payment may take before it gives up (its next tick then syncs,
/// which finishes it), in virtual time: dozens of retries through crashes and loss.
const PAY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long each step of an honest client's sync may take, in virtual time.
const SYNC_STEP_TIMEOUT: Duration = Duration::from_millis(500);

/// The client machines' timers on the simulated network, whose one-way delays are at most
/// 5 ms: a retry after a few round trips (as [`RETRY_US`]), stragglers waited for about one.
const TIMING: Timing = Timing {
    retry: Duration::from_micros(RETRY_US),
    quorum_grace: Duration::from_millis(10),
};

/// What an honest client is doing: one of the real client's machines.
// A few dozen clients per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Operation {
    /// A payment, driven to its confirmation.
    Pay(Transfers),
    /// A sync of the account (what `client sync`, and every `client transfer` first, does).
    Sync(SyncAccount),
    /// The committee's approvals of an exit's redeem, for the simulated contract (what
    /// `client redeem` does).
    Redeem(CollectApprovals),
}

/// How an operation ended.
enum Outcome {
    Paid(Result<fastpay_client::DriveStats, DriveError>),
    Synced(Result<SyncReport, SyncError>),
    Approved(Vec<ApprovalAnswer>),
}

impl Operation {
    fn poll(&mut self, client: &mut ClientState, now: Instant) -> Action<Outcome> {
        let clients = std::slice::from_mut(client);
        match self {
            Operation::Pay(m) => map(m.poll(clients, now), Outcome::Paid),
            Operation::Sync(m) => map(m.poll(clients, now), Outcome::Synced),
            Operation::Redeem(m) => map(m.poll(clients, now), Outcome::Approved),
        }
    }

    fn handle(&mut self, client: &mut ClientState, now: Instant, from: AuthorityName, m: Message) {
        let clients = std::slice::from_mut(client);
        match self {
            Operation::Pay(machine) => machine.handle(clients, now, from, m),
            Operation::Sync(machine) => machine.handle(clients, now, from, m),
            Operation::Redeem(machine) => machine.handle(clients, now, from, m),
        }
    }

    fn saved(&mut self) {
        match self {
            Operation::Pay(machine) => machine.saved(),
            Operation::Sync(machine) => machine.saved(),
            Operation::Redeem(machine) => machine.saved(),
        }
    }
}

fn map<T, U>(action: Action<T>, f: impl FnOnce(T) -> U) -> Action<U> {
    match action {
        Action::Send(t) => Action::Send(t),
        Action::Save => Action::Save,
        Action::Wait(t) => Action::Wait(t),
        Action::Done(output) => Action::Done(f(output)),
    }
}

impl World {
    pub(crate) fn authority_index(from: Node) -> Option<usize> {
        match from {
            Node::Authority(a) => Some(a),
            Node::Client(_) | Node::Injector => None,
        }
    }

    pub(crate) fn client_receives(
        &mut self,
        c: usize,
        from: Node,
        bytes: &[u8],
    ) -> Result<(), SimFailure> {
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
        // Replies that arrive while the client is idle are late: nobody is waiting for them.
        let now = self.instant();
        let client = &mut self.clients[c];
        let Some(operation) = client.operation.as_mut() else {
            return Ok(());
        };
        let before = client.state.sent_certificates().len();
        operation.handle(&mut client.state, now, name, message);
        self.certificates_adopted(c, before)?;
        self.pump(c)
    }

    /// Virtual time as the client machines see it.
    pub(crate) fn instant(&self) -> Instant {
        self.epoch + Duration::from_micros(self.now)
    }

    /// Certificates the client's state took since it held `before` of its own: formed from
    /// votes or recovered from the committee, each is checked against every other.
    fn certificates_adopted(&mut self, c: usize, before: usize) -> Result<(), SimFailure> {
        let sent = self.clients[c].state.sent_certificates();
        if sent.len() <= before {
            return Ok(());
        }
        let adopted: Vec<CertifiedTransferOrder> = sent[before..].to_vec();
        for certificate in adopted {
            self.certificate_formed(certificate)?;
        }
        Ok(())
    }

    /// Does what client `c`'s operation asks until it waits or ends.
    fn pump(&mut self, c: usize) -> Result<(), SimFailure> {
        loop {
            let now = self.instant();
            let client = &mut self.clients[c];
            let Some(operation) = client.operation.as_mut() else {
                return Ok(());
            };
            let before = client.state.sent_certificates().len();
            let action = operation.poll(&mut client.state, now);
            self.certificates_adopted(c, before)?;
            match action {
                Action::Send(transmit) => {
                    let Some(a) = self.authority_named(&transmit.to) else {
                        continue;
                    };
                    self.client_send(c, a, &transmit.message);
                }
                Action::Save => {
                    // The wallet saves a certificate before its confirmations leave; an old
                    // one sometimes did not, and a crash then loses it.
                    let paying = matches!(self.clients[c].operation, Some(Operation::Pay(_)));
                    if !(paying && self.rng.random_bool(self.config.unsaved_certificate_rate)) {
                        self.save(c);
                    }
                    if let Some(operation) = self.clients[c].operation.as_mut() {
                        operation.saved();
                    }
                }
                Action::Wait(until) => {
                    let at = until.saturating_duration_since(self.epoch).as_micros();
                    let at = u64::try_from(at).unwrap_or(u64::MAX).max(self.now + 1);
                    if self.clients[c]
                        .wake_at
                        .is_none_or(|w| w <= self.now || at < w)
                    {
                        self.clients[c].wake_at = Some(at);
                        self.queue.push(at, Event::ClientWake { client: c, at });
                    }
                    return Ok(());
                }
                Action::Done(outcome) => {
                    self.clients[c].operation = None;
                    self.clients[c].wake_at = None;
                    return self.operation_ended(c, outcome);
                }
            }
        }
    }

    /// Client `c`'s wake-up set for `at`: stale unless it is the one the client waits for.
    pub(crate) fn client_wakes(&mut self, c: usize, at: u64) -> Result<(), SimFailure> {
        if self.clients[c].wake_at != Some(at) {
            return Ok(());
        }
        self.clients[c].wake_at = None;
        self.pump(c)
    }

    fn authority_named(&self, name: &AuthorityName) -> Option<usize> {
        self.authorities.iter().position(|a| a.name == *name)
    }

    fn operation_ended(&mut self, c: usize, outcome: Outcome) -> Result<(), SimFailure> {
        match outcome {
            Outcome::Paid(Ok(_)) => self.transfer_finished(c),
            // Timed out: the next tick syncs, which finishes it.
            Outcome::Paid(Err(DriveError::Timeout { .. })) => {}
            Outcome::Synced(Ok(report)) => {
                self.report.payments_downloaded += report.received as u64;
                self.report.certificates_recovered += report.sent_learned as u64;
                self.save(c);
                // A transfer the sync finished counts (once: `transfer_finished` knows).
                if self.clients[c].state.pending().is_none() {
                    self.transfer_finished(c);
                }
            }
            Outcome::Synced(Err(SyncError::Drive(_))) => {}
            Outcome::Synced(Err(SyncError::Client(e))) => {
                return Err(self.fail(format!("client {c}'s sync refused a certificate: {e}")));
            }
            Outcome::Approved(answers) => return self.redeem_approved(c, answers),
        }
        Ok(())
    }

    /// The first of client `c`'s certified exits that the contract has not paid, as `client
    /// redeem` finds it in the wallet.
    pub(crate) fn unredeemed_exit(&self, c: usize) -> Option<CertifiedTransferOrder> {
        self.clients[c]
            .state
            .sent_certificates()
            .iter()
            .find(|certificate| {
                let t = certificate.value.transfer;
                t.recipient == PRIMARY_EXIT
                    && !self.contract.is_redeemed(t.sender, t.sequence_number)
            })
            .cloned()
    }

    /// Starts collecting the approvals of client `c`'s first unredeemed exit; false if it has
    /// none.
    pub(crate) fn start_redeem(&mut self, c: usize) -> Result<bool, SimFailure> {
        let Some(certificate) = self.unredeemed_exit(c) else {
            return Ok(false);
        };
        let deadline = self.instant() + PAY_TIMEOUT;
        let machine =
            CollectApprovals::new(&self.committee, certificate, deadline).with_timing(TIMING);
        self.start(c, Operation::Redeem(machine))?;
        Ok(true)
    }

    /// Hands the approvals client `c` collected to the simulated contract: a quorum of valid
    /// ones pays the exit once; the same redeem again is refused.
    fn redeem_approved(
        &mut self,
        c: usize,
        answers: Vec<ApprovalAnswer>,
    ) -> Result<(), SimFailure> {
        let approvals: Vec<_> = answers
            .into_iter()
            .filter_map(|(name, answer)| answer.ok().map(|approval| (name, approval)))
            .collect();
        let Some(approval) = approvals.first() else {
            self.report.redeems_refused += 1;
            return Ok(());
        };
        let key = (approval.1.sender, approval.1.sequence_number);
        let Some(certificate) = self.certificates.get(&key).cloned() else {
            return Err(self.fail(format!(
                "client {c} was approved a redeem of {key:?}, never certified"
            )));
        };
        match self
            .contract
            .redeem(&self.committee, &certificate, &approvals)
        {
            Ok(_) => {
                self.report.redeems += 1;
                // A replay of the same approvals (the transaction sent twice) must not pay.
                if self.rng.random_bool(0.3) {
                    match self
                        .contract
                        .redeem(&self.committee, &certificate, &approvals)
                    {
                        Err(RedeemRefusal::AlreadyRedeemed) => self.report.redeems_refused += 1,
                        other => {
                            return Err(
                                self.fail(format!("a replayed redeem of {key:?} gave {other:?}"))
                            );
                        }
                    }
                }
            }
            // Below a quorum (authorities down or lying): the next tick asks again.
            Err(RedeemRefusal::BelowQuorum { .. } | RedeemRefusal::AlreadyRedeemed) => {
                self.report.redeems_refused += 1;
            }
            Err(RedeemRefusal::NotAnExit) => {
                return Err(self.fail(format!(
                    "client {c} redeemed {key:?}, which pays no address"
                )));
            }
        }
        Ok(())
    }

    /// Starts `operation` for client `c` (any other is abandoned, as a killed process's).
    pub(crate) fn start(&mut self, c: usize, operation: Operation) -> Result<(), SimFailure> {
        self.clients[c].operation = Some(operation);
        self.clients[c].wake_at = None;
        self.pump(c)
    }

    /// The sync of client `c` once the network healed: stragglers are waited for long enough
    /// that every honest authority's answer counts.
    pub(crate) fn final_sync(&mut self, c: usize) -> Result<(), SimFailure> {
        let timing = Timing {
            quorum_grace: Duration::from_millis(200),
            ..TIMING
        };
        let sync = SyncAccount::new(0, PAY_TIMEOUT).with_timing(timing);
        self.start(c, Operation::Sync(sync))
    }

    /// A sync of client `c`.
    pub(crate) fn start_sync(&mut self, c: usize) -> Result<(), SimFailure> {
        let sync = SyncAccount::new(0, SYNC_STEP_TIMEOUT).with_timing(TIMING);
        self.start(c, Operation::Sync(sync))
    }

    /// The client's wallet file is written: a crash resumes from here.
    pub(crate) fn save(&mut self, c: usize) {
        self.clients[c].saved = self.clients[c].state.snapshot();
    }

    /// The client crashes and resumes from its wallet file.
    fn crash_client(&mut self, c: usize) {
        let key = self.client_key(c);
        let saved = self.clients[c].saved.clone();
        match ClientState::restore(Some(key), self.committee.clone(), saved) {
            Ok(state) => {
                self.clients[c].state = state;
                self.clients[c].operation = None;
                self.clients[c].wake_at = None;
                self.report.client_crashes += 1;
            }
            Err(e) => panic!("a simulated wallet does not restore: {e}"),
        }
    }

    /// An honest client's payment is confirmed by a quorum: hand the certificate to its
    /// recipient, as a payer hands over a receipt.
    pub(crate) fn transfer_finished(&mut self, c: usize) {
        self.save(c);
        let Some(certificate) = self.clients[c].state.sent_certificates().last().cloned() else {
            return;
        };
        // A transfer resumed after a crash finishes once more: count it once.
        if !self.clients[c]
            .finished
            .insert(certificate.value.transfer.sequence_number)
        {
            return;
        }
        self.report.transfers_completed += 1;
        if let Role::Honest { remaining } = &mut self.clients[c].role {
            *remaining = remaining.saturating_sub(1);
        }
        if self.rng.random_bool(self.config.handover_rate) {
            self.hand_over(certificate);
        }
        self.schedule(1, Event::Tick { client: c });
    }

    pub(crate) fn hand_over(&mut self, certificate: CertifiedTransferOrder) {
        let recipient = certificate.value.transfer.recipient;
        if let Some(r) = self
            .clients
            .iter()
            .position(|r| r.state.account() == recipient)
        {
            // An invalid certificate here would be caught by the final ledger check.
            let _ = self.clients[r].state.receive_certificate(certificate);
            self.save(r);
        }
    }

    /// Sends the request of the transfer in progress to every authority still owing a reply.
    pub(crate) fn send_pending(&mut self, c: usize) {
        for a in 0..self.authorities.len() {
            let name = self.authorities[a].name;
            if let Some(request) = self.clients[c].state.request_for(&name) {
                self.client_send(c, a, &request);
            }
        }
    }

    pub(crate) fn tick(&mut self, c: usize) -> Result<(), SimFailure> {
        let next = RETRY_US + self.rng.random_range(0..RETRY_US);
        self.schedule(next, Event::Tick { client: c });
        if matches!(self.clients[c].role, Role::DoubleSpender { .. }) {
            self.double_spender_tick(c);
            return Ok(());
        }
        // Between any two steps of an operation, the client process may die.
        if self.rng.random_bool(self.config.client_crash_rate) {
            self.crash_client(c);
        }
        if self.clients[c].operation.is_some() {
            return Ok(());
        }
        // A transfer left in progress (by a crash or a timeout) is finished by a sync, as the
        // next `client transfer` would.
        if self.clients[c].state.pending().is_some() || self.rng.random_bool(self.config.sync_rate)
        {
            return self.start_sync(c);
        }
        let Role::Honest { remaining, .. } = self.clients[c].role else {
            return Ok(());
        };
        // Money sent out of FastPay is redeemed on the primary chain before the next payment.
        if self.start_redeem(c)? || remaining == 0 {
            return Ok(());
        }
        let roll = self.rng.random_range(0..100u8);
        if roll < 10 {
            self.overdraft(c);
            Ok(())
        } else if roll < 20 {
            self.replay_last(c)
        } else {
            self.pay(c)
        }
    }

    pub(crate) fn pay(&mut self, c: usize) -> Result<(), SimFailure> {
        let balance = self.clients[c].state.balance().units();
        let cap = u64::try_from(balance.clamp(0, 100)).unwrap_or(0);
        if cap == 0 {
            // Nothing to spend: this client's remaining payments cannot be valid.
            if let Role::Honest { remaining, .. } = &mut self.clients[c].role {
                *remaining = 0;
            }
            return Ok(());
        }
        let mut user_data = None;
        let recipient = if self.rng.random_bool(0.1) {
            // Someone the committee has never seen.
            AccountId(self.rng.random())
        } else if self.rng.random_bool(0.1) {
            // Out of FastPay, to an address on the primary chain.
            self.report.exits += 1;
            let mut address: [u8; 20] = self.rng.random();
            address[0] |= 1;
            user_data = Some(fastpay_wire::exit_user_data(address));
            fastpay_wire::PRIMARY_EXIT
        } else {
            let r = self.rng.random_range(0..self.clients.len());
            self.clients[r].state.account()
        };
        let amount = Amount::new(self.rng.random_range(1..=cap));
        if let Err(e) = self.clients[c].state.transfer(recipient, amount, user_data) {
            return Err(self.fail(format!("honest client {c} refused a valid transfer: {e}")));
        }
        // The order is saved before it leaves.
        self.save(c);
        let deadline = self.instant() + PAY_TIMEOUT;
        let transfers =
            Transfers::new(&self.committee, Goal::Finished, deadline).with_timing(TIMING);
        self.start(c, Operation::Pay(transfers))
    }

    /// An order for more than the whole money supply, sent behind the client state's back.
    pub(crate) fn overdraft(&mut self, c: usize) {
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
            &self.committee.id(),
            &key,
        );
        for a in 0..self.authorities.len() {
            self.client_send(c, a, &Message::TransferOrder(order));
        }
    }

    /// Replays the last certificate and its order: both must be harmless.
    pub(crate) fn replay_last(&mut self, c: usize) -> Result<(), SimFailure> {
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
        Ok(())
    }

    pub(crate) fn client_key(&self, c: usize) -> KeyPair {
        KeyPair::from_seed(self.clients[c].key_seed)
    }

    // ---- double spenders -------------------------------------------------------------------

    pub(crate) fn double_spender_tick(&mut self, c: usize) {
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
                let committee = self.committee.id();
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
                        &committee,
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

    pub(crate) fn double_spender_receives(
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
                if self.committee.public_key(&vote.authority).is_none() {
                    self.report.replies_refused += 1;
                    return Ok(());
                }
                // The reply names the sequence number both orders share: the signature tells
                // which order it is for.
                let Some(i) = orders.iter().position(|o| {
                    vote.for_order(o).is_some()
                        && self
                            .committee
                            .verify_vote(
                                &vote.authority,
                                &o.vote_bytes(&self.committee.id()),
                                &vote.signature,
                                None,
                            )
                            .is_ok()
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
                if let Ok(true) = self.clients[c].state.handle_account_info(name, &info)
                    && let Some(certificate) = self.clients[c].state.sent_certificates().last()
                {
                    let certificate = certificate.clone();
                    self.hand_over(certificate);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
