//! FastPay's primary chain: money enters FastPay by a deposit into an Ethereum contract and
//! leaves it by a redeem that a quorum of the committee signed.
//!
//! What this crate does:
//! - [`units`]: 1 FastPay unit = 1 gwei, with checked conversions;
//! - [`redeem`]: the digest the contract checks, an authority's secp256k1 signing key, the
//!   committee as the contract holds it and the certificate a client submits (all sans-IO);
//! - [`follower`]: the sans-IO [`DepositFollower`] that tells an authority which deposits to
//!   credit, exactly once and only once confirmed;
//! - [`chain`]: [`PrimaryChain`], a thin async wrapper over the contract's `sol!` bindings
//!   (deploy, deposit, redeem, logs, views) on any Ethereum JSON-RPC endpoint;
//! - [`devnet`]: a local anvil for tests and demos.
//!
//! What it does not do: run a loop, store a cursor or credit a balance. The authority runtime
//! drives the follower and stores what it returns; the wallet signs and sends.
//!
//! Endpoints: `http://` always; `https://` with the `https` feature (rustls), left off by default
//! because the tests only talk to a local anvil and TLS is a large share of the build.
//!
//! The contract's source is `contracts/FastPayPrimary.sol`; the bindings come from the
//! committed artifact `artifacts/FastPayPrimary.json`, which `scripts/contract.sh check` holds
//! to a fresh compile.
#![forbid(unsafe_code)]

pub mod chain;
pub mod devnet;
pub mod follower;
pub mod redeem;
pub mod units;

mod bindings;

pub use alloy;
pub use alloy::primitives::Address;
pub use chain::{ChainError, Escrow, KeyFileError, PrimaryChain, Revert, read_eth_key};
pub use follower::{
    BlockRange, BlockRef, Deposit, DepositFollower, FollowerConfig, FollowerCursor, LogBatch,
    Stall, Step,
};
pub use redeem::{
    CommitteeFileError, EthCommittee, RedeemDomain, RedeemOrder, RedeemSignature, RedeemSigner,
    redeem_digest, redeem_members,
};
pub use units::{WEI_PER_UNIT, units_to_wei, wei_to_units};
