//! Bringing one account up to date with the committee ([`SyncAccount`]), step by step:
//!
//! 1. its own transfers: finishes the one in progress, and while the committee holds a
//!    certificate for its next sequence number (the wallet lost it in a crash, or never saw
//!    it), verifies and adopts it and finishes that transfer;
//! 2. payments received: reads each authority's list from where the last sync stopped,
//!    verifies every certificate and counts each payment once;
//! 3. deposits from the primary chain: counts what enough authorities credited that one of
//!    them is honest;
//! 4. lagging authorities: pushes what they miss (this account's transfers to those behind on
//!    its sequence number; payments newly learned to those whose lists lack them).

use crate::exchange::{Action, Exchange, Timing};
use crate::fetch::{FetchCertificate, FetchReceived, Query, QueryAnswer, ReceivedList};
use crate::push::{MAX_PUSH_CHAIN, Push};
use crate::state::{ClientError, ClientState, Learned, Phase, credited_deposits};
use crate::transfers::{DriveError, Goal, Transfers, hand_over};
use fastpay_wire::{AuthorityName, CertifiedTransferOrder, ErrorCode, Message, SequenceNumber};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use thiserror::Error;

/// What a sync of one account learned and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Transfers of its own it learned from the committee (a certificate the wallet lost, or
    /// one made by another wallet holding the key).
    pub sent_learned: usize,
    /// Interrupted transfers it finished (their votes collected again).
    pub resumed: usize,
    /// Payments received it learned.
    pub received: usize,
    /// Their total.
    pub received_amount: u128,
    /// Confirmations lagging authorities acknowledged.
    pub pushed: usize,
    /// Units of deposits from the primary chain newly counted.
    pub deposited: u128,
}

/// Why a sync stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    /// Finishing the account's transfer in progress did not end in time.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// A certificate of its own the committee gave could not be adopted.
    #[error("adopting a certificate of the account's own: {0}")]
    Client(#[from] ClientError),
}

#[derive(Debug)]
enum Step {
    /// Deciding what the account's own transfers need next.
    Own,
    Finishing(Transfers),
    Recovering(FetchCertificate),
    Received(FetchReceived),
    /// Asking every authority how far it is along the account's transfers.
    States(Query),
    Pushing(Push),
}

/// Brings the account of client `i` up to date with the committee (see the module's steps),
/// asking for the wallet to be saved after each step that changed it.
#[derive(Debug)]
pub struct SyncAccount {
    i: usize,
    timeout: Duration,
    timing: Timing,
    step: Step,
    report: SyncReport,
    /// The lists read, kept for the push.
    lists: Vec<ReceivedList>,
    /// The payments learned in this sync.
    newly: Vec<CertifiedTransferOrder>,
    /// The wallet must be saved before going on.
    save: bool,
    /// The save under way was asked for by the step's machine, not by the sync.
    step_saving: bool,
    failed: Option<SyncError>,
}

impl SyncAccount {
    /// A sync of client `i`, each step giving up `timeout` after it starts.
    pub fn new(i: usize, timeout: Duration) -> Self {
        Self {
            i,
            timeout,
            timing: Timing::default(),
            step: Step::Own,
            report: SyncReport::default(),
            lists: Vec::new(),
            newly: Vec::new(),
            save: false,
            step_saving: false,
            failed: None,
        }
    }

    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The next step for the account's own transfers, or the move to payments received.
    fn own(&mut self, clients: &[ClientState], now: Instant) -> Step {
        let client = &clients[self.i];
        let deadline = now + self.timeout;
        if matches!(client.pending(), Some(Phase::Confirming { .. })) {
            return Step::Finishing(
                Transfers::new(client.committee(), Goal::Finished, deadline)
                    .with_timing(self.timing),
            );
        }
        Step::Recovering(
            FetchCertificate::new(
                client.committee().clone(),
                client.account(),
                client.next_sequence_number(),
                deadline,
            )
            .with_timing(self.timing),
        )
    }

    /// The committee's answer about the account's next sequence number.
    fn recovered(
        &mut self,
        clients: &mut [ClientState],
        found: Option<CertifiedTransferOrder>,
        now: Instant,
    ) -> Result<Step, SyncError> {
        let client = &mut clients[self.i];
        let Some(certificate) = found else {
            if matches!(client.pending(), Some(Phase::Voting { .. })) {
                // Not certified as far as the committee knows: collect the votes again
                // (authorities that voted give the same vote).
                self.report.resumed += 1;
                let deadline = now + self.timeout;
                let transfers = Transfers::new(client.committee(), Goal::Finished, deadline);
                return Ok(Step::Finishing(transfers.with_timing(self.timing)));
            }
            return Ok(self.received_step(client, now));
        };
        if client.learn_certificate(certificate)? != Learned::Sent {
            return Ok(self.received_step(client, now));
        }
        self.report.sent_learned += 1;
        self.save = true;
        Ok(Step::Own)
    }

    fn received_step(&self, client: &ClientState, now: Instant) -> Step {
        Step::Received(
            FetchReceived::new(
                client.committee(),
                client.account(),
                |name| client.received_cursor(name),
                now + self.timeout,
            )
            .with_timing(self.timing),
        )
    }

    /// Counts the payments the lists carry and moves the cursors.
    fn learn_received(
        &mut self,
        client: &mut ClientState,
        lists: &[ReceivedList],
    ) -> Vec<CertifiedTransferOrder> {
        let mut newly = Vec::new();
        for list in lists {
            for certificate in &list.certificates {
                if let Ok(Learned::Received) = client.learn_certificate(certificate.clone()) {
                    self.report.received += 1;
                    let amount = u128::from(certificate.value.transfer.amount.units());
                    self.report.received_amount =
                        self.report.received_amount.saturating_add(amount);
                    newly.push(certificate.clone());
                }
            }
            client.set_received_cursor(list.authority, list.next);
        }
        self.save = true;
        newly
    }

    /// Counts the deposits the answers show credited (see [`credited_deposits`]).
    fn learn_deposits(&mut self, client: &mut ClientState, states: &[QueryAnswer]) {
        let infos = states
            .iter()
            .filter_map(|(name, answer)| answer.as_ref().ok().map(|info| (name, info)));
        let deposited = credited_deposits(client.committee(), infos);
        match client.learn_deposits(deposited) {
            Ok(new) if new.units() > 0 => {
                self.report.deposited = new.units().unsigned_abs();
                self.save = true;
            }
            Ok(_) => {}
            Err(e) => self.failed = Some(e.into()),
        }
    }

    /// Moves the current step's machine on: `None` once it moved to the next step, or the
    /// action to hand to the driver.
    fn advance(
        &mut self,
        clients: &mut [ClientState],
        now: Instant,
    ) -> Option<Action<Result<SyncReport, SyncError>>> {
        let step = std::mem::replace(&mut self.step, Step::Own);
        // The step's machine's output, or (the machine put back) the action it asks for.
        macro_rules! drive {
            ($machine:ident, $variant:path) => {{
                let mut $machine = $machine;
                match $machine.poll(clients, now) {
                    Action::Done(output) => output,
                    action => {
                        self.step = $variant($machine);
                        return Some(match action {
                            Action::Save => {
                                self.step_saving = true;
                                Action::Save
                            }
                            Action::Send(t) => Action::Send(t),
                            Action::Wait(t) => Action::Wait(t),
                            Action::Done(_) => return None,
                        });
                    }
                }
            }};
        }
        self.step = match step {
            Step::Own => self.own(clients, now),
            Step::Finishing(machine) => {
                let result = drive!(machine, Step::Finishing);
                hand_over(clients, &[self.i]);
                self.save = true;
                if let Err(e) = result {
                    self.failed = Some(e.into());
                }
                Step::Own
            }
            Step::Recovering(machine) => {
                let found = drive!(machine, Step::Recovering);
                match self.recovered(clients, found, now) {
                    Ok(step) => step,
                    Err(e) => {
                        self.failed = Some(e);
                        Step::Own
                    }
                }
            }
            Step::Received(machine) => {
                let lists = drive!(machine, Step::Received);
                self.newly = self.learn_received(&mut clients[self.i], &lists);
                self.lists = lists;
                let client = &clients[self.i];
                let query = Query::new(client.committee(), client.account(), now + self.timeout);
                Step::States(query.with_timing(self.timing))
            }
            Step::States(machine) => {
                let states = drive!(machine, Step::States);
                self.learn_deposits(&mut clients[self.i], &states);
                let client = &clients[self.i];
                let lists = std::mem::take(&mut self.lists);
                let newly = std::mem::take(&mut self.newly);
                let targets = push_targets(client, &lists, &newly, &states);
                let push = Push::new(client.committee().clone(), targets, now + self.timeout);
                Step::Pushing(push.with_timing(self.timing))
            }
            Step::Pushing(machine) => {
                self.report.pushed = drive!(machine, Step::Pushing);
                return Some(Action::Done(Ok(self.report)));
            }
        };
        None
    }
}

/// What lagging authorities miss: payments an authority's list lacks (all we know of when its
/// list was read from the start, else those learned now), and this account's transfers from
/// the sequence number each authority reports, at most [`MAX_PUSH_CHAIN`] of them per
/// authority and sync (oldest first, as it must apply them): one answer, which anyone can
/// spoof, saying it has nothing cannot make a sync send the account's whole history.
fn push_targets(
    client: &ClientState,
    lists: &[ReceivedList],
    newly: &[CertifiedTransferOrder],
    states: &[QueryAnswer],
) -> Vec<(AuthorityName, CertifiedTransferOrder)> {
    let mut targets = Vec::new();
    for list in lists.iter().filter(|l| l.complete) {
        let listed: BTreeSet<_> = list
            .certificates
            .iter()
            .map(|c| (c.value.transfer.sender, c.value.transfer.sequence_number))
            .collect();
        let candidates: Vec<&CertifiedTransferOrder> = if list.from_start {
            client.received_certificates().collect()
        } else {
            newly.iter().collect()
        };
        for certificate in candidates {
            let t = certificate.value.transfer;
            if !listed.contains(&(t.sender, t.sequence_number)) {
                targets.push((list.authority, certificate.clone()));
            }
        }
    }
    for (name, answer) in states {
        let behind = match answer {
            Ok(info) => info.next_sequence_number,
            Err(ErrorCode::UnknownAccount) => SequenceNumber::ZERO,
            Err(_) => continue,
        };
        let mut missing: Vec<&CertifiedTransferOrder> = client
            .sent_certificates()
            .iter()
            .filter(|c| c.value.transfer.sequence_number >= behind)
            .collect();
        missing.sort_by_key(|c| c.value.transfer.sequence_number);
        for certificate in missing.into_iter().take(MAX_PUSH_CHAIN) {
            targets.push((*name, certificate.clone()));
        }
    }
    targets
}

impl Exchange for SyncAccount {
    type Output = Result<SyncReport, SyncError>;

    fn poll(&mut self, clients: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        loop {
            if self.save {
                return Action::Save;
            }
            if let Some(error) = self.failed.take() {
                return Action::Done(Err(error));
            }
            if let Some(action) = self.advance(clients, now) {
                return action;
            }
        }
    }

    fn handle(
        &mut self,
        clients: &mut [ClientState],
        now: Instant,
        from: AuthorityName,
        message: Message,
    ) {
        match &mut self.step {
            Step::Own => {}
            Step::Finishing(m) => m.handle(clients, now, from, message),
            Step::Recovering(m) => m.handle(clients, now, from, message),
            Step::Received(m) => m.handle(clients, now, from, message),
            Step::States(query) => query.handle(clients, now, from, message),
            Step::Pushing(m) => m.handle(clients, now, from, message),
        }
    }

    fn saved(&mut self) {
        if std::mem::take(&mut self.step_saving) {
            if let Step::Finishing(m) = &mut self.step {
                m.saved();
            }
        } else {
            self.save = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        AccountInfoResponse, Amount, Balance, Committee, KeyPair, SignedTransferOrder, Transfer,
        TransferOrder,
    };
    use std::sync::Arc;

    #[test]
    fn one_answer_saying_nothing_pushes_a_bounded_chain() {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([60 + i; 32])).collect();
        let committee =
            Arc::new(Committee::equal_weights(keys.iter().map(KeyPair::authority), 1).unwrap());
        let owner = KeyPair::from_seed([61; 32]);
        let account = owner.account();
        let mut client = ClientState::new(owner, committee.clone(), Balance::new(1_000));
        let payer = KeyPair::from_seed([61; 32]);
        let sent = MAX_PUSH_CHAIN as u64 * 2;
        for sequence in 0..sent {
            let transfer = Transfer {
                sender: account,
                recipient: KeyPair::from_seed([62; 32]).account(),
                amount: Amount::new(1),
                sequence_number: SequenceNumber::new(sequence),
                user_data: None,
            };
            let order = TransferOrder::new(transfer, &committee.id(), &payer);
            let signatures = keys[..3]
                .iter()
                .map(|k| {
                    let vote = SignedTransferOrder::new(order, &committee.id(), k);
                    (vote.authority, vote.signature)
                })
                .collect();
            let certificate = CertifiedTransferOrder {
                value: order,
                signatures,
            };
            assert_eq!(client.learn_certificate(certificate), Ok(Learned::Sent));
            // A quorum acknowledges it: the transfer is finished.
            let applied = AccountInfoResponse {
                account,
                balance: Balance::new(1_000 - sequence as i128 - 1),
                next_sequence_number: SequenceNumber::new(sequence + 1),
                pending: None,
                deposited: Balance::ZERO,
            };
            for key in &keys[..3] {
                client
                    .handle_account_info(key.authority(), &applied)
                    .unwrap();
            }
        }
        // One (spoofable) state answer claims the authority has nothing of this account.
        let nothing = AccountInfoResponse {
            account,
            balance: Balance::new(1_000),
            next_sequence_number: SequenceNumber::ZERO,
            pending: None,
            deposited: Balance::ZERO,
        };
        let states = [(keys[3].authority(), Ok(nothing))];
        let targets = push_targets(&client, &[], &[], &states);
        assert_eq!(targets.len(), MAX_PUSH_CHAIN);
        // The oldest first: an authority applies them in order.
        let first = &targets[0].1.value.transfer;
        assert_eq!(first.sequence_number, SequenceNumber::ZERO);
        // An authority one behind gets the one it misses.
        let behind = AccountInfoResponse {
            next_sequence_number: SequenceNumber::new(sent - 1),
            ..nothing
        };
        let targets = push_targets(&client, &[], &[], &[(keys[2].authority(), Ok(behind))]);
        assert_eq!(targets.len(), 1);
    }
}
