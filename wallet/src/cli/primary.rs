//! The client's primary-chain commands (the wallet's `primary` feature): `deposit` sends ether
//! into the FastPay contract for an account.

use anyhow::{Context, Result, anyhow};
use fastpay_primary::alloy::signers::local::PrivateKeySigner;
use fastpay_primary::{Address, PrimaryChain};
use fastpay_wire::{AccountId, Amount};
use std::path::Path;

/// Reads an Ethereum secret key: 64 hex digits (with or without `0x`) in `path`.
fn read_eth_key(path: &Path) -> Result<PrivateKeySigner> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the Ethereum key file {}", path.display()))?;
    text.trim().trim_start_matches("0x").parse().map_err(|_| {
        anyhow!(
            "{}: not an Ethereum secret key (64 hex digits)",
            path.display()
        )
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Connects to the contract at `contract` behind `rpc`, paying with the key in `eth_key`.
fn connect(
    runtime: &tokio::runtime::Runtime,
    rpc: &str,
    contract: &str,
    eth_key: &Path,
) -> Result<PrimaryChain> {
    let contract: Address = contract
        .parse()
        .with_context(|| format!("--primary-contract {contract:?} is not an Ethereum address"))?;
    let key = read_eth_key(eth_key)?;
    runtime
        .block_on(PrimaryChain::connect(rpc, contract, Some(key)))
        .with_context(|| format!("reach the contract {contract} through {rpc}"))
}

/// `deposit`: escrows `amount` units (gwei) in the contract for `to`; prints the deposit as
/// one JSON line once its transaction is mined.
pub fn deposit(
    rpc: &str,
    contract: &str,
    eth_key: &Path,
    amount: u64,
    to: AccountId,
) -> Result<()> {
    let runtime = runtime()?;
    let chain = connect(&runtime, rpc, contract, eth_key)?;
    eprintln!("depositing {amount} units ({amount} gwei) for {to}...");
    let receipt = runtime
        .block_on(chain.deposit_units(to, Amount::new(amount)))
        .context("the deposit failed")?;
    let deposit = receipt.deposit;
    println!(
        "{{\"index\":{},\"account\":\"{}\",\"amount\":{},\"block\":{},\"transaction\":\"{}\"}}",
        deposit.index,
        deposit.account,
        deposit.amount.units(),
        deposit.block.number,
        receipt.tx_hash
    );
    eprintln!(
        "deposit {} mined in block {}; the authorities credit it once their confirmations are built on it",
        deposit.index, deposit.block.number
    );
    Ok(())
}
