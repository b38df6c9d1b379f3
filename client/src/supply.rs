//! The supply audit: every shard of every authority reports its money
//! ([`ShardSupply`]) and [`audit_supply`] checks, authority by authority, that what its
//! accounts hold plus what is in flight between its shards equals its genesis plus the
//! deposits it credited. [`CountSupply`] collects the reports.
//!
//! Each report is one shard's state at one moment, and the shards of an authority report at
//! different moments; the sum still balances, because a credit between two shards counts
//! once whichever side reported first: in the sender's balance (debit not yet made), in
//! `sent - received` (made, not yet credited) or in the recipient's balance (credited, and
//! then also in `received`, which cancels the `sent`).

use crate::exchange::{Action, Exchange, Members, Outbox, Timing, earliest};
use crate::state::ClientState;
use fastpay_wire::{AuthorityName, Committee, Message, ShardId, ShardSupply, SupplyRequest};
use std::time::Instant;

/// One authority's shard reports, one slot per shard (`None` where a shard did not answer).
pub type SupplyReports = (AuthorityName, Vec<Option<ShardSupply>>);

/// Asks every shard of every authority for its [`ShardSupply`]; finishes once all answered,
/// or at the deadline with what came.
#[derive(Debug)]
pub struct CountSupply {
    timing: Timing,
    members: Members,
    /// Per member, one slot per shard.
    answers: Vec<Vec<Option<ShardSupply>>>,
    next_send: Option<Instant>,
    deadline: Instant,
    outbox: Outbox,
}

impl CountSupply {
    /// Supply reports from every shard of `committee`, giving up at `deadline`.
    pub fn new(committee: &Committee, deadline: Instant) -> Self {
        let answers = committee
            .members()
            .iter()
            .map(|member| vec![None; member.num_shards as usize])
            .collect();
        Self {
            timing: Timing::default(),
            members: Members::of(committee),
            answers,
            next_send: None,
            deadline,
            outbox: Outbox::default(),
        }
    }

    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    fn complete(&self) -> bool {
        self.answers.iter().flatten().all(Option::is_some)
    }
}

impl Exchange for CountSupply {
    /// Per authority, in committee order.
    type Output = Vec<SupplyReports>;

    fn poll(&mut self, _: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if now >= self.deadline || self.complete() {
            let answers = std::mem::take(&mut self.answers);
            return Action::Done(self.members.names.iter().copied().zip(answers).collect());
        }
        if self.next_send.is_none_or(|t| now >= t) {
            for (name, shards) in self.members.names.iter().zip(&self.answers) {
                for (shard, answer) in shards.iter().enumerate() {
                    if answer.is_none() {
                        let request = SupplyRequest::new(ShardId(shard as u32));
                        self.outbox.push(*name, Message::SupplyRequest(request));
                    }
                }
            }
            self.next_send = Some(now + self.timing.retry);
            return self.poll(&mut [], now);
        }
        Action::Wait(earliest(self.next_send, self.deadline))
    }

    fn handle(&mut self, _: &mut [ClientState], _: Instant, from: AuthorityName, message: Message) {
        let Message::Supply(supply) = message else {
            return;
        };
        let Some(a) = self.members.index(&from) else {
            return;
        };
        if supply.authority != from {
            return;
        }
        if let Some(slot) = self.answers[a].get_mut(supply.shard.0 as usize) {
            slot.get_or_insert(supply);
        }
    }
}

/// One authority's supply, its shards' reports summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthoritySupply {
    /// The authority.
    pub authority: AuthorityName,
    /// Whether every shard answered (the sums below are of those that did).
    pub complete: bool,
    /// Units its genesis accounts started with.
    pub genesis: u128,
    /// Units credited from primary-chain deposits.
    pub deposited: u128,
    /// The sum of its balances.
    pub held: i128,
    /// Units debited on one shard and not yet credited on another, as the shards reported
    /// them (negative when a recipient's shard reported after its credit and the sender's
    /// before its debit: the sum balances all the same).
    pub in_flight: i128,
}

impl AuthoritySupply {
    /// Sums one authority's shard reports.
    pub fn of(authority: AuthorityName, shards: &[Option<ShardSupply>]) -> Self {
        let answered = || shards.iter().flatten();
        Self {
            authority,
            complete: shards.iter().all(Option::is_some),
            genesis: answered().fold(0, |sum, s| sum.saturating_add(s.genesis)),
            deposited: answered().fold(0, |sum, s| sum.saturating_add(s.deposited)),
            held: answered().fold(0, |sum, s| sum.saturating_add(s.held.units())),
            in_flight: answered().fold(0, |sum, s| {
                sum.saturating_add(wide(s.sent))
                    .saturating_sub(wide(s.received))
            }),
        }
    }

    /// `held + in_flight - (genesis + deposited)`: zero when no money was created or lost.
    pub fn discrepancy(&self) -> i128 {
        self.held
            .saturating_add(self.in_flight)
            .saturating_sub(wide(self.genesis).saturating_add(wide(self.deposited)))
    }

    /// Whether every shard answered and the sums balance.
    pub fn balanced(&self) -> bool {
        self.complete && self.discrepancy() == 0
    }
}

/// Every authority's supply, in the order of `answers` (as [`CountSupply`] gives them).
pub fn audit_supply(answers: &[SupplyReports]) -> Vec<AuthoritySupply> {
    answers
        .iter()
        .map(|(authority, shards)| AuthoritySupply::of(*authority, shards))
        .collect()
}

/// An unsigned amount as a signed one (amounts past `i128::MAX` saturate).
fn wide(units: u128) -> i128 {
    i128::try_from(units).unwrap_or(i128::MAX)
}
