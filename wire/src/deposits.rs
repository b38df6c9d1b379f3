//! Money entering FastPay from the primary chain: the deposits an authority's shard credits and
//! the cursor that makes each one credited exactly once.
//!
//! The primary chain's contract numbers deposits 0, 1, 2, ... Each shard follows them in that
//! order and keeps a [`DepositCursor`] in its durable state: every index below `next_index` has
//! been looked at (and credited, when its account is the shard's). A [`DepositBatch`] names the
//! cursor it starts from and the one it ends at, so a shard applies a batch only when it
//! continues exactly where the shard stands: a batch replayed, duplicated or skipped ahead is
//! refused whole, and no index is ever credited twice.

use crate::base_types::{AccountId, Amount};
use serde::{Deserialize, Serialize};

/// How far a shard has followed the primary chain's deposits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DepositCursor {
    /// The index of the next deposit to look at: every smaller index was credited (or belongs
    /// to another shard).
    pub next_index: u64,
    /// The first primary-chain block not yet scanned to its end. Scanning again from an earlier
    /// block is always safe (indexes below `next_index` are skipped), only slower.
    pub scan_from: u64,
}

/// One deposit to credit: the contract's index, the account and the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DepositCredit {
    /// The contract's sequential deposit index.
    pub index: u64,
    /// The FastPay account credited.
    pub account: AccountId,
    /// The units credited (1 unit = 1 gwei on Ethereum).
    pub amount: Amount,
}

/// Deposits that move a shard's cursor from `from` to `to`: the deposits with an index in
/// `from.next_index..to.next_index` that belong to the shard, in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositBatch {
    /// The cursor the batch continues from.
    pub from: DepositCursor,
    /// The cursor after the batch.
    pub to: DepositCursor,
    /// The deposits to credit, in increasing index order, each in `from.next_index..to.next_index`.
    pub credits: Vec<DepositCredit>,
}
