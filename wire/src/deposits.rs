//! Money entering FastPay from the primary chain (the deposits an authority's shard credits and
//! the cursor that makes each one credited exactly once) and leaving it (transfers to
//! [`PRIMARY_EXIT`] naming an Ethereum address).
//!
//! The primary chain's contract numbers deposits 0, 1, 2, ... Each shard follows them in that
//! order and keeps a [`DepositCursor`] in its durable state: every index below `next_index` has
//! been looked at (and credited, when its account is the shard's). A [`DepositBatch`] names the
//! cursor it starts from and the one it ends at, so a shard applies a batch only when it
//! continues exactly where the shard stands: a batch replayed, duplicated or skipped ahead is
//! refused whole, and no index is ever credited twice.

use crate::base_types::{AccountId, Amount, UserData};
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

/// The account money leaving FastPay for the primary chain is paid to: a transfer to it, its
/// user data naming an Ethereum address ([`exit_user_data`]), is redeemed on the contract.
/// All zero bytes: a point of small order that no key signs for, so it can never spend, and
/// the contract refuses deposits to it; its balance is everything that left.
pub const PRIMARY_EXIT: AccountId = AccountId([0; 32]);

/// The user data of a transfer to [`PRIMARY_EXIT`] that pays `address` on the primary chain:
/// twelve zero bytes, then the 20-byte address.
pub fn exit_user_data(address: [u8; 20]) -> UserData {
    let mut bytes = [0u8; 32];
    bytes[12..].copy_from_slice(&address);
    UserData(bytes)
}

/// The primary-chain address a transfer to `recipient` with `user_data` pays: `None` unless
/// the recipient is [`PRIMARY_EXIT`] and the user data is [`exit_user_data`]'s form (with a
/// nonzero address).
pub fn exit_address(recipient: &AccountId, user_data: Option<&UserData>) -> Option<[u8; 20]> {
    if *recipient != PRIMARY_EXIT {
        return None;
    }
    let bytes = user_data?.0;
    let (zeros, address) = bytes.split_at(12);
    if zeros.iter().any(|b| *b != 0) || address.iter().all(|b| *b == 0) {
        return None;
    }
    address.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_addresses_round_trip_and_refuse_other_forms() {
        let address = [7u8; 20];
        let data = exit_user_data(address);
        assert_eq!(exit_address(&PRIMARY_EXIT, Some(&data)), Some(address));
        assert_eq!(exit_address(&AccountId([1; 32]), Some(&data)), None);
        assert_eq!(exit_address(&PRIMARY_EXIT, None), None);
        assert_eq!(exit_address(&PRIMARY_EXIT, Some(&UserData([1; 32]))), None);
        assert_eq!(
            exit_address(&PRIMARY_EXIT, Some(&exit_user_data([0; 20]))),
            None
        );
    }
}
