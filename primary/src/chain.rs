//! The contract on a real chain, over JSON-RPC: a thin async wrapper around the `sol!`
//! bindings. The logic it needs (units, digests, which deposits to credit) lives in the pure
//! modules; this one only moves values to and from the chain.

use std::time::Duration;

use alloy::contract::Error as ContractError;
use alloy::eips::BlockId;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest;
use fastpay_wire::base_types::{AccountId, Amount, CommitteeId, SequenceNumber};
use thiserror::Error;

use crate::bindings::FastPayPrimary::{self, FastPayPrimaryErrors, FastPayPrimaryInstance};
use crate::follower::{BlockRange, BlockRef, Deposit, LogBatch};
use crate::redeem::{EthCommittee, RedeemDomain, RedeemOrder, RedeemSignature};
use crate::units::{UnitError, units_to_wei, wei_to_units};

/// How long one JSON-RPC request may take before it fails (and the caller retries). Far above
/// a healthy endpoint's answer (milliseconds), short enough that a hung endpoint is noticed.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a sent transaction's receipt is asked for: a fraction of Ethereum's 12-second
/// block time, and a few of anvil's instant blocks.
pub const RECEIPT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls before giving up on a receipt: 3 minutes at [`RECEIPT_POLL_INTERVAL`], about 15
/// Ethereum blocks (the caller can look the transaction up again; it may still be mined).
pub const RECEIPT_POLLS: u32 = 1_800;

/// A revert of the contract, decoded from its custom errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Revert {
    /// The constructor refused the committee.
    #[error("bad committee: {0}")]
    BadCommittee(String),
    /// A deposit of zero wei.
    #[error("zero deposit")]
    ZeroDeposit,
    /// A deposit that is not a whole number of gwei.
    #[error("{0} wei is not a whole number of units (gwei)")]
    FractionalUnit(U256),
    /// A deposit of more units than a u64 holds.
    #[error("{0} wei is more units than a u64 holds")]
    DepositTooLarge(U256),
    /// A deposit to the zero account.
    #[error("malformed account {0}")]
    MalformedAccount(B256),
    /// A redeem of zero units.
    #[error("zero amount")]
    ZeroAmount,
    /// A redeem to the zero address.
    #[error("zero recipient")]
    ZeroRecipient,
    /// The transfer was redeemed already.
    #[error("transfer ({sender}, {sequence}) already redeemed")]
    AlreadyRedeemed {
        /// The transfer's sender.
        sender: B256,
        /// The transfer's sequence number.
        sequence: u64,
    },
    /// A signature is malformed or does not recover.
    #[error("signature {index} is invalid")]
    BadSignature {
        /// Its position in the list.
        index: u64,
    },
    /// A signature recovers to an address outside the committee (also what a tampered amount
    /// or recipient looks like: the digest changed, so the signer recovered is a stranger).
    #[error("signature {index} recovers to {signer}, not a committee member")]
    UnknownSigner {
        /// Its position in the list.
        index: u64,
        /// The address recovered.
        signer: Address,
    },
    /// A signer repeated or out of increasing order.
    #[error("signature {index} by {signer} repeats a signer or is out of order")]
    DuplicateOrUnorderedSigner {
        /// Its position in the list.
        index: u64,
        /// The signer.
        signer: Address,
    },
    /// Less than a quorum signed.
    #[error("signatures carry weight {weight}, below the quorum {quorum}")]
    BelowQuorum {
        /// The weight signed.
        weight: u64,
        /// The quorum.
        quorum: u64,
    },
    /// The escrow cannot cover the amount.
    #[error("escrow of {escrow_units} units cannot pay {amount}")]
    InsufficientEscrow {
        /// Units in escrow.
        escrow_units: U256,
        /// Units asked for.
        amount: u64,
    },
    /// The recipient refused the ether.
    #[error("recipient {0} refused the payment")]
    PayoutFailed(Address),
    /// A revert the contract's errors do not describe (a string reason, a panic, raw data).
    #[error("reverted: {0}")]
    Other(String),
}

impl Revert {
    fn from_data(data: &Bytes) -> Self {
        use FastPayPrimaryErrors as E;
        use alloy::sol_types::SolInterface;
        match E::abi_decode(data) {
            Ok(E::BadCommittee(e)) => Revert::BadCommittee(e.what),
            Ok(E::ZeroDeposit(_)) => Revert::ZeroDeposit,
            Ok(E::FractionalUnit(e)) => Revert::FractionalUnit(e.weiValue),
            Ok(E::DepositTooLarge(e)) => Revert::DepositTooLarge(e.weiValue),
            Ok(E::MalformedAccount(e)) => Revert::MalformedAccount(e.account),
            Ok(E::ZeroAmount(_)) => Revert::ZeroAmount,
            Ok(E::ZeroRecipient(_)) => Revert::ZeroRecipient,
            Ok(E::AlreadyRedeemed(e)) => Revert::AlreadyRedeemed {
                sender: e.sender,
                sequence: e.sequence,
            },
            Ok(E::BadSignature(e)) => Revert::BadSignature {
                index: e.index.saturating_to(),
            },
            Ok(E::UnknownSigner(e)) => Revert::UnknownSigner {
                index: e.index.saturating_to(),
                signer: e.signer,
            },
            Ok(E::DuplicateOrUnorderedSigner(e)) => Revert::DuplicateOrUnorderedSigner {
                index: e.index.saturating_to(),
                signer: e.signer,
            },
            Ok(E::BelowQuorum(e)) => Revert::BelowQuorum {
                weight: e.weight,
                quorum: e.quorum,
            },
            Ok(E::InsufficientEscrow(e)) => Revert::InsufficientEscrow {
                escrow_units: e.escrowUnits,
                amount: e.amount,
            },
            Ok(E::PayoutFailed(e)) => Revert::PayoutFailed(e.recipient),
            Err(_) => Revert::Other(
                alloy::sol_types::decode_revert_reason(data).unwrap_or_else(|| data.to_string()),
            ),
        }
    }
}

/// What can go wrong talking to the contract.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The endpoint URL does not parse.
    #[error("bad RPC URL {0:?}")]
    BadUrl(String),
    /// Sending a transaction needs a key.
    #[error("no Ethereum key to send transactions with")]
    NoWallet,
    /// The contract refused (the reason decoded).
    #[error("the contract reverted: {0}")]
    Reverted(#[from] Revert),
    /// The transaction was not mined while we waited.
    #[error("no receipt for transaction {0} yet")]
    NoReceipt(B256),
    /// The transaction was mined but failed.
    #[error("transaction {0} failed on chain")]
    TxFailed(B256),
    /// The endpoint failed, timed out or answered something unusable.
    #[error("RPC failed: {0}")]
    Rpc(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A `Deposited` log lacks what a mined log has, or carries an impossible amount.
    #[error("malformed deposit log: {0}")]
    MalformedLog(&'static str),
    /// A wei value that is not a FastPay amount.
    #[error(transparent)]
    Unit(#[from] UnitError),
}

impl From<ContractError> for ChainError {
    fn from(e: ContractError) -> Self {
        match e.as_revert_data() {
            Some(data) => ChainError::Reverted(Revert::from_data(&data)),
            None => ChainError::Rpc(Box::new(e)),
        }
    }
}

fn rpc_error(e: impl std::error::Error + Send + Sync + 'static) -> ChainError {
    ChainError::Rpc(Box::new(e))
}

/// A mined deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositReceipt {
    /// The deposit, as its event reports it.
    pub deposit: Deposit,
    /// The transaction.
    pub tx_hash: B256,
}

/// A mined redeem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemReceipt {
    /// The transaction.
    pub tx_hash: B256,
    /// The block it is in.
    pub block_number: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// The contract's escrow accounting, in units, and the ether it holds, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escrow {
    /// Units deposited so far.
    pub deposited: U256,
    /// Units redeemed so far.
    pub redeemed: U256,
    /// Deposits so far.
    pub deposit_count: u64,
    /// The contract's balance in wei: at least (deposited - redeemed) gwei.
    pub balance_wei: U256,
}

/// The FastPay contract on a chain, reached over HTTP(S).
#[derive(Debug, Clone)]
pub struct PrimaryChain {
    provider: DynProvider,
    contract: FastPayPrimaryInstance<DynProvider>,
    domain: RedeemDomain,
    can_send: bool,
}

fn provider(url: &str, key: Option<PrivateKeySigner>) -> Result<DynProvider, ChainError> {
    let url: reqwest::Url = url.parse().map_err(|_| ChainError::BadUrl(url.into()))?;
    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .build()
        .map_err(rpc_error)?;
    let client = RpcClient::new_http_with_client(http, url);
    Ok(match key {
        // The nonce is asked of the node for each transaction: a cached nonce is taken even by
        // a transaction refused at gas estimation (a revert), and every later one then waits
        // forever behind the gap; the node's count also follows reorganisations.
        Some(key) => ProviderBuilder::new()
            .with_simple_nonce_management()
            .wallet(EthereumWallet::from(key))
            .connect_client(client)
            .erased(),
        None => ProviderBuilder::new().connect_client(client).erased(),
    })
}

impl PrimaryChain {
    /// The contract at `address` behind `url`; `key` pays for the transactions sent (deposits,
    /// redeems), and may be left out by a reader such as an authority's follower.
    pub async fn connect(
        url: &str,
        address: Address,
        key: Option<PrivateKeySigner>,
    ) -> Result<Self, ChainError> {
        let can_send = key.is_some();
        let provider = provider(url, key)?;
        Self::at(provider, address, can_send).await
    }

    async fn at(
        provider: DynProvider,
        address: Address,
        can_send: bool,
    ) -> Result<Self, ChainError> {
        let contract = FastPayPrimary::new(address, provider.clone());
        let chain_id = provider.get_chain_id().await.map_err(rpc_error)?;
        let committee_id = contract.committeeId().call().await?;
        Ok(Self {
            provider,
            contract,
            domain: RedeemDomain {
                chain_id,
                contract: address,
                committee_id: CommitteeId(committee_id.0),
            },
            can_send,
        })
    }

    /// Deploys a contract for `committee` with `key` paying, and connects to it.
    pub async fn deploy(
        url: &str,
        key: PrivateKeySigner,
        committee: &EthCommittee,
    ) -> Result<Self, ChainError> {
        let provider = provider(url, Some(key))?;
        let contract = FastPayPrimary::deploy(
            provider.clone(),
            committee.signers(),
            committee.weights(),
            committee.quorum(),
            B256::from(committee.id().0),
        )
        .await?;
        Self::at(provider, *contract.address(), true).await
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// What every redeem signature for this contract binds.
    pub fn domain(&self) -> RedeemDomain {
        self.domain
    }

    /// Polls for the receipt of `tx_hash`. Polled here rather than through alloy's block
    /// watcher, which in tests stalled on a transaction sent after a refused one.
    async fn receipt(
        &self,
        tx_hash: B256,
    ) -> Result<alloy::rpc::types::TransactionReceipt, ChainError> {
        for _ in 0..RECEIPT_POLLS {
            if let Some(receipt) = self
                .provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(rpc_error)?
            {
                return Ok(receipt);
            }
            tokio::time::sleep(RECEIPT_POLL_INTERVAL).await;
        }
        Err(ChainError::NoReceipt(tx_hash))
    }

    /// The block the contract was deployed in (deposits are scanned for from here).
    pub async fn deployed_at(&self) -> Result<u64, ChainError> {
        Ok(self.contract.deployedAt().call().await?)
    }

    /// The chain's newest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(rpc_error)
    }

    /// Sends `wei` to the contract for `account`; most callers want [`Self::deposit_units`].
    /// Takes wei so that amounts FastPay cannot represent can be tried (the contract refuses them).
    pub async fn deposit_wei(
        &self,
        account: AccountId,
        wei: U256,
    ) -> Result<DepositReceipt, ChainError> {
        if !self.can_send {
            return Err(ChainError::NoWallet);
        }
        let pending = self
            .contract
            .deposit(B256::from(account.0))
            .value(wei)
            .send()
            .await?;
        let receipt = self.receipt(*pending.tx_hash()).await?;
        if !receipt.status() {
            return Err(ChainError::TxFailed(receipt.transaction_hash));
        }
        let log = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<FastPayPrimary::Deposited>().ok())
            .ok_or(ChainError::MalformedLog(
                "no Deposited event in the receipt",
            ))?;
        let deposit = to_deposit(log.inner.data, log.block_number, log.block_hash)?;
        Ok(DepositReceipt {
            deposit,
            tx_hash: receipt.transaction_hash,
        })
    }

    /// Deposits `amount` units (gwei) for `account`.
    pub async fn deposit_units(
        &self,
        account: AccountId,
        amount: Amount,
    ) -> Result<DepositReceipt, ChainError> {
        self.deposit_wei(account, units_to_wei(amount)).await
    }

    /// Redeems `order` with `signatures` (ordered by signer, as
    /// [`EthCommittee::certificate`] returns them).
    pub async fn redeem(
        &self,
        order: &RedeemOrder,
        signatures: &[RedeemSignature],
    ) -> Result<RedeemReceipt, ChainError> {
        if !self.can_send {
            return Err(ChainError::NoWallet);
        }
        let signatures: Vec<FastPayPrimary::Signature> = signatures
            .iter()
            .map(|sig| FastPayPrimary::Signature {
                r: sig.r,
                s: sig.s,
                v: sig.v,
            })
            .collect();
        let pending = self
            .contract
            .redeem(
                B256::from(order.sender.0),
                order.sequence.value(),
                order.recipient,
                order.amount.units(),
                signatures,
            )
            .send()
            .await?;
        let receipt = self.receipt(*pending.tx_hash()).await?;
        if !receipt.status() {
            return Err(ChainError::TxFailed(receipt.transaction_hash));
        }
        Ok(RedeemReceipt {
            tx_hash: receipt.transaction_hash,
            block_number: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
        })
    }

    /// The `Deposited` events in `range`, in the order the node returns them.
    pub async fn deposits(&self, range: BlockRange) -> Result<Vec<Deposit>, ChainError> {
        let logs = self
            .contract
            .Deposited_filter()
            .from_block(range.from)
            .to_block(range.to)
            .query()
            .await?;
        logs.into_iter()
            .map(|(event, log)| to_deposit(event, log.block_number, log.block_hash))
            .collect()
    }

    /// Number of deposits as of block `block`.
    pub async fn deposit_count_at(&self, block: u64) -> Result<u64, ChainError> {
        Ok(self
            .contract
            .depositCount()
            .block(BlockId::number(block))
            .call()
            .await?)
    }

    /// What a [`crate::DepositFollower`] takes: the deposits in `range` and the count at its end.
    pub async fn log_batch(&self, range: BlockRange) -> Result<LogBatch, ChainError> {
        Ok(LogBatch {
            range,
            logs: self.deposits(range).await?,
            deposit_count: Some(self.deposit_count_at(range.to).await?),
        })
    }

    /// The escrow accounting and the contract's balance, as of the newest block.
    pub async fn escrow(&self) -> Result<Escrow, ChainError> {
        Ok(Escrow {
            deposited: self.contract.totalDeposited().call().await?,
            redeemed: self.contract.totalRedeemed().call().await?,
            deposit_count: self.contract.depositCount().call().await?,
            balance_wei: self
                .provider
                .get_balance(self.address())
                .await
                .map_err(rpc_error)?,
        })
    }

    /// Whether the transfer (`sender`, `sequence`) was redeemed.
    pub async fn redeemed(
        &self,
        sender: AccountId,
        sequence: SequenceNumber,
    ) -> Result<bool, ChainError> {
        Ok(self
            .contract
            .redeemed(B256::from(sender.0), sequence.value())
            .call()
            .await?)
    }

    /// The digest the contract computes for `order` (its `redeemDigest` view): a check that
    /// [`crate::redeem_digest`] agrees with the deployed code.
    pub async fn digest_on_chain(&self, order: &RedeemOrder) -> Result<B256, ChainError> {
        Ok(self
            .contract
            .redeemDigest(
                B256::from(order.sender.0),
                order.sequence.value(),
                order.recipient,
                order.amount.units(),
            )
            .call()
            .await?)
    }

    /// The balance of `address` in wei.
    pub async fn balance_wei(&self, address: Address) -> Result<U256, ChainError> {
        self.provider.get_balance(address).await.map_err(rpc_error)
    }

    /// The provider, for what this wrapper does not cover (tests drive anvil's own calls).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }
}

fn to_deposit(
    event: FastPayPrimary::Deposited,
    block_number: Option<u64>,
    block_hash: Option<B256>,
) -> Result<Deposit, ChainError> {
    let number = block_number.ok_or(ChainError::MalformedLog("no block number"))?;
    let hash = block_hash.ok_or(ChainError::MalformedLog("no block hash"))?;
    if event.amount == 0 {
        return Err(ChainError::MalformedLog("zero amount"));
    }
    // Units back to wei and again: the event's amount must be a FastPay amount (it always is,
    // a u64 of units); kept so a garbage log cannot slip an impossible value through.
    let amount = wei_to_units(units_to_wei(Amount::new(event.amount)))?;
    Ok(Deposit {
        index: event.index,
        account: AccountId(event.account.0),
        amount,
        block: BlockRef { number, hash },
    })
}

/// Why an Ethereum key file could not be used.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("read the Ethereum key file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// It does not hold a secret key.
    #[error("{0}: not an Ethereum secret key (64 hex digits)")]
    Malformed(std::path::PathBuf),
}

/// Reads an Ethereum secret key: 64 hex digits (with or without `0x`) in `path`.
pub fn read_eth_key(path: &std::path::Path) -> Result<PrivateKeySigner, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim()
        .trim_start_matches("0x")
        .parse()
        .map_err(|_| KeyFileError::Malformed(path.to_path_buf()))
}
