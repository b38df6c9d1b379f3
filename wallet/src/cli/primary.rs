//! The client's primary-chain commands (the wallet's `primary` feature): `deposit` sends ether
//! into the FastPay contract for an account; `redeem` moves money out of FastPay to an
//! Ethereum address; `audit` checks the supply across both sides.

use anyhow::{Context, Result, anyhow, bail};
use fastpay_primary::alloy::primitives::{B256, U256};
use fastpay_primary::{
    Address, ChainError, EthCommittee, PrimaryChain, RedeemOrder, RedeemSignature, Revert,
    WEI_PER_UNIT, redeem_members,
};
use fastpay_wallet::Network;
use fastpay_wire::{
    AccountId, Amount, AuthorityName, CertifiedTransferOrder, PRIMARY_EXIT, exit_address,
    exit_user_data,
};
use std::collections::BTreeMap;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Connects to the contract the flags name, paying with the key they name.
fn connect(runtime: &tokio::runtime::Runtime, flags: &super::ChainArgs) -> Result<PrimaryChain> {
    let (rpc, contract) = (
        &flags.contract.primary_rpc,
        &flags.contract.primary_contract,
    );
    let eth_key = &flags.eth_key;
    let contract: Address = contract
        .parse()
        .with_context(|| format!("--primary-contract {contract:?} is not an Ethereum address"))?;
    let key = fastpay_primary::read_eth_key(eth_key)?;
    runtime
        .block_on(PrimaryChain::connect(rpc, contract, Some(key)))
        .with_context(|| format!("reach the contract {contract} through {rpc}"))
}

/// `deposit`: escrows `amount` units (gwei) in the contract for `to`; prints the deposit as
/// one JSON line once its transaction is mined.
pub fn deposit(flags: &super::ChainArgs, amount: u64, to: AccountId) -> Result<()> {
    let runtime = runtime()?;
    let chain = connect(&runtime, flags)?;
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

/// `redeem`: first finishes every earlier transfer of `from` to the primary chain that the
/// contract has not paid (a redeem interrupted at any point), then, with `amount` and `to`,
/// moves `amount` units out of FastPay to the Ethereum address `to`: a transfer to the exit
/// account (its certificate saved in the wallet before anything goes on chain), the
/// committee's approvals, and the contract's `redeem`. Prints one JSON line per redeem.
pub fn redeem(
    cli: &super::Cli,
    from: AccountId,
    new: Option<(u64, String)>,
    flags: &super::ChainArgs,
) -> Result<()> {
    let runtime = runtime()?;
    let chain = connect(&runtime, flags)?;
    let exit_to = match &new {
        Some((_, to)) => Some(
            to.parse::<Address>()
                .with_context(|| format!("--to {to:?} is not an Ethereum address"))?,
        ),
        None => None,
    };
    let redeemer = Redeemer::new(cli, &runtime, &chain)?;
    let mut wallet = cli.open_wallet()?;
    let i = cli.position(&wallet, &from)?;
    if wallet.clients()[i].is_watch_only() {
        bail!("account {from} is watch-only: import it with its secret to redeem");
    }
    let mut network = cli.network()?;
    super::sync_account(&mut wallet, &mut network, i, cli.timeout)?;
    let exits: Vec<CertifiedTransferOrder> = wallet.clients()[i]
        .sent_certificates()
        .iter()
        .filter(|c| {
            exit_address(
                &c.value.transfer.recipient,
                c.value.transfer.user_data.as_ref(),
            )
            .is_some()
        })
        .cloned()
        .collect();
    for certificate in exits {
        let t = certificate.value.transfer;
        let paid = runtime
            .block_on(chain.redeemed(t.sender, t.sequence_number))
            .context("ask the contract whether an earlier redeem was paid")?;
        if !paid {
            eprintln!(
                "finishing the redeem of transfer {} of {from}, interrupted earlier",
                t.sequence_number.value()
            );
            redeemer.submit(&mut network, certificate)?;
        }
    }
    let (Some((amount, _)), Some(to)) = (new, exit_to) else {
        return Ok(());
    };
    let data = exit_user_data(to.into_array());
    wallet.clients_mut()[i].transfer(PRIMARY_EXIT, Amount::new(amount), Some(data))?;
    // The order is on disk before it leaves, and its certificate before anything goes on
    // chain: running `redeem` again finishes whatever a crash interrupted.
    wallet.save()?;
    super::finish(&mut wallet, &mut network, &[i], cli.timeout)?;
    let certificate = wallet.clients()[i]
        .sent_certificates()
        .last()
        .cloned()
        .context("the transfer to the primary chain left no certificate")?;
    redeemer.submit(&mut network, certificate)
}

/// What submitting a redeem needs: the chain, the contract's domain and committee, and each
/// authority's redeem address.
struct Redeemer<'a> {
    runtime: &'a tokio::runtime::Runtime,
    chain: &'a PrimaryChain,
    committee: EthCommittee,
    addresses: BTreeMap<AuthorityName, Address>,
    timeout: std::time::Duration,
}

impl<'a> Redeemer<'a> {
    fn new(
        cli: &super::Cli,
        runtime: &'a tokio::runtime::Runtime,
        chain: &'a PrimaryChain,
    ) -> Result<Self> {
        let committee = EthCommittee::from_file(&cli.committee)
            .context("the committee file does not describe the contract's committee")?;
        let addresses = redeem_members(&cli.committee)?
            .into_iter()
            .map(|(name, address, _)| (name, address))
            .collect();
        Ok(Self {
            runtime,
            chain,
            committee,
            addresses,
            timeout: cli.timeout,
        })
    }

    /// Collects the committee's approvals of `certificate`'s redeem and sends it to the
    /// contract (a redeem the contract already paid is reported, not sent twice).
    fn submit(&self, network: &mut Network, certificate: CertifiedTransferOrder) -> Result<()> {
        let t = certificate.value.transfer;
        let recipient = exit_address(&t.recipient, t.user_data.as_ref())
            .map(Address::from)
            .context("not a transfer to the primary chain")?;
        let order = RedeemOrder {
            sender: t.sender,
            sequence: t.sequence_number,
            recipient,
            amount: t.amount,
        };
        let answers = network.collect_approvals(certificate, self.timeout)?;
        let signatures = answers.iter().filter_map(|(name, answer)| {
            let approval = answer.as_ref().ok()?;
            Some(RedeemSignature {
                signer: *self.addresses.get(name)?,
                r: B256::from(approval.r),
                s: B256::from(approval.s),
                v: approval.v,
            })
        });
        let refusals: Vec<String> = answers
            .iter()
            .filter_map(|(name, answer)| {
                answer
                    .as_ref()
                    .err()
                    .map(|code| format!("{name}: {code:?}"))
            })
            .collect();
        let signatures = self
            .committee
            .certificate(&self.chain.domain(), &order, signatures)
            .map_err(|e| {
                anyhow!(
                    "the committee's approvals fall short ({e}; refusals: {}); the transfer is \
                     certified and saved: run `redeem` again to finish it",
                    if refusals.is_empty() {
                        "none".to_string()
                    } else {
                        refusals.join(", ")
                    }
                )
            })?;
        match self
            .runtime
            .block_on(self.chain.redeem(&order, &signatures))
        {
            Ok(receipt) => println!(
                "{{\"sender\":\"{}\",\"sequence_number\":{},\"recipient\":\"{}\",\"amount\":{},\"block\":{},\"transaction\":\"{}\",\"gas\":{}}}",
                t.sender,
                t.sequence_number.value(),
                recipient,
                t.amount.units(),
                receipt.block_number,
                receipt.tx_hash,
                receipt.gas_used
            ),
            Err(ChainError::Reverted(Revert::AlreadyRedeemed { .. })) => eprintln!(
                "transfer {} of {} was redeemed already",
                t.sequence_number.value(),
                t.sender
            ),
            Err(e) => {
                return Err(anyhow!(e).context(
                    "the redeem transaction failed; the transfer is certified and saved: run `redeem` again to finish it",
                ));
            }
        }
        Ok(())
    }
}

/// `audit`: the supply across both sides. On the contract: its ether covers every deposit
/// not redeemed (balance ≥ (deposited − redeemed) gwei). In FastPay: the exit account, which
/// holds everything paid out of FastPay, covers every redeem (what it holds beyond them
/// awaits its redeem). Prints one JSON line; fails if either does not hold.
pub fn audit(
    cli: &super::Cli,
    rpc: &str,
    contract: &str,
    deposited: u128,
    report: &mut serde_json::Value,
    faults: &mut Vec<String>,
) -> Result<()> {
    let runtime = runtime()?;
    let address: Address = contract
        .parse()
        .with_context(|| format!("--primary-contract {contract:?} is not an Ethereum address"))?;
    let chain = runtime
        .block_on(PrimaryChain::connect(rpc, address, None))
        .with_context(|| format!("reach the contract {address} through {rpc}"))?;
    let escrow = runtime
        .block_on(chain.escrow())
        .context("read the contract's escrow")?;
    let mut network = cli.network()?;
    let answers = network.query(&PRIMARY_EXIT, cli.timeout)?;
    let exited = super::agreed_balance(&cli.committee, &answers)?;
    let exited_units = U256::from(u128::try_from(exited.units()).unwrap_or(0));
    let owed = escrow.deposited.saturating_sub(escrow.redeemed);
    report["primary"] = serde_json::json!({
        "deposits": escrow.deposit_count.to_string(),
        "deposited": escrow.deposited.to_string(),
        "redeemed": escrow.redeemed.to_string(),
        "escrow_wei": escrow.balance_wei.to_string(),
        "exited": exited_units.to_string(),
        "awaiting_redeem": exited_units.saturating_sub(escrow.redeemed).to_string(),
    });
    if escrow.balance_wei < owed.saturating_mul(U256::from(WEI_PER_UNIT)) {
        faults.push(format!(
            "the contract holds {} wei, less than the {owed} units deposited and not redeemed",
            escrow.balance_wei
        ));
    }
    if exited_units < escrow.redeemed {
        faults.push(format!(
            "the contract paid out {} units but only {exited_units} left FastPay",
            escrow.redeemed
        ));
    }
    if U256::from(deposited) > escrow.deposited {
        faults.push(format!(
            "an authority credited {deposited} units of deposits; the contract took only {}",
            escrow.deposited
        ));
    }
    Ok(())
}
