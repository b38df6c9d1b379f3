//! The way in for deposits from the primary chain: one bounded queue per local shard, which a
//! follower (`crate::follower`, with the `primary` feature) fills with [`DepositBatch`]es and
//! the shard's loop drains into its node, which credits and logs them.
//!
//! The follower owns no durable state. It starts from the cursor the shard recovered
//! ([`DepositInlet::cursor`]) and each batch names the cursor it continues from, so the node
//! refuses anything but the next batch: a deposit is credited once however the process dies.

use crate::counters::{Counter, ShardCounters};
use crossbeam_channel::{Receiver, Sender};
use fastpay_wire::{DepositBatch, DepositCursor};
use mio::Waker;
use std::sync::Arc;

/// Batches a follower may queue for its shard before it waits: the shard takes them within a
/// round, so a full queue means the shard is stopping or stuck.
pub const DEPOSIT_QUEUE: usize = 64;

/// What [`DepositInlet::deliver`] reports when the shard has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard {0} has stopped")]
pub struct ShardStopped(pub u32);

/// A follower's handle on one shard: where the shard stood when it started, and the queue to it.
pub struct DepositInlet {
    /// The shard.
    pub shard: u32,
    /// The shard's deposit cursor when the engine started (recovered from its log).
    pub cursor: DepositCursor,
    /// The shard's counters, for the follower's metrics (blocks behind, RPC errors).
    pub counters: Arc<ShardCounters>,
    sender: Sender<DepositBatch>,
    waker: Arc<Waker>,
}

impl DepositInlet {
    pub(crate) fn new(
        shard: u32,
        cursor: DepositCursor,
        counters: Arc<ShardCounters>,
        waker: Arc<Waker>,
    ) -> (Self, Receiver<DepositBatch>) {
        let (sender, receiver) = crossbeam_channel::bounded(DEPOSIT_QUEUE);
        let inlet = Self {
            shard,
            cursor,
            counters,
            sender,
            waker,
        };
        (inlet, receiver)
    }

    /// Queues `batch` for the shard and wakes it; waits while the queue is full (the shard
    /// drains it every round).
    pub fn deliver(&self, batch: DepositBatch) -> Result<(), ShardStopped> {
        self.sender
            .send(batch)
            .map_err(|_| ShardStopped(self.shard))?;
        let _ = self.waker.wake();
        Ok(())
    }

    /// Counts a failed or refused request to the chain.
    pub fn rpc_error(&self) {
        self.counters.add(Counter::PrimaryRpcErrors, 1);
    }

    /// Sets how many confirmed blocks are still to be scanned.
    pub fn set_blocks_behind(&self, blocks: u64) {
        self.counters.set(Counter::PrimaryBlocksBehind, blocks);
    }
}
