//! Driving transfers in progress: orders out until a quorum voted, the certificate saved,
//! confirmations out until a quorum acknowledged, for any number of accounts at once.

use crate::exchange::{Action, Exchange, Members, Outbox, Timing};
use crate::state::ClientState;
use crate::state::Phase;
use fastpay_wire::{AccountId, AuthorityName, Committee, Message};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Transfers in flight at once: enough to keep every authority's batches full, few enough
/// that the replies fit the client's socket buffer.
pub const WINDOW: usize = 256;

/// Certificates formed that wait for one save of the wallet: a wallet of thousands of
/// accounts is not rewritten for each of a benchmark's certificates.
pub const SAVE_BATCH: usize = WINDOW / 4;

/// Longest a certificate formed waits for its save (and so its confirmations): saves of
/// certificates that form together are shared, and nothing an authority sends can postpone
/// one (a clock, not the traffic, decides). Small beside a round trip to a loaded authority.
pub const SAVE_DELAY: Duration = Duration::from_millis(2);

/// How far to drive each transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Until the order is certified (no confirmations sent).
    Certified,
    /// Until a quorum acknowledged the confirmation.
    Finished,
}

/// Counts of what a drive saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriveStats {
    /// Messages sent.
    pub sent: u64,
    /// Replies received.
    pub received: u64,
    /// Replies the client state refused (bad votes, votes for other orders).
    pub refused: u64,
    /// Refusals from authorities.
    pub errors: u64,
}

/// Why a drive ended without reaching its goal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DriveError {
    /// Some transfers did not reach the goal by the deadline.
    #[error(
        "{unfinished} transfer(s) did not finish in time: too many authorities are down or refusing"
    )]
    Timeout {
        /// How many.
        unfinished: usize,
    },
}

/// Whether `client`'s transfer in progress (if any) reached `goal`.
fn reached(goal: Goal, client: &ClientState) -> bool {
    matches!(
        (goal, client.pending()),
        (_, None) | (Goal::Certified, Some(Phase::Confirming { .. }))
    )
}

/// Drives the transfers in progress of the accounts lent to it to a [`Goal`], at most
/// [`WINDOW`] at a time, resending to silent authorities every [`RETRY_INTERVAL`] and
/// feeding lagging ones what they miss. Accounts without a transfer in progress are left
/// alone. A certificate formed here is saved ([`Action::Save`]) before its confirmations
/// leave, so an interrupted transfer always finds it in the wallet.
#[derive(Debug)]
pub struct Transfers {
    timing: Timing,
    goal: Goal,
    members: Members,
    deadline: Instant,
    /// Which account is which client, filled at the first poll.
    index: HashMap<AccountId, usize>,
    todo: Vec<usize>,
    active: Vec<usize>,
    last_sent: HashMap<usize, Instant>,
    /// Clients whose certificate formed here and is not saved yet, since when.
    unsaved: Vec<usize>,
    unsaved_since: Option<Instant>,
    /// A save must happen before anything else (a catch-up could carry an unsaved certificate).
    save_now: bool,
    /// What leaves only after the next save.
    after_save: Outbox,
    started: bool,
    reached: usize,
    stats: DriveStats,
    outbox: Outbox,
}

impl Transfers {
    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A drive to `goal` against `committee`, giving up at `deadline`.
    pub fn new(committee: &Committee, goal: Goal, deadline: Instant) -> Self {
        Self {
            goal,
            members: Members::of(committee),
            deadline,
            index: HashMap::new(),
            todo: Vec::new(),
            active: Vec::new(),
            last_sent: HashMap::new(),
            unsaved: Vec::new(),
            unsaved_since: None,
            save_now: false,
            after_save: Outbox::default(),
            started: false,
            reached: 0,
            stats: DriveStats::default(),
            outbox: Outbox::default(),
            timing: Timing::default(),
        }
    }

    /// How many transfers reached the goal so far.
    pub fn reached(&self) -> usize {
        self.reached
    }

    /// What the drive saw so far.
    pub fn stats(&self) -> DriveStats {
        self.stats
    }

    fn has_reached(&self, client: &ClientState) -> bool {
        reached(self.goal, client)
    }

    fn start(&mut self, clients: &[ClientState]) {
        self.started = true;
        self.index = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.account(), i))
            .collect();
        self.todo = (0..clients.len())
            .filter(|&i| !self.has_reached(&clients[i]))
            .rev()
            .collect();
    }

    /// Queues the pending request of client `i` to every authority that still owes a reply.
    fn send_pending(&mut self, client: &ClientState, i: usize, now: Instant) {
        self.last_sent.insert(i, now);
        for name in &self.members.names {
            if let Some(request) = client.request_for(name) {
                if self.goal == Goal::Certified && matches!(request, Message::ConfirmationOrder(_))
                {
                    continue;
                }
                self.outbox.push(*name, request);
                self.stats.sent += 1;
            }
        }
    }

    fn save_due(&self, now: Instant) -> bool {
        !self.unsaved.is_empty()
            && (self.save_now
                || self.unsaved.len() >= SAVE_BATCH
                || self.unsaved_since.is_some_and(|t| now >= t + SAVE_DELAY)
                || now >= self.deadline)
    }
}

impl Exchange for Transfers {
    type Output = Result<DriveStats, DriveError>;

    fn poll(&mut self, clients: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if !self.started {
            self.start(clients);
        }
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if self.save_due(now) {
            return Action::Save;
        }
        let goal = self.goal;
        self.active.retain(|&i| !reached(goal, &clients[i]));
        while self.active.len() < WINDOW {
            let Some(i) = self.todo.pop() else { break };
            self.active.push(i);
        }
        if self.active.is_empty() && self.unsaved.is_empty() {
            return Action::Done(Ok(self.stats));
        }
        if now >= self.deadline {
            return Action::Done(Err(DriveError::Timeout {
                unfinished: self.active.len() + self.todo.len(),
            }));
        }
        // (Re)send for every active transfer that is new or due for a retry.
        let retry = self.timing.retry;
        let mut wake = self.deadline;
        for k in 0..self.active.len() {
            let i = self.active[k];
            if self.unsaved.contains(&i) {
                continue;
            }
            match self.last_sent.get(&i) {
                Some(t) if now < *t + retry => wake = wake.min(*t + retry),
                _ => {
                    self.send_pending(&clients[i], i, now);
                    wake = wake.min(now + retry);
                }
            }
        }
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if let Some(since) = self.unsaved_since {
            wake = wake.min(since + SAVE_DELAY);
        }
        Action::Wait(wake)
    }

    fn handle(
        &mut self,
        clients: &mut [ClientState],
        now: Instant,
        from: AuthorityName,
        message: Message,
    ) {
        if !self.started {
            self.start(clients);
        }
        let account = match &message {
            Message::Vote(vote) => vote.sender,
            Message::AccountInfoResponse(info) => info.account,
            Message::Error(error) => error.account,
            _ => return,
        };
        let Some(&i) = self.index.get(&account) else {
            return;
        };
        self.stats.received += 1;
        let before = self.has_reached(&clients[i]);
        match message {
            Message::Vote(reply) => match clients[i].handle_vote_reply(&reply) {
                // Certified: saved, then confirmed at once rather than at the next retry (a
                // drive to certificates sends no confirmation; its caller saves).
                Ok(Some(_)) if self.goal == Goal::Finished => {
                    self.unsaved.push(i);
                    self.unsaved_since.get_or_insert(now);
                }
                Ok(_) => {}
                Err(_) => self.stats.refused += 1,
            },
            Message::AccountInfoResponse(info)
                if clients[i].handle_account_info(from, &info).is_err() =>
            {
                self.stats.refused += 1;
            }
            Message::Error(error) => {
                self.stats.errors += 1;
                // Each catch-up message goes to the shard of its certificate's sender: a
                // received payment's confirmation belongs to the payer's shard.
                let catch_up = clients[i].catch_up(&from, &error);
                self.stats.sent += catch_up.len() as u64;
                if self.unsaved.contains(&i) {
                    // Its catch-up could carry the unsaved certificate.
                    self.save_now = true;
                    catch_up
                        .into_iter()
                        .for_each(|m| self.after_save.push(from, m));
                } else {
                    catch_up.into_iter().for_each(|m| self.outbox.push(from, m));
                }
            }
            _ => {}
        }
        if !before && self.has_reached(&clients[i]) {
            self.reached += 1;
        }
    }

    fn saved(&mut self) {
        self.save_now = false;
        self.unsaved_since = None;
        let unsaved = std::mem::take(&mut self.unsaved);
        // Confirmations of the saved certificates leave at the next poll: their last send is
        // cleared so that they count as due.
        for i in unsaved {
            self.last_sent.remove(&i);
        }
        while let Some(t) = self.after_save.pop() {
            self.outbox.push(t.to, t.message);
        }
    }
}

/// Gives the last certificate sent by each client in `which` to its recipient, if the
/// recipient is among `clients` too (as a payer hands over a receipt).
pub fn hand_over(clients: &mut [ClientState], which: &[usize]) {
    let mut receipts = Vec::new();
    for &i in which {
        let client = &clients[i];
        if matches!(client.pending(), Some(Phase::Voting { .. })) {
            continue;
        }
        if let Some(certificate) = client.sent_certificates().last() {
            receipts.push(certificate.clone());
        }
    }
    for certificate in receipts {
        let recipient = certificate.value.transfer.recipient;
        if let Some(r) = clients.iter().position(|c| c.account() == recipient) {
            // Duplicates are refused silently; an invalid certificate cannot come from us.
            let _ = clients[r].receive_certificate(certificate);
        }
    }
}
