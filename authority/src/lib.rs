//! One shard of a FastPay authority as a pure state machine.
//!
//! [`AuthorityShard`] owns the accounts that map to its shard, votes for transfer orders,
//! applies confirmation orders, cross-shard credits and deposits from the primary chain, and answers account queries. It takes
//! decoded messages and returns replies and cross-shard credits as values: it opens no socket,
//! starts no thread, reads no clock and touches no file, so a whole committee runs
//! deterministically inside one test. The runtime (`fastpay-engine`) moves the bytes.
//!
//! Safety rules it enforces: one vote per account and sequence number (the same order again
//! gets the same vote, a different one is refused); a certificate is applied once, in sequence
//! order; a credit is applied once; every refusal is a typed [`AuthorityError`] that leaves
//! the state unchanged.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
mod dispatch;
mod error;
mod genesis;
mod shard;

pub use accounts::AccountState;
pub use dispatch::Handled;
pub use error::{AuthorityError, DepositError};
pub use genesis::{Genesis, GenesisError};
pub use shard::{
    AuthorityShard, ConfirmationCheck, Confirmed, OrderCheck, ShardSetupError, ShardSnapshot,
    ShardTotals, Voted,
};
