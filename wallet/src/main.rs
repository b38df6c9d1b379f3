//! `client`: a FastPay wallet. Creates accounts, queries balances, pays, and benchmarks a
//! committee, talking UDP to every authority.

#![forbid(unsafe_code)]

#[path = "cli/audit.rs"]
mod audit;
#[cfg(feature = "primary")]
#[path = "cli/primary.rs"]
mod primary;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fastpay_client::{ClientState, Goal, SyncReport, hand_over};
use fastpay_wallet::{Network, Wallet, parse_secret};
use fastpay_wire::{AccountId, Amount, Balance, Committee, CommitteeFile, KeyPair};
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
    /// not). The balance is printed on stdout; per-authority detail goes to stderr. For a
    /// wallet account, it first syncs it (see `sync`) and reports on stderr what it learned.
    #[command(name = "query_balance")]
    QueryBalance {
        /// The account (64 hex digits).
        address: AccountId,
    },
    /// Bring wallet accounts (all, or ADDRESS) up to date with the committee: finish an
    /// interrupted transfer (recovering its certificate from the authorities if the wallet
    /// lost it), learn transfers the wallet never saw and payments received (each certificate
    /// verified), and push confirmations to authorities that lag. One JSON line per account
    /// on stdout.
    Sync {
        /// The account (default: every account of the wallet).
        address: Option<AccountId>,
    },
    /// Add an account the wallet did not create: with its secret key (it can then pay), or
    /// watch-only by its address. Then syncs it.
    Import {
        /// The account's secret key seed (64 hex digits), as in another wallet's file.
        #[arg(long, conflicts_with = "watch", required_unless_present = "watch")]
        secret: Option<String>,
        /// Watch this address without its secret: learn its payments, never pay.
        #[arg(long)]
        watch: Option<AccountId>,
        /// The account's genesis balance (0 for an account that exists only because it was
        /// paid).
        #[arg(long, default_value_t = 0)]
        initial_funding: u64,
    },
    /// Pay AMOUNT from a wallet account to any address. The account is synced first (an
    /// interrupted transfer is finished, payments received count).
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
    /// Move money into FastPay: send AMOUNT units (1 unit = 1 gwei) from an Ethereum account
    /// into the committee's contract on the primary chain, for the FastPay account --to (any
    /// address). Prints the deposit (its index, block and transaction) as one JSON line once
    /// mined; each authority credits it once enough blocks are built on it, and
    /// `query_balance` shows it. Needs a client built with `--features primary`.
    Deposit {
        /// Units (gwei) to deposit.
        #[arg(long)]
        amount: u64,
        /// The FastPay account credited.
        #[arg(long)]
        to: AccountId,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Move money out of FastPay: pay AMOUNT units of --from to the Ethereum address --to
    /// (a transfer to the exit account, its certificate saved in the wallet first), collect
    /// the committee's approvals and redeem it on the primary chain's contract, paid by
    /// --eth-key. It first finishes any earlier redeem of --from that the contract has not
    /// paid: run it again (without --amount) to finish one a crash or an outage interrupted;
    /// nothing is ever paid twice. One JSON line per redeem paid. Needs a client built with
    /// `--features primary`.
    Redeem {
        /// The paying FastPay account (in the wallet).
        #[arg(long)]
        from: AccountId,
        /// Units (gwei) to move out; without it, only interrupted redeems are finished.
        #[arg(long, requires = "to")]
        amount: Option<u64>,
        /// The Ethereum address paid (`0x` and 40 hex digits).
        #[arg(long, requires = "amount")]
        to: Option<String>,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Run the wallet as an HTTP service for applications, with a page for people at `/`:
    /// accounts, balances and history, payments made once per idempotency key and answered
    /// once final, and a live stream of payments received, learned from the committee. The
    /// API is described at `/openapi.json`. Holds the wallet (no other `client` may use it)
    /// until interrupted.
    Serve {
        /// Where to listen. Anything but a loopback address needs --token-file.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// A file (mode 0600) holding a secret of at least 16 characters that every API
        /// request must carry as `Authorization: Bearer <secret>`.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Milliseconds between syncs of the accounts a live stream watches (each sync asks
        /// every authority; an event reaches the stream at most this long after the committee
        /// shows the payment, plus one sync).
        #[arg(long, default_value_t = 20)]
        poll_ms: u64,
        /// Seconds a request may take before it is answered with 504 (a payment may still
        /// complete: retry it with the same idempotency key).
        #[arg(long, default_value_t = 30)]
        deadline: u64,
    },
    /// Check the supply: every shard of every authority reports its money, and each
    /// authority's balances plus what is in flight between its shards must equal its genesis
    /// plus the deposits it credited. With the contract (a client built with `--features
    /// primary`), also: no authority credited more than was deposited, the contract's ether
    /// covers every deposit not redeemed, and FastPay's exit account (everything paid out of
    /// FastPay) covers every redeem. One JSON line; fails on any fault.
    Audit {
        /// Also require that nothing is in flight between shards (for a committee with no
        /// payments under way): counts again until `--timeout` while credits land.
        #[arg(long)]
        settled: bool,
        /// The primary chain's Ethereum JSON-RPC endpoint.
        #[arg(long, requires = "primary_contract")]
        primary_rpc: Option<String>,
        /// The contract's address (from `server deploy-contract`).
        #[arg(long, requires = "primary_rpc")]
        primary_contract: Option<String>,
    },
}

/// Where the primary chain's contract is.
#[derive(clap::Args, Debug)]
struct ContractArgs {
    /// The chain's Ethereum JSON-RPC endpoint.
    #[arg(long)]
    primary_rpc: String,
    /// The contract's address (from `server deploy-contract`).
    #[arg(long)]
    primary_contract: String,
}

/// Where the primary chain's contract is, and who pays for the transactions sent to it.
#[derive(clap::Args, Debug)]
struct ChainArgs {
    #[command(flatten)]
    contract: ContractArgs,
    /// A file holding the secret key (64 hex digits) of the Ethereum account that pays (the
    /// deposit, or the redeem's gas).
    #[arg(long)]
    eth_key: PathBuf,
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
    let cli = Cli {
        shared: Arc::new(committee.committee.clone()),
        timeout: Duration::from_secs(args.timeout.max(1)),
        committee,
        accounts: args.accounts,
    };
    match args.command {
        Command::CreateAccounts {
            count,
            initial_funding,
        } => cli.create_accounts(count, initial_funding),
        Command::QueryBalance { address } => cli.query_balance(address),
        Command::Sync { address } => cli.sync(address),
        Command::Import {
            secret,
            watch,
            initial_funding,
        } => cli.import(secret, watch, initial_funding),
        Command::Transfer { amount, from, to } => cli.transfer(amount, from, to),
        Command::Deposit { amount, to, chain } => deposit(&chain, amount, to),
        Command::Redeem {
            from,
            amount,
            to,
            chain,
        } => redeem(&cli, from, amount.zip(to), &chain),
        Command::Audit {
            settled,
            primary_rpc,
            primary_contract,
        } => audit(&cli, settled, primary_rpc.zip(primary_contract)),
        Command::Serve {
            listen,
            token_file,
            poll_ms,
            deadline,
        } => {
            let options = fastpay_wallet::service::ServeOptions {
                listen,
                token_file,
                poll_interval: Duration::from_millis(poll_ms.max(1)),
                deadline: Duration::from_secs(deadline.max(1)),
            };
            let wallet = cli.open_wallet()?;
            let network = cli.network()?;
            Ok(fastpay_wallet::service::serve(
                wallet,
                network,
                cli.timeout,
                &options,
            )?)
        }
        Command::Benchmark { max_accounts } => benchmark(
            &cli.accounts,
            cli.shared.clone(),
            &cli.committee,
            max_accounts,
            cli.timeout,
        ),
    }
}

#[cfg(feature = "primary")]
fn deposit(chain: &ChainArgs, amount: u64, to: AccountId) -> Result<()> {
    primary::deposit(chain, amount, to)
}

#[cfg(not(feature = "primary"))]
fn deposit(_: &ChainArgs, _: u64, _: AccountId) -> Result<()> {
    bail!(
        "deposit: this client was built without primary-chain support; build it with \
         `cargo build --release -p fastpay-wallet --features primary`"
    )
}

#[cfg(feature = "primary")]
fn redeem(cli: &Cli, from: AccountId, new: Option<(u64, String)>, chain: &ChainArgs) -> Result<()> {
    primary::redeem(cli, from, new, chain)
}

#[cfg(not(feature = "primary"))]
fn redeem(_: &Cli, _: AccountId, _: Option<(u64, String)>, _: &ChainArgs) -> Result<()> {
    bail!(
        "redeem: this client was built without primary-chain support; build it with \
         `cargo build --release -p fastpay-wallet --features primary`"
    )
}

fn audit(cli: &Cli, settled: bool, contract: Option<(String, String)>) -> Result<()> {
    let supply = audit::audit_supply(cli, settled)?;
    let mut report = supply.to_json();
    let mut faults = supply.faults;
    if let Some((rpc, address)) = contract {
        chain_audit(
            cli,
            &rpc,
            &address,
            supply.deposited,
            &mut report,
            &mut faults,
        )?;
    }
    audit::finish(report, &faults)
}

#[cfg(feature = "primary")]
fn chain_audit(
    cli: &Cli,
    rpc: &str,
    contract: &str,
    deposited: u128,
    report: &mut serde_json::Value,
    faults: &mut Vec<String>,
) -> Result<()> {
    primary::audit(cli, rpc, contract, deposited, report, faults)
}

#[cfg(not(feature = "primary"))]
fn chain_audit(
    _: &Cli,
    _: &str,
    _: &str,
    _: u128,
    _: &mut serde_json::Value,
    _: &mut Vec<String>,
) -> Result<()> {
    bail!(
        "audit --primary-rpc: this client was built without primary-chain support; build \
         it with `cargo build --release -p fastpay-wallet --features primary`"
    )
}

/// What every subcommand works with.
struct Cli {
    committee: CommitteeFile,
    shared: Arc<Committee>,
    accounts: PathBuf,
    timeout: Duration,
}

impl Cli {
    fn open_wallet(&self) -> Result<Wallet> {
        Ok(Wallet::open(&self.accounts, self.shared.clone())?)
    }

    fn network(&self) -> Result<Network> {
        Ok(Network::new(&self.committee)?)
    }

    /// The index of `account` in `wallet`, or an error naming the wallet.
    fn position(&self, wallet: &Wallet, account: &AccountId) -> Result<usize> {
        wallet
            .position(account)
            .with_context(|| format!("account {account} is not in {}", self.accounts.display()))
    }

    fn create_accounts(&self, count: usize, initial_funding: u64) -> Result<()> {
        let mut wallet = self.open_wallet()?;
        let mut lines = String::new();
        for _ in 0..count {
            let key = KeyPair::generate()?;
            let account = key.account();
            let funding = Balance::from(Amount::new(initial_funding));
            wallet.add(ClientState::new(key, self.shared.clone(), funding));
            lines.push_str(&format!("{account}:{initial_funding}\n"));
        }
        wallet.save()?;
        print!("{lines}");
        eprintln!("created {count} accounts in {}", self.accounts.display());
        Ok(())
    }

    fn query_balance(&self, address: AccountId) -> Result<()> {
        let mut network = self.network()?;
        let answers = network.query(&address, self.timeout)?;
        let balance = agreed_balance(&self.committee, &answers)?;
        match self.open_wallet() {
            Ok(mut wallet) => {
                if let Some(i) = wallet.position(&address) {
                    let report = sync_account(&mut wallet, &mut network, i, self.timeout)?;
                    eprintln!(
                        "wallet: learned {} payment(s) received (+{}), deposits (+{}) and {} transfer(s) of its own; pushed {} confirmation(s) to lagging authorities; wallet balance {}",
                        report.received,
                        report.received_amount,
                        report.deposited,
                        report.sent_learned,
                        report.pushed,
                        wallet.clients()[i].balance()
                    );
                }
            }
            Err(error) => eprintln!("wallet not consulted: {error}"),
        }
        println!("{balance}");
        Ok(())
    }

    fn sync(&self, address: Option<AccountId>) -> Result<()> {
        let mut wallet = self.open_wallet()?;
        let which: Vec<usize> = match address {
            Some(address) => vec![self.position(&wallet, &address)?],
            None => (0..wallet.clients().len()).collect(),
        };
        let mut network = self.network()?;
        for i in which {
            let report = sync_account(&mut wallet, &mut network, i, self.timeout)?;
            let client = &wallet.clients()[i];
            println!(
                "{{\"account\":\"{}\",\"balance\":{},\"next_sequence_number\":{},\"received\":{},\"received_amount\":{},\"deposited\":{},\"sent_learned\":{},\"pushed\":{},\"watch_only\":{}}}",
                client.account(),
                client.balance().units(),
                client.next_sequence_number().value(),
                report.received,
                report.received_amount,
                report.deposited,
                report.sent_learned,
                report.pushed,
                client.is_watch_only()
            );
        }
        Ok(())
    }

    fn import(
        &self,
        secret: Option<String>,
        watch: Option<AccountId>,
        initial_funding: u64,
    ) -> Result<()> {
        let mut wallet = self.open_wallet()?;
        let funding = Balance::from(Amount::new(initial_funding));
        let shared = self.shared.clone();
        let client = match (secret, watch) {
            (Some(secret), _) => {
                let seed = parse_secret(&secret)
                    .context("the secret must be 64 hex digits (a key seed)")?;
                ClientState::new(KeyPair::from_seed(seed), shared, funding)
            }
            (None, Some(address)) => ClientState::watch(address, shared, funding),
            (None, None) => bail!("give --secret or --watch"),
        };
        let account = client.account();
        if wallet.position(&account).is_some() {
            bail!(
                "account {account} is already in {}",
                self.accounts.display()
            );
        }
        wallet.add(client);
        wallet.save()?;
        eprintln!("imported {account}; syncing it");
        let i = wallet.clients().len() - 1;
        let mut network = self.network()?;
        let report = sync_account(&mut wallet, &mut network, i, self.timeout)?;
        eprintln!(
            "learned {} payment(s) received and {} transfer(s) of its own; balance {}",
            report.received,
            report.sent_learned,
            wallet.clients()[i].balance()
        );
        println!("{account}");
        Ok(())
    }

    fn transfer(&self, amount: u64, from: AccountId, to: AccountId) -> Result<()> {
        let mut wallet = self.open_wallet()?;
        let i = self.position(&wallet, &from)?;
        if wallet.clients()[i].is_watch_only() {
            bail!(
                "account {from} is watch-only in {}: import it with its secret to pay",
                self.accounts.display()
            );
        }
        let mut network = self.network()?;
        // Up to date first: an interrupted transfer finishes (its certificate recovered from
        // the committee if the wallet lost it), payments received count.
        let report = sync_account(&mut wallet, &mut network, i, self.timeout)?;
        if report.received > 0 || report.sent_learned > 0 {
            eprintln!(
                "synced: {} payment(s) received (+{}), {} transfer(s) of its own finished",
                report.received, report.received_amount, report.sent_learned
            );
        }
        wallet.clients_mut()[i].transfer(to, Amount::new(amount), None)?;
        // The order is on disk before it leaves: a crash now resumes it next time.
        wallet.save()?;
        finish(&mut wallet, &mut network, &[i], self.timeout)?;
        let client = &wallet.clients()[i];
        eprintln!(
            "transferred {amount} from {from} to {to} (sequence number {}); balance now {}",
            client.next_sequence_number().value().saturating_sub(1),
            client.balance()
        );
        Ok(())
    }
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

/// Brings account `i` up to date with the committee ([`fastpay_client::Sync`]), saving the
/// wallet as it goes, and says on stderr what it resumed and recovered.
fn sync_account(
    wallet: &mut Wallet,
    network: &mut Network,
    i: usize,
    timeout: Duration,
) -> Result<SyncReport> {
    let saver = wallet.saver();
    let save = |clients: &[ClientState]| saver.save(clients).map_err(Into::into);
    let result = network.sync(wallet.clients_mut(), i, timeout, save);
    wallet.save()?;
    let report = result?;
    let account = wallet.clients()[i].account();
    if report.resumed > 0 {
        eprintln!(
            "finished {} transfer(s) of {account} interrupted earlier",
            report.resumed
        );
    }
    if report.sent_learned > 0 {
        eprintln!(
            "recovered {} certificate(s) of transfers of {account} from the committee",
            report.sent_learned
        );
    }
    Ok(report)
}

/// Drives every pending transfer of the wallet (normally just the accounts `which`) to
/// completion, saving the wallet whatever happens (and before any confirmation of a newly
/// formed certificate leaves), and hands each certificate of `which` to its recipient if it
/// is ours.
fn finish(
    wallet: &mut Wallet,
    network: &mut Network,
    which: &[usize],
    timeout: Duration,
) -> Result<()> {
    let saver = wallet.saver();
    let result = network.drive(
        wallet.clients_mut(),
        Goal::Finished,
        timeout,
        |_| {},
        |clients| saver.save(clients).map_err(Into::into),
    );
    hand_over(wallet.clients_mut(), which);
    wallet.save()?;
    result?;
    Ok(())
}

fn benchmark(
    path: &std::path::Path,
    committee: Arc<Committee>,
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
    let saver = wallet.saver();
    let save = |clients: &[ClientState]| saver.save(clients).map_err(Into::into);
    if !interrupted.is_empty() {
        eprintln!("finishing {} interrupted transfers", interrupted.len());
        network.drive(wallet.clients_mut(), Goal::Finished, timeout, |_| {}, save)?;
        hand_over(wallet.clients_mut(), &interrupted);
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
        save,
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
        save,
    );
    let confirm_time = start.elapsed();
    hand_over(wallet.clients_mut(), &payers);
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
