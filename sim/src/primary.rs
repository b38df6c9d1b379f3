//! A simulated primary chain: deposits land on it at random moments during the run, and each
//! honest authority's shards follow it the way the engine's followers do, each on its own
//! schedule (so authorities observe a deposit at different moments), starting after every
//! restart from the cursor the shard recovered from its disk and handing the node batches of
//! random size. Only confirmed deposits are ever handed over: a deposit that a reorganisation
//! removes below the confirmation depth never reaches a shard (the engine's follower and the
//! anvil tests show that part on a real chain); what this checks is the authority side, across
//! crashes at any moment: each deposit is credited once per authority, clients learn and
//! spend what a quorum credited, and supply is conserved with deposits counted.

use crate::network::Event;
use crate::{Role, World};
use fastpay_wire::{Amount, DepositBatch, DepositCredit, DepositCursor, ShardId, shard_of};
use rand::RngExt;

/// Virtual time over which the deposits land, in microseconds (the clients' payments take
/// about this long).
const DEPOSIT_SPAN_US: u64 = 1_000_000;

/// Longest time between two looks of a shard's follower at the chain, in virtual
/// microseconds.
const MAX_POLL_US: u64 = 200_000;

impl World {
    /// Schedules the run's deposits and every honest shard's first look at the chain.
    pub(crate) fn start_primary(&mut self) {
        for _ in 0..self.config.deposits {
            let at = self.rng.random_range(0..DEPOSIT_SPAN_US);
            self.schedule(at, Event::ChainDeposit);
        }
        for a in 0..self.authorities.len() {
            for s in 0..self.authorities[a].shards.len() {
                self.schedule_deposit_poll(a, s);
            }
        }
    }

    /// A deposit for a random honest client lands on the chain (not once the network healed:
    /// the run's deposits are over).
    pub(crate) fn chain_deposit(&mut self) {
        if self.healed {
            return;
        }
        let honest: Vec<usize> = (0..self.clients.len())
            .filter(|&c| matches!(self.clients[c].role, Role::Honest { .. }))
            .collect();
        if honest.is_empty() {
            return;
        }
        let client = honest[self.rng.random_range(0..honest.len())];
        let deposit = DepositCredit {
            index: self.chain.len() as u64,
            account: self.clients[client].state.account(),
            amount: Amount::new(self.rng.random_range(1..=200)),
        };
        self.chain.push(deposit);
        self.report.deposits += 1;
    }

    /// Schedules shard `s` of authority `a`'s next look at the chain (none for the
    /// Byzantine authority, which runs no nodes).
    pub(crate) fn schedule_deposit_poll(&mut self, a: usize, s: usize) {
        if self.authorities[a].is_byzantine() {
            return;
        }
        let incarnation = self.authorities[a].shards[s].incarnation;
        let delay = self.rng.random_range(1..=MAX_POLL_US);
        self.schedule(
            delay,
            Event::DepositPoll {
                authority: a,
                shard: s,
                incarnation,
            },
        );
    }

    /// Shard `s` of authority `a` looks at the chain: hands its node the deposits from its
    /// follower's cursor to a random point at or before the chain's end, then looks again
    /// later, unless the network healed and it has seen the whole chain.
    pub(crate) fn deposit_poll(
        &mut self,
        a: usize,
        s: usize,
        incarnation: u64,
    ) -> Result<(), crate::SimFailure> {
        let host = &self.authorities[a].shards[s];
        if host.node.is_none() || host.incarnation != incarnation {
            return Ok(());
        }
        let from = host.follower;
        let start = from.next_index as usize;
        let end = match self.chain.len() > start {
            true => self.rng.random_range(start + 1..=self.chain.len()),
            false => start,
        };
        if end > start {
            let me = ShardId(s as u32);
            let credits = self.chain[start..end]
                .iter()
                .filter(|d| shard_of(&d.account, self.config.shards) == me)
                .copied()
                .collect();
            let to = DepositCursor {
                next_index: end as u64,
                scan_from: end as u64,
            };
            let batch = DepositBatch { from, to, credits };
            let host = &mut self.authorities[a].shards[s];
            let Some(node) = host.node.as_mut() else {
                return Ok(());
            };
            if let Err(e) = node.credit_deposits(&batch) {
                return Err(self.fail(format!(
                    "authority {a} shard {s} refused a deposit batch: {e}"
                )));
            }
            host.follower = to;
            self.drain_effects(a, s)?;
        }
        let caught_up =
            self.authorities[a].shards[s].follower.next_index as usize >= self.chain.len();
        if !(self.healed && caught_up) {
            self.schedule_deposit_poll(a, s);
        }
        Ok(())
    }

    /// Every running honest shard has credited exactly the deposits below its cursor that
    /// belong to it: none twice, none skipped.
    pub(crate) fn check_deposits(&self) -> Result<(), crate::SimFailure> {
        for (a, authority) in self.authorities.iter().enumerate() {
            for (s, host) in authority.shards.iter().enumerate() {
                let Some(node) = host.node.as_ref() else {
                    continue;
                };
                let cursor = node.shard().deposit_cursor();
                let me = ShardId(s as u32);
                let want: u128 = self.chain[..(cursor.next_index as usize).min(self.chain.len())]
                    .iter()
                    .filter(|d| shard_of(&d.account, self.config.shards) == me)
                    .map(|d| u128::from(d.amount.units()))
                    .sum();
                if node.shard().deposited() != want {
                    return Err(self.fail(format!(
                        "deposits: authority {a} shard {s} credited {} units at deposit index {}, \
                         the chain's deposits below it for this shard are {want}",
                        node.shard().deposited(),
                        cursor.next_index
                    )));
                }
            }
        }
        Ok(())
    }
}
