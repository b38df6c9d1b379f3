//! Following the primary chain's deposits (the `primary` feature): one thread per local shard
//! reads the contract's `Deposited` events some blocks deep through `fastpay_primary`'s
//! [`PrimaryChain`], lets the sans-IO [`DepositFollower`] decide what to credit, and hands the
//! shard a [`DepositBatch`] through its [`DepositInlet`].
//!
//! The shard's log holds the only cursor, so the thread starts from where the shard recovered
//! and may die at any moment. A chain that is unreachable, slow or answering garbage only
//! delays deposits: each failure is counted (`primary_rpc_errors`), logged, and retried after
//! a backoff that doubles up to [`MAX_BACKOFF`]; shard threads never wait on the chain.

use crate::deposits::DepositInlet;
use crate::runtime::ApproverFactory;
use fastpay_node::RedeemApprover;
use fastpay_primary::{
    Address, DepositFollower, FollowerConfig, PrimaryChain, RedeemDomain, RedeemOrder, RedeemSigner,
};
use fastpay_wire::{
    CommitteeId, DepositBatch, DepositCredit, DepositCursor, RedeemApproval, ShardId, Transfer,
    shard_of,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use fastpay_primary::follower::DEFAULT_MAX_RANGE_BLOCKS;

/// The longest wait between two failed attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where and how deep to follow.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The chain's JSON-RPC endpoint (`http://` or, with TLS built in, `https://`).
    pub rpc: String,
    /// The contract's address.
    pub contract: Address,
    /// Blocks built on a deposit's block before it is credited.
    pub confirmations: u64,
    /// How often to look for new blocks when caught up.
    pub poll: Duration,
    /// The committee the contract must serve (its id is checked before anything is credited).
    pub committee: CommitteeId,
    /// The number of shards of this authority (to pick each shard's deposits).
    pub num_shards: u32,
    /// Where the first follower to reach the chain records the contract's redeem domain
    /// (chain id, address, committee), for the authority's [`Approver`]s.
    pub domain: Arc<OnceLock<RedeemDomain>>,
}

/// An authority's redeem approvals: its secp256k1 key (derived from its seed) and the
/// contract's domain, known once a follower has reached the chain.
pub struct Approver {
    signer: Arc<RedeemSigner>,
    domain: Arc<OnceLock<RedeemDomain>>,
}

impl Approver {
    /// The approver of the authority whose secret seed is `seed`, signing for the domain
    /// `domain` holds once set.
    pub fn factory(seed: &[u8; 32], domain: Arc<OnceLock<RedeemDomain>>) -> ApproverFactory {
        let signer = Arc::new(RedeemSigner::for_authority(seed));
        Arc::new(move || {
            Box::new(Approver {
                signer: signer.clone(),
                domain: domain.clone(),
            }) as Box<dyn RedeemApprover>
        })
    }
}

impl RedeemApprover for Approver {
    fn approve(&self, transfer: &Transfer, address: [u8; 20]) -> Option<RedeemApproval> {
        let domain = self.domain.get()?;
        let order = RedeemOrder {
            sender: transfer.sender,
            sequence: transfer.sequence_number,
            recipient: Address::from(address),
            amount: transfer.amount,
        };
        let signature = self.signer.sign(domain, &order).ok()?;
        Some(RedeemApproval {
            sender: transfer.sender,
            sequence_number: transfer.sequence_number,
            r: signature.r.0,
            s: signature.s.0,
            v: signature.v,
        })
    }
}

/// Starts one follower thread per inlet; they end soon after `stop` is set.
pub fn spawn(
    config: FollowConfig,
    inlets: Vec<DepositInlet>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    inlets
        .into_iter()
        .map(|inlet| {
            let config = config.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("deposits-{}", inlet.shard))
                .spawn(move || follow(config, inlet, stop))
        })
        .collect()
}

/// Why one pass of the follower stopped.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Chain(#[from] fastpay_primary::ChainError),
    #[error("the contract serves committee {found}, not ours ({ours})")]
    WrongCommittee {
        found: CommitteeId,
        ours: CommitteeId,
    },
    #[error("the chain's logs were refused: {0}")]
    Refused(#[from] fastpay_primary::follower::FollowerError),
    #[error(transparent)]
    Stopped(#[from] crate::deposits::ShardStopped),
}

/// What one pass found.
enum Pass {
    /// More confirmed blocks wait: go again at once.
    More,
    /// Caught up: wait for the next block.
    CaughtUp,
}

/// The follower of one shard: the chain connection, the sans-IO follower and the cursor the
/// shard stands at.
struct Follower {
    config: FollowConfig,
    inlet: DepositInlet,
    chain: Option<PrimaryChain>,
    follower: Option<DepositFollower>,
    /// The cursor the shard has (the last batch delivered ends here).
    delivered: DepositCursor,
}

fn follow(config: FollowConfig, inlet: DepositInlet, stop: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(shard = inlet.shard, error = %e, "deposit follower could not start: {e}");
            return;
        }
    };
    let shard = inlet.shard;
    let mut follower = Follower {
        delivered: inlet.cursor,
        config,
        inlet,
        chain: None,
        follower: None,
    };
    let mut backoff = follower.config.poll;
    let mut failures: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let wait = match runtime.block_on(follower.pass()) {
            Ok(pass) => {
                failures = 0;
                backoff = follower.config.poll;
                match pass {
                    Pass::More => Duration::ZERO,
                    Pass::CaughtUp => follower.config.poll,
                }
            }
            Err(PassError::Stopped(_)) => return,
            Err(e) => {
                follower.inlet.rpc_error();
                failures += 1;
                // The first failure and then every tenth are logged: a chain down for hours
                // does not flood the log.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(
                        shard,
                        error = %e,
                        failures,
                        "shard {shard}: following deposits failed ({e}); retrying in {backoff:?}"
                    );
                }
                let wait = backoff;
                backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                wait
            }
        };
        sleep_unless_stopped(wait, &stop);
    }
}

/// Sleeps for `wait` in short steps, returning early once `stop` is set.
fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = wait;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
}

impl Follower {
    /// Connects if needed, then reads at most one range of confirmed blocks and delivers what
    /// the follower credits.
    async fn pass(&mut self) -> Result<Pass, PassError> {
        let chain = match &self.chain {
            Some(chain) => chain,
            None => {
                let chain =
                    PrimaryChain::connect(&self.config.rpc, self.config.contract, None).await?;
                let found = chain.domain().committee_id;
                if found != self.config.committee {
                    return Err(PassError::WrongCommittee {
                        found,
                        ours: self.config.committee,
                    });
                }
                let _ = self.config.domain.set(chain.domain());
                let deployed_at = chain.deployed_at().await?;
                let mut cursor = self.delivered;
                cursor.scan_from = cursor.scan_from.max(deployed_at);
                self.follower = Some(DepositFollower::new(
                    cursor,
                    FollowerConfig {
                        confirmations: self.config.confirmations,
                        max_range_blocks: DEFAULT_MAX_RANGE_BLOCKS,
                    },
                ));
                tracing::info!(
                    shard = self.inlet.shard,
                    contract = %self.config.contract,
                    next_index = cursor.next_index,
                    scan_from = cursor.scan_from,
                    "shard {}: following deposits of {} from block {}, deposit index {}",
                    self.inlet.shard,
                    self.config.contract,
                    cursor.scan_from,
                    cursor.next_index
                );
                self.chain.insert(chain)
            }
        };
        let Some(follower) = self.follower.as_mut() else {
            return Ok(Pass::CaughtUp);
        };
        let head = chain.head().await?;
        self.inlet.set_blocks_behind(follower.blocks_behind(head));
        let Some(range) = follower.next_range(head) else {
            return Ok(Pass::CaughtUp);
        };
        let logs = chain.log_batch(range).await?;
        let step = follower.on_batch(head, &logs)?;
        let to = follower.cursor();
        self.inlet.set_blocks_behind(follower.blocks_behind(head));
        if to != self.delivered {
            let me = ShardId(self.inlet.shard);
            let credits = step
                .credit
                .iter()
                .filter(|d| shard_of(&d.account, self.config.num_shards) == me)
                .map(|d| DepositCredit {
                    index: d.index,
                    account: d.account,
                    amount: d.amount,
                })
                .collect();
            self.inlet.deliver(DepositBatch {
                from: self.delivered,
                to,
                credits,
            })?;
            self.delivered = to;
        }
        if let Some(stall) = step.stall {
            tracing::debug!(
                shard = self.inlet.shard,
                ?stall,
                "deposit logs incomplete; reading the range again"
            );
            return Ok(Pass::CaughtUp);
        }
        Ok(match follower.blocks_behind(head) {
            0 => Pass::CaughtUp,
            _ => Pass::More,
        })
    }
}
