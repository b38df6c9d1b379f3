//! The server's primary-chain commands (the engine's `primary` feature): naming an authority's
//! redeem key in its committee entry, deploying the contract for a committee, and starting
//! the deposit followers of `run --primary-rpc`.

use anyhow::{Context, Result};
use fastpay_engine::follower::{Approver, FollowConfig, spawn};
use fastpay_engine::runtime::ApproverFactory;
use fastpay_engine::runtime::Engine;
use fastpay_primary::{Address, EthCommittee, PrimaryChain, RedeemDomain, RedeemSigner};
use fastpay_wire::{AuthorityEntry, CommitteeFile};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The Ethereum address of the redeem key derived from an authority's secret seed.
pub fn eth_address(seed: &[u8; 32]) -> String {
    RedeemSigner::for_authority(seed).address().to_string()
}

/// `deploy-contract`: deploys the contract for the committee and prints its address.
pub fn deploy_contract(rpc: &str, eth_key: &Path, committee_path: &Path) -> Result<()> {
    let committee = CommitteeFile::load(committee_path)?;
    let eth = EthCommittee::from_file(&committee).with_context(|| {
        format!(
            "{}: not a committee the contract accepts",
            committee_path.display()
        )
    })?;
    let key = fastpay_primary::read_eth_key(eth_key)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let chain = runtime
        .block_on(PrimaryChain::deploy(rpc, key, &eth))
        .with_context(|| format!("deploy the contract through {rpc}"))?;
    eprintln!(
        "deployed the FastPay contract for committee {} ({} authorities, quorum {}) at:",
        committee.committee.id(),
        eth.signers().len(),
        eth.quorum()
    );
    println!("{}", chain.address());
    Ok(())
}

/// What `run` needs to follow deposits, checked before the engine starts.
pub struct Follow {
    rpc: String,
    contract: Address,
    confirmations: u64,
    poll: Duration,
    /// The contract's redeem domain, once a follower reached the chain.
    domain: Arc<OnceLock<RedeemDomain>>,
}

impl Follow {
    /// Parses the flags (`None` without --primary-rpc).
    pub fn from_flags(
        rpc: Option<&String>,
        contract: Option<&String>,
        confirmations: u64,
        poll_ms: u64,
    ) -> Result<Option<Self>> {
        let (Some(rpc), Some(contract)) = (rpc, contract) else {
            return Ok(None);
        };
        let contract = contract.parse().with_context(|| {
            format!("--primary-contract {contract:?} is not an Ethereum address")
        })?;
        Ok(Some(Self {
            rpc: rpc.clone(),
            contract,
            confirmations,
            poll: Duration::from_millis(poll_ms.max(1)),
            domain: Arc::new(OnceLock::new()),
        }))
    }

    /// The approvers of redeems for the engine's shards: the authority's redeem key, signing
    /// once a follower has learned the contract's domain.
    pub fn approvers(&self, seed: &[u8; 32]) -> ApproverFactory {
        Approver::factory(seed, self.domain.clone())
    }

    /// Starts a follower for each of the engine's local shards.
    pub fn start(
        self,
        committee: &CommitteeFile,
        entry: &AuthorityEntry,
        engine: &mut Engine,
        stop: &Arc<AtomicBool>,
    ) -> Result<()> {
        let config = FollowConfig {
            rpc: self.rpc.clone(),
            contract: self.contract,
            confirmations: self.confirmations,
            poll: self.poll,
            committee: committee.committee.id(),
            num_shards: entry.shards,
            domain: self.domain.clone(),
        };
        let inlets = engine.take_deposit_inlets();
        let shards = inlets.len();
        // The threads end when the engine's shards stop (their queues close) or at `stop`.
        spawn(config, inlets, stop.clone()).context("start the deposit followers")?;
        tracing::info!(
            "following deposits of {} on {} ({shards} shard(s), {} confirmations)",
            self.contract,
            self.rpc,
            self.confirmations
        );
        Ok(())
    }
}
