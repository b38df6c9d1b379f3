//! `client`: a FastPay wallet. Creates accounts, queries balances, pays, and benchmarks a
//! committee, talking UDP to every authority.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fastpay_client::{ClientState, Phase};
use fastpay_engine::net_client::{Goal, Network};
use fastpay_engine::wallet::Wallet;
use fastpay_wire::{AccountId, Amount, Balance, CommitteeFile, KeyPair};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A FastPay wallet: account keys and states in --accounts, the committee in --committee.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The committee file (every authority's entry from `server generate`).
    #[arg(long)]
    committee: PathBuf,
    /// The wallet file (created by `create_accounts`, mode 0600).
    #[arg(long)]
    accounts: PathBuf,
    /// Seconds to keep retrying before giving up on a request.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create N accounts in the wallet and print their genesis lines (`ADDRESS:BALANCE`) for
    /// `initial_accounts.txt`.
    #[command(name = "create_accounts")]
    CreateAccounts {
        /// How many accounts.
        count: usize,
        /// The balance each starts with.
        #[arg(long, default_value_t = 100)]
        initial_funding: u64,
    },
    /// Print an account's balance as the committee reports it (any address, in the wallet or
    /// not). The balance is printed on stdout; per-authority detail goes to stderr.
    #[command(name = "query_balance")]
    QueryBalance {
        /// The account (64 hex digits).
        address: AccountId,
    },
    /// Pay AMOUNT from a wallet account to any address. A transfer interrupted earlier is
    /// finished first.
    Transfer {
        /// How much.
        amount: u64,
        /// The paying account (must be in the wallet).
        #[arg(long)]
        from: AccountId,
        /// The recipient (any address).
        #[arg(long)]
        to: AccountId,
    },
    /// A quick closed-loop benchmark: every wallet account pays one unit to the next, first
    /// collecting certificates (orders), then confirming them (confirmations). Prints one
    /// JSON line on stdout.
    Benchmark {
        /// Use at most this many accounts (default: all).
        #[arg(long)]
        max_accounts: Option<usize>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("client: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    let committee = CommitteeFile::load(&args.committee)?;
    let shared = Arc::new(committee.committee.clone());
    let timeout = Duration::from_secs(args.timeout.max(1));
    match args.command {
        Command::CreateAccounts {
            count,
            initial_funding,
        } => {
            let mut wallet = Wallet::open(&args.accounts, shared.clone())?;
            let mut lines = String::new();
            for _ in 0..count {
                let key = KeyPair::generate()?;
                let account = key.account();
                wallet.add(ClientState::new(
                    key,
                    shared.clone(),
                    Balance::from(Amount::new(initial_funding)),
                ));
                lines.push_str(&format!("{account}:{initial_funding}\n"));
            }
            wallet.save()?;
            print!("{lines}");
            eprintln!("created {count} accounts in {}", args.accounts.display());
        }
        Command::QueryBalance { address } => {
            let mut network = Network::new(&committee)?;
            let answers = network.query(&address, timeout)?;
            let balance = agreed_balance(&committee, &answers)?;
            if let Ok(wallet) = Wallet::open(&args.accounts, shared)
                && let Some(i) = wallet.position(&address)
            {
                eprintln!("wallet view: {}", wallet.clients()[i].balance());
            }
            println!("{balance}");
        }
        Command::Transfer { amount, from, to } => {
            let mut wallet = Wallet::open(&args.accounts, shared)?;
            let i = wallet
                .position(&from)
                .with_context(|| format!("account {from} is not in {}", args.accounts.display()))?;
            let mut network = Network::new(&committee)?;
            if wallet.clients()[i].pending().is_some() {
                eprintln!("finishing the transfer interrupted earlier");
                finish(&mut wallet, &mut network, &[i], timeout)?;
            }
            wallet.clients_mut()[i].transfer(to, Amount::new(amount), None)?;
            // The order is on disk before it leaves: a crash now resumes it next time.
            wallet.save()?;
            finish(&mut wallet, &mut network, &[i], timeout)?;
            let client = &wallet.clients()[i];
            eprintln!(
                "transferred {amount} from {from} to {to} (sequence number {}); balance now {}",
                client.next_sequence_number().value().saturating_sub(1),
                client.balance()
            );
        }
        Command::Benchmark { max_accounts } => {
            benchmark(&args.accounts, shared, &committee, max_accounts, timeout)?
        }
    }
    Ok(())
}

/// The balance reported by the largest group of authorities that agree, if it carries at
/// least the validity threshold (so an honest authority is among them).
fn agreed_balance(
    committee: &CommitteeFile,
    answers: &[(
        fastpay_wire::AuthorityName,
        Result<fastpay_wire::AccountInfoResponse, fastpay_wire::ErrorCode>,
    )],
) -> Result<Balance> {
    let mut groups: BTreeMap<(i128, u64), u64> = BTreeMap::new();
    for (name, answer) in answers {
        let key = match answer {
            Ok(info) => (info.balance.units(), info.next_sequence_number.value()),
            Err(fastpay_wire::ErrorCode::UnknownAccount) => (0, 0),
            Err(code) => {
                eprintln!("authority {name}: {code:?}");
                continue;
            }
        };
        eprintln!(
            "authority {name}: balance {} (next sequence number {})",
            key.0, key.1
        );
        *groups.entry(key).or_default() += committee.committee.weight(name);
    }
    let best = groups.iter().max_by_key(|(key, weight)| (**weight, key.1));
    match best {
        Some(((balance, _), weight)) if *weight >= committee.committee.validity_threshold() => {
            Ok(Balance::new(*balance))
        }
        _ => bail!(
            "no {} authorities agree on the balance ({} answered)",
            committee.committee.validity_threshold(),
            answers.len()
        ),
    }
}

/// Drives every pending transfer of the wallet (normally just the accounts `which`) to
/// completion, saving the wallet whatever happens, and hands each certificate of `which` to
/// its recipient if it is ours.
fn finish(
    wallet: &mut Wallet,
    network: &mut Network,
    which: &[usize],
    timeout: Duration,
) -> Result<()> {
    let result = network.drive(wallet.clients_mut(), Goal::Finished, timeout, |_| {});
    hand_over(wallet, which);
    wallet.save()?;
    result?;
    Ok(())
}

/// Gives every certificate sent by the accounts `which` to its recipient if the recipient is
/// in the wallet too.
fn hand_over(wallet: &mut Wallet, which: &[usize]) {
    let mut receipts = Vec::new();
    for &i in which {
        let client = &wallet.clients()[i];
        if matches!(client.pending(), Some(Phase::Voting { .. })) {
            continue;
        }
        if let Some(certificate) = client.sent_certificates().last() {
            receipts.push(certificate.clone());
        }
    }
    for certificate in receipts {
        if let Some(r) = wallet.position(&certificate.value.transfer.recipient) {
            // Duplicates are refused silently; an invalid certificate cannot come from us.
            let _ = wallet.clients_mut()[r].receive_certificate(certificate);
        }
    }
}

fn benchmark(
    path: &std::path::Path,
    committee: Arc<fastpay_wire::Committee>,
    config: &CommitteeFile,
    max_accounts: Option<usize>,
    timeout: Duration,
) -> Result<()> {
    let mut wallet = Wallet::open(path, committee)?;
    let mut network = Network::new(config)?;
    let total = wallet.clients().len();
    if total < 2 {
        bail!(
            "the benchmark needs at least 2 accounts in {}",
            path.display()
        );
    }
    // Finish anything interrupted first, so every account starts clean.
    let interrupted: Vec<usize> = (0..total)
        .filter(|&i| wallet.clients()[i].pending().is_some())
        .collect();
    if !interrupted.is_empty() {
        eprintln!("finishing {} interrupted transfers", interrupted.len());
        network.drive(wallet.clients_mut(), Goal::Finished, timeout, |_| {})?;
        hand_over(&mut wallet, &interrupted);
        wallet.save()?;
    }
    let n = max_accounts.unwrap_or(total).min(total);
    let mut payers = Vec::new();
    for i in 0..n {
        let to = wallet.clients()[(i + 1) % n].account();
        if wallet.clients_mut()[i]
            .transfer(to, Amount::new(1), None)
            .is_ok()
        {
            payers.push(i);
        }
    }
    wallet.save()?;
    let orders = payers.len();
    eprintln!("benchmark: {orders} transfers of 1 unit between {n} accounts");
    let step = (orders / 10).max(1);
    let progress = |phase: &'static str| {
        move |done: usize| {
            if done.is_multiple_of(step) || done == orders {
                eprintln!("  {phase}: {done}/{orders}");
            }
        }
    };

    let start = Instant::now();
    let votes = network.drive(
        wallet.clients_mut(),
        Goal::Certified,
        timeout,
        progress("certified"),
    );
    let certify_time = start.elapsed();
    wallet.save()?;
    let votes = votes?;

    let start = Instant::now();
    let confirms = network.drive(
        wallet.clients_mut(),
        Goal::Finished,
        timeout,
        progress("confirmed"),
    );
    let confirm_time = start.elapsed();
    hand_over(&mut wallet, &payers);
    wallet.save()?;
    let confirms = confirms?;

    let per_second = |count: usize, time: Duration| count as f64 / time.as_secs_f64().max(1e-9);
    let authorities = config.authorities.len();
    println!(
        "{{\"transfers\":{orders},\"authorities\":{authorities},\"certify_s\":{:.3},\"confirm_s\":{:.3},\"orders_per_s\":{:.0},\"confirmations_per_s\":{:.0},\"datagrams_sent\":{},\"replies\":{},\"refusals\":{}}}",
        certify_time.as_secs_f64(),
        confirm_time.as_secs_f64(),
        per_second(orders, certify_time),
        per_second(orders, confirm_time),
        votes.sent + confirms.sent,
        votes.received + confirms.received,
        votes.errors + confirms.errors,
    );
    eprintln!(
        "certified {orders} transfers in {:.3} s ({:.0} orders/s, each order to all {authorities} authorities); confirmed in {:.3} s ({:.0} confirmations/s)",
        certify_time.as_secs_f64(),
        per_second(orders, certify_time),
        confirm_time.as_secs_f64(),
        per_second(orders, confirm_time)
    );
    Ok(())
}
