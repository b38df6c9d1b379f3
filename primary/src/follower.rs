//! The sans-IO deposit follower: decides which deposits an authority credits, exactly once, in
//! index order, and only once they are buried under enough blocks.
//!
//! The caller owns all I/O. In a loop it reads the chain's head, asks [`DepositFollower::next_range`]
//! which blocks to fetch, fetches that range's `Deposited` logs (and the contract's
//! `depositCount` at the range's last block, a completeness check), and feeds them to
//! [`DepositFollower::on_batch`], which returns the deposits to credit. The caller credits them
//! durably together with the new [`FollowerCursor`]; after a crash it rebuilds the follower from
//! the last cursor it stored and nothing is credited twice.
//!
//! A block is *confirmed* once `confirmations` blocks are built on it (head >= block +
//! confirmations). Nothing above the confirmed height is credited and the scanned-blocks cursor
//! never passes it, so a log that a reorganisation removes before it is confirmed is simply not
//! there the next time that range is fetched. A reorganisation deeper than `confirmations` is
//! outside the model: choose `confirmations` for the chain's finality.

use alloy::primitives::B256;
use fastpay_wire::DepositCursor;
use fastpay_wire::base_types::{AccountId, Amount};
use thiserror::Error;

/// Default blocks per log query. Public Ethereum RPC services cap `eth_getLogs` ranges,
/// commonly at 1,000 to 10,000 blocks; 1,000 stays under the strictest of those caps.
pub const DEFAULT_MAX_RANGE_BLOCKS: u64 = 1_000;

/// A block range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// The first block.
    pub from: u64,
    /// The last block.
    pub to: u64,
}

/// A block by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// The block's height.
    pub number: u64,
    /// The block's hash.
    pub hash: B256,
}

/// One `Deposited` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    /// The contract's sequential deposit index (0, 1, 2, ...).
    pub index: u64,
    /// The FastPay account credited.
    pub account: AccountId,
    /// The units credited.
    pub amount: Amount,
    /// The block the deposit is in.
    pub block: BlockRef,
}

/// What the chain returned for one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// The blocks the logs were asked for.
    pub range: BlockRange,
    /// The `Deposited` logs in those blocks, in any order.
    pub logs: Vec<Deposit>,
    /// The contract's `depositCount` at block `range.to`, when the caller read it: proves the
    /// logs are complete (an RPC node behind a load balancer may miss the newest blocks' logs
    /// without saying so).
    pub deposit_count: Option<u64>,
}

/// What the follower must store durably with the deposits it credits: the shard's
/// [`DepositCursor`] (every index below `next_index` credited, blocks below `scan_from`
/// scanned).
pub type FollowerCursor = DepositCursor;

/// How deep and how wide the follower reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerConfig {
    /// Blocks built on a deposit's block before it is credited.
    pub confirmations: u64,
    /// The most blocks asked for at once.
    pub max_range_blocks: u64,
}

/// Why the follower stopped short of the end of a batch; the blocks are fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Deposit `missing` is absent while a later one is present.
    Gap {
        /// The first index not found.
        missing: u64,
    },
    /// The contract counted more deposits by the range's end than the logs showed.
    Incomplete {
        /// The contract's count at the end of the range.
        deposit_count: u64,
        /// The index the logs reached.
        next_index: u64,
    },
}

/// The result of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// Deposits to credit, in index order; each index is returned once over the follower's life.
    pub credit: Vec<Deposit>,
    /// Why the scanned-blocks cursor did not advance, if it did not.
    pub stall: Option<Stall>,
}

/// A batch the follower refuses as a whole (nothing credited, the cursor unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FollowerError {
    /// The range is empty (its end before its start).
    #[error("empty block range {from}..={to}")]
    EmptyRange {
        /// The range's start.
        from: u64,
        /// The range's end.
        to: u64,
    },
    /// The range starts after the first unscanned block, so blocks would be skipped.
    #[error("range starts at block {from} but block {scan_from} is not scanned yet")]
    SkipsBlocks {
        /// The range's start.
        from: u64,
        /// The first unscanned block.
        scan_from: u64,
    },
    /// A log lies outside the range it was returned for.
    #[error("deposit {index} is in block {block}, outside the range asked for")]
    OutsideRange {
        /// The log's deposit index.
        index: u64,
        /// The log's block.
        block: u64,
    },
    /// Two logs give one index different contents (a confused or lying RPC node).
    #[error("two different deposits with index {0}")]
    Conflict(u64),
    /// More deposits than the contract's count at the end of the range.
    #[error("logs reach deposit {next_index} but the contract counted only {deposit_count}")]
    CountExceeded {
        /// The contract's count.
        deposit_count: u64,
        /// The index the logs reached.
        next_index: u64,
    },
}

/// Credits each deposit once, in index order, once confirmed. Pure: no I/O, no clock.
#[derive(Debug, Clone)]
pub struct DepositFollower {
    cursor: FollowerCursor,
    config: FollowerConfig,
}

impl DepositFollower {
    /// A follower resuming from `cursor` (for a new authority: index 0 and the contract's
    /// deployment block).
    pub fn new(cursor: FollowerCursor, config: FollowerConfig) -> Self {
        Self { cursor, config }
    }

    /// The cursor to store with the deposits credited so far.
    pub fn cursor(&self) -> FollowerCursor {
        self.cursor
    }

    /// The highest confirmed block when the head is `head`.
    fn confirmed_height(&self, head: u64) -> Option<u64> {
        head.checked_sub(self.config.confirmations)
    }

    /// The blocks to fetch next when the chain's head is `head`: from the first unscanned block
    /// to the confirmed height, at most `max_range_blocks`; `None` when nothing new is confirmed.
    pub fn next_range(&self, head: u64) -> Option<BlockRange> {
        let confirmed = self.confirmed_height(head)?;
        let from = self.cursor.scan_from;
        if confirmed < from {
            return None;
        }
        let width = self.config.max_range_blocks.max(1) - 1;
        Some(BlockRange {
            from,
            to: confirmed.min(from.saturating_add(width)),
        })
    }

    /// Confirmed blocks not yet scanned when the head is `head` (for metrics).
    pub fn blocks_behind(&self, head: u64) -> u64 {
        self.confirmed_height(head).map_or(0, |confirmed| {
            (confirmed + 1).saturating_sub(self.cursor.scan_from)
        })
    }

    /// Takes the logs of `batch`, fetched when the head was `head` (or later), and returns the
    /// confirmed deposits to credit. Logs above the confirmed height are ignored (they are
    /// fetched again once confirmed), and so are indexes already credited.
    pub fn on_batch(&mut self, head: u64, batch: &LogBatch) -> Result<Step, FollowerError> {
        let BlockRange { from, to } = batch.range;
        if to < from {
            return Err(FollowerError::EmptyRange { from, to });
        }
        if from > self.cursor.scan_from {
            return Err(FollowerError::SkipsBlocks {
                from,
                scan_from: self.cursor.scan_from,
            });
        }
        if let Some(log) = batch
            .logs
            .iter()
            .find(|log| log.block.number < from || log.block.number > to)
        {
            return Err(FollowerError::OutsideRange {
                index: log.index,
                block: log.block.number,
            });
        }
        let Some(confirmed) = self.confirmed_height(head) else {
            return Ok(Step::default());
        };
        let end = to.min(confirmed);
        if end < self.cursor.scan_from {
            return Ok(Step::default());
        }

        let mut logs: Vec<&Deposit> = batch
            .logs
            .iter()
            .filter(|log| log.block.number <= end && log.index >= self.cursor.next_index)
            .collect();
        logs.sort_unstable_by_key(|log| log.index);
        if let Some(pair) = logs
            .windows(2)
            .find(|pair| pair[0].index == pair[1].index && pair[0] != pair[1])
        {
            return Err(FollowerError::Conflict(pair[0].index));
        }
        logs.dedup_by_key(|log| log.index);
        let mut credit: Vec<Deposit> = Vec::with_capacity(logs.len());
        let mut next_index = self.cursor.next_index;
        let mut stall = None;
        for log in logs {
            if log.index != next_index {
                stall = Some(Stall::Gap {
                    missing: next_index,
                });
                break;
            }
            credit.push(*log);
            next_index = next_index.saturating_add(1);
        }
        if stall.is_none()
            && to <= confirmed
            && let Some(deposit_count) = batch.deposit_count
        {
            if next_index > deposit_count {
                return Err(FollowerError::CountExceeded {
                    deposit_count,
                    next_index,
                });
            }
            if next_index < deposit_count {
                stall = Some(Stall::Incomplete {
                    deposit_count,
                    next_index,
                });
            }
        }

        self.cursor.next_index = next_index;
        if stall.is_none() {
            self.cursor.scan_from = end + 1;
        }
        Ok(Step { credit, stall })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: FollowerConfig = FollowerConfig {
        confirmations: 3,
        max_range_blocks: 100,
    };

    fn deposit(index: u64, block: u64) -> Deposit {
        Deposit {
            index,
            account: AccountId([index as u8 + 1; 32]),
            amount: Amount::new(100 + index),
            block: BlockRef {
                number: block,
                hash: B256::repeat_byte(block as u8),
            },
        }
    }

    fn batch(from: u64, to: u64, logs: &[Deposit], count: Option<u64>) -> LogBatch {
        LogBatch {
            range: BlockRange { from, to },
            logs: logs.to_vec(),
            deposit_count: count,
        }
    }

    fn start() -> DepositFollower {
        DepositFollower::new(
            FollowerCursor {
                next_index: 0,
                scan_from: 10,
            },
            CONFIG,
        )
    }

    fn indexes(step: &Step) -> Vec<u64> {
        step.credit.iter().map(|d| d.index).collect()
    }

    #[test]
    fn asks_only_for_confirmed_blocks_in_bounded_ranges() {
        let mut f = start();
        assert_eq!(f.next_range(12), None);
        assert_eq!(f.next_range(13), Some(BlockRange { from: 10, to: 10 }));
        assert_eq!(f.next_range(1_000), Some(BlockRange { from: 10, to: 109 }));
        assert_eq!(f.blocks_behind(1_000), 988);
        let step = f.on_batch(1_000, &batch(10, 109, &[], Some(0))).unwrap();
        assert_eq!(step, Step::default());
        assert_eq!(f.next_range(1_000), Some(BlockRange { from: 110, to: 209 }));
        assert_eq!(f.next_range(2), None, "a head below the confirmations");
    }

    #[test]
    fn credits_confirmed_deposits_in_index_order_once() {
        let mut f = start();
        let logs = [deposit(1, 11), deposit(0, 10), deposit(2, 14)];
        // Head 15: blocks up to 12 are confirmed, so 0 and 1 are, 2 is not.
        let step = f.on_batch(15, &batch(10, 15, &logs, None)).unwrap();
        assert_eq!(indexes(&step), vec![0, 1]);
        assert_eq!(
            f.cursor(),
            FollowerCursor {
                next_index: 2,
                scan_from: 13
            }
        );
        // The same logs again (a caller retrying) credit nothing new; 2 confirms at head 17.
        let step = f.on_batch(16, &batch(10, 16, &logs, None)).unwrap();
        assert!(step.credit.is_empty());
        let step = f.on_batch(17, &batch(13, 17, &logs[2..], None)).unwrap();
        assert_eq!(indexes(&step), vec![2]);
    }

    #[test]
    fn duplicates_credit_once_and_conflicts_are_refused() {
        let mut f = start();
        let logs = [deposit(0, 10), deposit(0, 10), deposit(1, 10)];
        let step = f.on_batch(20, &batch(10, 17, &logs, Some(2))).unwrap();
        assert_eq!(indexes(&step), vec![0, 1]);

        let mut f = start();
        let mut other = deposit(0, 10);
        other.amount = Amount::new(1);
        let before = f.cursor();
        assert_eq!(
            f.on_batch(20, &batch(10, 17, &[deposit(0, 10), other], None)),
            Err(FollowerError::Conflict(0))
        );
        assert_eq!(f.cursor(), before);
    }

    #[test]
    fn a_gap_credits_the_prefix_and_rescans() {
        let mut f = start();
        let logs = [deposit(0, 10), deposit(2, 11), deposit(3, 12)];
        let step = f.on_batch(20, &batch(10, 17, &logs, None)).unwrap();
        assert_eq!(indexes(&step), vec![0]);
        assert_eq!(step.stall, Some(Stall::Gap { missing: 1 }));
        assert_eq!(f.cursor().scan_from, 10, "the range is scanned again");
        let full = [
            deposit(0, 10),
            deposit(1, 11),
            deposit(2, 11),
            deposit(3, 12),
        ];
        let step = f.on_batch(20, &batch(10, 17, &full, Some(4))).unwrap();
        assert_eq!(indexes(&step), vec![1, 2, 3]);
        assert_eq!(step.stall, None);
        assert_eq!(f.cursor().scan_from, 18);
    }

    #[test]
    fn the_contracts_count_catches_missing_trailing_logs() {
        let mut f = start();
        let step = f
            .on_batch(20, &batch(10, 17, &[deposit(0, 10)], Some(2)))
            .unwrap();
        assert_eq!(indexes(&step), vec![0]);
        assert_eq!(
            step.stall,
            Some(Stall::Incomplete {
                deposit_count: 2,
                next_index: 1
            })
        );
        assert_eq!(f.cursor().scan_from, 10);
        assert_eq!(
            f.on_batch(20, &batch(10, 17, &[deposit(1, 12)], Some(1))),
            Err(FollowerError::CountExceeded {
                deposit_count: 1,
                next_index: 2
            })
        );
    }

    #[test]
    fn a_log_reorganised_away_before_it_is_confirmed_is_never_credited() {
        let mut f = start();
        // Deposit 0 lands in block 12 of one branch; at head 13 it has one block on top.
        let doomed = deposit(0, 12);
        let step = f.on_batch(13, &batch(10, 13, &[doomed], None)).unwrap();
        assert!(step.credit.is_empty());
        // A reorganisation replaces blocks 12 and 13; the new branch has another deposit 0
        // in block 14. Nothing of the old branch was credited, so only the new one is.
        let mut replacement = deposit(0, 14);
        replacement.account = AccountId([0xaa; 32]);
        let range = f.next_range(17).unwrap();
        assert_eq!(range, BlockRange { from: 11, to: 14 });
        let step = f
            .on_batch(17, &batch(11, 14, &[replacement], Some(1)))
            .unwrap();
        assert_eq!(step.credit, vec![replacement]);
    }

    #[test]
    fn restarting_from_a_cursor_never_credits_an_index_twice() {
        let logs: Vec<Deposit> = (0..6).map(|i| deposit(i, 10 + i)).collect();
        let mut f = start();
        let first = f.on_batch(15, &batch(10, 15, &logs, None)).unwrap();
        assert_eq!(indexes(&first), vec![0, 1, 2]);
        // A crash after storing the cursor; the restarted follower scans from the deployment
        // block again (its stored scan position lost), which is allowed.
        let stored = f.cursor();
        let mut again = DepositFollower::new(
            FollowerCursor {
                next_index: stored.next_index,
                scan_from: 10,
            },
            CONFIG,
        );
        let step = again.on_batch(30, &batch(10, 27, &logs, Some(6))).unwrap();
        assert_eq!(indexes(&step), vec![3, 4, 5]);
    }

    #[test]
    fn refuses_batches_that_skip_blocks_or_hold_strays() {
        let mut f = start();
        assert_eq!(
            f.on_batch(30, &batch(11, 20, &[], None)),
            Err(FollowerError::SkipsBlocks {
                from: 11,
                scan_from: 10
            })
        );
        assert_eq!(
            f.on_batch(30, &batch(10, 20, &[deposit(0, 21)], None)),
            Err(FollowerError::OutsideRange {
                index: 0,
                block: 21
            })
        );
        assert_eq!(
            f.on_batch(30, &batch(10, 9, &[], None)),
            Err(FollowerError::EmptyRange { from: 10, to: 9 })
        );
    }
}
