//! A real anvil for the tests: the binary from the pinned npm package, on a free port.

#![allow(dead_code)]

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use fastpay_primary::{EthCommittee, PrimaryChain, RedeemSigner, devnet};
use fastpay_wire::base_types::CommitteeId;

/// A running anvil (see [`fastpay_primary::devnet`]).
pub struct Anvil(pub devnet::Anvil);

impl Anvil {
    /// Starts anvil on a free port and waits until it listens.
    pub fn start() -> Anvil {
        Anvil(devnet::Anvil::start().expect("start anvil"))
    }

    /// Dev key `i` (0 or 1), funded.
    pub fn key(&self, i: usize) -> PrivateKeySigner {
        self.0.key(i)
    }
}

impl std::ops::Deref for Anvil {
    type Target = devnet::Anvil;
    fn deref(&self) -> &devnet::Anvil {
        &self.0
    }
}

/// A committee of `n` equal-weight authorities with the BFT quorum 2f + 1 (n = 3f + 1 or more).
pub struct TestCommittee {
    /// The authorities' redeem keys.
    pub keys: Vec<RedeemSigner>,
    /// The committee as the contract holds it.
    pub committee: EthCommittee,
}

impl TestCommittee {
    /// `n` fresh keys, quorum `n - (n - 1) / 3`, committee id `id`.
    pub fn new(n: usize, id: u8) -> Self {
        let keys: Vec<RedeemSigner> = (0..n).map(|_| RedeemSigner::random()).collect();
        let quorum = (n - (n - 1) / 3) as u64;
        let committee = EthCommittee::new(
            keys.iter().map(|k| (k.address(), 1)),
            quorum,
            CommitteeId([id; 32]),
        )
        .expect("committee");
        Self { keys, committee }
    }
}

/// Deploys a contract for `committee` on `anvil`, paid by dev key 0.
pub async fn deploy(anvil: &Anvil, committee: &EthCommittee) -> PrimaryChain {
    PrimaryChain::deploy(&anvil.url, anvil.key(0), committee)
        .await
        .expect("deploy")
}

/// A fresh address that holds nothing.
pub fn fresh_address(tag: u8) -> Address {
    Address::from_word(B256::repeat_byte(tag))
}
