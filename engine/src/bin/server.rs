//! `server`: creates an authority's key file, and runs the authority.

#![forbid(unsafe_code)]

#[cfg(feature = "primary")]
#[path = "../cli/primary.rs"]
mod primary;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fastpay_engine::check::{CheckInput, check, membership};
use fastpay_engine::config::{load_genesis, load_server_file, write_server_file};
use fastpay_engine::counters;
use fastpay_engine::metrics::Exporter;
use fastpay_engine::metrics_http::MetricsServer;
use fastpay_engine::runtime::{Engine, EngineConfig, QUEUE_CAPACITY};
use fastpay_wire::{AuthorityEntry, CommitteeFile, ServerFile, ShardAddress, VoteScheme};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A FastPay authority: one process serving all of its shards (or one shard with `--shard`).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The authority's private file (its key and address), created by `generate`; every
    /// command but `deploy-contract` needs it.
    #[arg(long)]
    server: Option<PathBuf>,
    /// How diagnostics on stderr look: `text` for people, `json` (one object a line) for log
    /// collectors. Levels and targets are chosen with `RUST_LOG` (default `info`), e.g.
    /// `RUST_LOG=debug` or `RUST_LOG=info,fastpay_engine=trace`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of the log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new authority key in the --server file (mode 0600) and print its public
    /// committee entry on stdout, to append to the committee file (`>> committee.json`).
    Generate {
        /// Host the authority listens on.
        #[arg(long)]
        host: String,
        /// The authority's UDP port, shared by all its shards.
        #[arg(long)]
        port: u16,
        /// Number of shards (threads) the accounts are spread over.
        #[arg(long, default_value_t = 4)]
        shards: u32,
        /// How the authority signs its votes: `merkle` (one signature per batch of votes, each
        /// vote carrying its Merkle path: the default, several times the confirmations per
        /// core) or `single` (one signature per vote, smaller votes under load).
        #[arg(long, default_value = "merkle")]
        vote_scheme: VoteScheme,
        /// Overwrite an existing --server file (its key is lost).
        #[arg(long)]
        force: bool,
        /// Shards on several hosts: where each shard listens for clients, `HOST:PORT` per
        /// shard in shard order, comma separated (then --shards is their number).
        #[arg(long, value_delimiter = ',', requires = "shard_link")]
        shard_listen: Vec<String>,
        /// With --shard-listen: where each shard's link to its sibling shards listens,
        /// `HOST:PORT` per shard (each distinct, reachable from the other shards' hosts).
        #[arg(long, value_delimiter = ',', requires = "shard_listen")]
        shard_link: Vec<String>,
    },
    /// Start a new network with this authority's key kept: draw a new network instance
    /// into the --server file and print its new committee entry on stdout. The committee id
    /// covers every member's instance, so nothing signed in the old network (orders,
    /// votes, certificates, link frames) is valid in the new one. Wipe every authority's
    /// data, collect the new entries into a new committee file and write a new genesis
    /// before running it.
    NewNetwork,
    /// Run the authority until SIGINT or SIGTERM, printing per-shard counters on a cadence
    /// and at exit.
    Run(RunArgs),
    /// Check what `run` with the same flags would use, before starting it: the server file,
    /// committee and genesis (through the same parsers), the server's place in the
    /// committee, addresses two authorities share, genesis addresses that are not public
    /// keys, and whether the ports are free here. Prints every problem and exits 1, or a
    /// summary and exits 0. Starts nothing.
    Check(RunArgs),
    /// Deploy the primary chain's FastPay contract for the committee (every authority's
    /// redeem address and weight, the quorum and the committee id, fixed for the contract's
    /// life) and print its address on stdout, for `run --primary-contract` and the wallets.
    /// Needs a server built with `--features primary`.
    DeployContract {
        /// The chain's Ethereum JSON-RPC endpoint.
        #[arg(long)]
        primary_rpc: String,
        /// A file holding the secret key (64 hex digits) of the Ethereum account that pays
        /// for the deployment.
        #[arg(long)]
        eth_key: PathBuf,
        /// The committee file (entries from `generate` of a server built with `--features
        /// primary` carry each authority's redeem address).
        #[arg(long)]
        committee: PathBuf,
    },
}

/// The flags of `run` (and `check`).
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Genesis balances, one `ADDRESS:BALANCE` line per account.
    #[arg(long)]
    initial_accounts: PathBuf,
    /// The committee file (every authority's entry from `generate`).
    #[arg(long)]
    committee: PathBuf,
    /// Run only this shard (to spread an authority's shards over processes).
    #[arg(long)]
    shard: Option<u32>,
    /// With --shard: the host (a private address, say) on which this authority's shard
    /// processes bind their links to each other, at the committee's link ports (the
    /// authority's port plus one plus the shard). Give every shard process of the authority
    /// the same value. Default: the authority's public host. Not with `shard_addresses`
    /// in the committee (they name each link).
    #[arg(long, requires = "shard")]
    link_host: Option<String>,
    /// Cores to pin shard threads to, comma separated (shard j on the j-th, wrapping);
    /// default: every core.
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Do not steer datagrams to their shard's socket with BPF (the kernel then spreads
    /// them by flow hash, and misrouted ones are handed over between shards).
    #[arg(long)]
    no_steering: bool,
    /// Seconds between counter reports on stderr (0: only at exit).
    #[arg(long, default_value_t = 10)]
    stats_interval: u64,
    /// Where the authority keeps its durable state (one subdirectory per shard); default:
    /// next to the --server file, named after it with `.data`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep all state in memory only. A restarted authority then forgets its votes and
    /// could vote twice for one sequence number: for benchmarks only.
    #[arg(long, conflicts_with = "data_dir")]
    no_durability: bool,
    /// The record of the networks this authority's shards voted in, which outlives the data
    /// directory: a shard whose data is gone refuses to start in a network it voted in.
    /// Default: next to the --server file, named after it with `.voted`. Pointing a shard
    /// whose data is gone at a new record lets it vote again as if it never had: only for an
    /// authority the committee can count among the f faulty ones it tolerates.
    #[arg(long, conflicts_with = "no_durability")]
    voting_record: Option<PathBuf>,
    /// Log size (bytes) after which a shard writes a snapshot and starts a new log.
    #[arg(long, default_value_t = fastpay_engine::store::SNAPSHOT_AFTER_BYTES)]
    snapshot_after_bytes: u64,
    /// Serve Prometheus metrics (text format) at http://HOST:PORT/metrics: every shard's
    /// counters, gauges and histograms, labelled by authority and shard. Give each shard
    /// process its own address.
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
    /// Load shedding: orders and account queries that waited longer than this many
    /// milliseconds in the kernel's receive queue are answered `Overloaded` without being
    /// checked (confirmations only after four times as long), so that an overloaded
    /// authority keeps answering fresh requests in time instead of stale ones late.
    /// 0 never sheds.
    #[arg(long, default_value_t = fastpay_node::DEFAULT_SHED_AFTER.as_millis() as u64)]
    shed_after_ms: u64,
    /// Follow deposits into FastPay on the primary chain: its Ethereum JSON-RPC endpoint
    /// (`http://HOST:PORT`; `https://` needs a build with TLS). Each shard credits the
    /// deposits to its accounts exactly once, durably, once --primary-confirmations blocks
    /// are built on them. An unreachable or misbehaving endpoint only delays deposits
    /// (retried with backoff, counted in `primary_rpc_errors`). Needs a server built with
    /// `--features primary`.
    #[arg(long, requires = "primary_contract")]
    primary_rpc: Option<String>,
    /// With --primary-rpc: the FastPay contract's address (`0x...`, printed by
    /// `server deploy-contract`); it must serve this committee.
    #[arg(long, requires = "primary_rpc")]
    primary_contract: Option<String>,
    /// With --primary-rpc: blocks built on a deposit's block before it is credited. A
    /// deposit in a block that a reorganisation removes before then is never credited;
    /// choose it for the chain's finality (64 covers two Ethereum epochs).
    #[arg(long, default_value_t = 64)]
    primary_confirmations: u64,
    /// With --primary-rpc: milliseconds between looks for new blocks once caught up.
    #[arg(long, default_value_t = 1000)]
    primary_poll_ms: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let format = args.log_format;
    init_logging(format);
    match real_main(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // A collector reading JSON gets the failure as an event like any other.
            match format {
                LogFormat::Text => eprintln!("server: error: {error:#}"),
                LogFormat::Json => tracing::error!("server: error: {error:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Diagnostics go to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    fastpay_engine::logging::init(format == LogFormat::Json, "info");
}

fn real_main(args: Args) -> Result<()> {
    match args.command {
        Command::Generate {
            host,
            port,
            shards,
            vote_scheme,
            force,
            shard_listen,
            shard_link,
        } => generate(
            server_path(&args.server)?,
            host,
            port,
            shards,
            vote_scheme,
            force,
            placement(shard_listen, shard_link)?,
        ),
        Command::NewNetwork => new_network(server_path(&args.server)?),
        Command::Run(options) => run(server_path(&args.server)?, options),
        Command::Check(options) => check_only(server_path(&args.server)?, &options),
        Command::DeployContract {
            primary_rpc,
            eth_key,
            committee,
        } => deploy_contract(&primary_rpc, &eth_key, &committee),
    }
}

/// The --server file, which every command but `deploy-contract` needs.
fn server_path(path: &Option<PathBuf>) -> Result<&Path> {
    path.as_deref()
        .context("--server FILE is required (the authority's private file)")
}

#[cfg(feature = "primary")]
fn deploy_contract(rpc: &str, eth_key: &Path, committee: &Path) -> Result<()> {
    primary::deploy_contract(rpc, eth_key, committee)
}

#[cfg(not(feature = "primary"))]
fn deploy_contract(_: &str, _: &Path, _: &Path) -> Result<()> {
    bail!(
        "deploy-contract: this server was built without primary-chain support; build it with \
         `cargo build --release -p fastpay-engine --features primary`"
    )
}

/// Pairs `--shard-listen` with `--shard-link`, shard by shard.
fn placement(listen: Vec<String>, link: Vec<String>) -> Result<Vec<ShardAddress>> {
    if listen.len() != link.len() {
        bail!(
            "--shard-listen names {} shards but --shard-link {}",
            listen.len(),
            link.len()
        );
    }
    Ok(listen
        .into_iter()
        .zip(link)
        .map(|(listen, link)| ShardAddress { listen, link })
        .collect())
}

fn generate(
    path: &std::path::Path,
    host: String,
    port: u16,
    shards: u32,
    vote_scheme: VoteScheme,
    force: bool,
    placement: Vec<ShardAddress>,
) -> Result<()> {
    if shards == 0 {
        bail!("--shards must be at least 1");
    }
    if !placement.is_empty() && placement.len() != shards as usize {
        bail!(
            "--shard-listen names {} shards but --shards is {shards}",
            placement.len()
        );
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; refusing to overwrite an authority key (use --force)",
            path.display()
        );
    }
    #[cfg_attr(not(feature = "primary"), allow(unused_mut, unused_variables))]
    let (mut file, key) = match placement.is_empty() {
        true => ServerFile::generate(host, port, shards, vote_scheme)?,
        false => ServerFile::generate_placed(host, port, placement, vote_scheme)?,
    };
    // The redeem key is derived from the same seed: the entry names its address.
    #[cfg(feature = "primary")]
    {
        file.authority.eth_address = Some(primary::eth_address(&key.seed()));
    }
    write_server_file(path, &file)?;
    println!("{}", serde_json::to_string(&file.authority)?);
    Ok(())
}

/// `new-network`: the key kept, a new network instance in the server file.
fn new_network(path: &Path) -> Result<()> {
    let (mut file, _key) = load_server_file(path)?;
    file.draw_new_instance()?;
    write_server_file(path, &file)?;
    println!("{}", serde_json::to_string(&file.authority)?);
    Ok(())
}

/// Where this process listens for clients, and every shard's link address. A placed
/// authority (`shard_addresses` in the committee) runs one process per shard, unless all its
/// shards listen on one address.
fn addresses(
    entry: &AuthorityEntry,
    shard: Option<u32>,
    link_host: Option<&str>,
) -> Result<(SocketAddr, Vec<SocketAddr>)> {
    if !entry.is_placed() {
        let links = (0..entry.shards)
            .map(|j| entry.link_address_at(link_host.unwrap_or(&entry.host), j))
            .collect::<Result<_, _>>()?;
        return Ok((entry.address()?, links));
    }
    if link_host.is_some() {
        bail!(
            "--link-host conflicts with the committee's shard_addresses for authority {}, \
             which name each shard's link",
            entry.name
        );
    }
    let listens = entry.shard_addresses()?;
    let listen = match shard {
        Some(j) => match listens.get(j as usize) {
            Some(address) => *address,
            None => bail!("--shard {j} is out of range for authority {}", entry.name),
        },
        None if listens.iter().all(|a| *a == listens[0]) => listens[0],
        None => bail!(
            "authority {} places its shards on several addresses: run one process per shard \
             (--shard J)",
            entry.name
        ),
    };
    let links = (0..entry.shards)
        .map(|j| entry.link_address(j))
        .collect::<Result<_, _>>()?;
    Ok((listen, links))
}

impl RunArgs {
    /// The shedding budget (`None`: never shed).
    fn shed_after(&self) -> Option<Duration> {
        (self.shed_after_ms > 0).then(|| Duration::from_millis(self.shed_after_ms))
    }

    /// The voting record `run` keeps (none with --no-durability).
    fn voting_record(&self, server: &Path) -> Option<PathBuf> {
        (!self.no_durability).then(|| {
            self.voting_record
                .clone()
                .unwrap_or_else(|| server.with_extension("voted"))
        })
    }

    /// The data directory `run` uses (none with --no-durability).
    fn data_dir(&self, server: &Path) -> Option<PathBuf> {
        (!self.no_durability).then(|| {
            self.data_dir
                .clone()
                .unwrap_or_else(|| server.with_extension("data"))
        })
    }
}

/// `check`: prints what it found, or every problem.
fn check_only(server: &Path, args: &RunArgs) -> Result<()> {
    let data_dir = args.data_dir(server);
    let voting_record = args.voting_record(server);
    let input = CheckInput {
        server,
        committee: &args.committee,
        genesis: &args.initial_accounts,
        shard: args.shard,
        link_host: args.link_host.as_deref(),
        metrics_address: args.metrics_address,
        data_dir: data_dir.as_deref(),
        voting_record: voting_record.as_deref(),
        probe_ports: true,
    };
    match check(&input) {
        Ok(summary) => {
            println!(
                "ok: authority {} at {}:{} with {} shards in a committee of {}; {} genesis \
                 accounts ({} per shard)",
                summary.authority.name,
                summary.authority.host,
                summary.authority.port,
                summary.authority.shards,
                summary.committee_size,
                summary.accounts,
                summary
                    .accounts_per_shard
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            );
            Ok(())
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("server: check: {problem}");
            }
            bail!("{} problem(s) found", problems.len())
        }
    }
}

fn run(server_path: &Path, args: RunArgs) -> Result<()> {
    let (server, key) = load_server_file(server_path)?;
    let committee = CommitteeFile::load(&args.committee)?;
    let entry = membership(
        server_path,
        &args.committee,
        &server.authority,
        &committee,
        args.shard,
    )?;
    let (listen, link_addresses) = addresses(entry, args.shard, args.link_host.as_deref())?;
    let genesis = load_genesis(&args.initial_accounts)?;
    let genesis_accounts = genesis.accounts().len();
    #[cfg(feature = "primary")]
    let follow = primary::Follow::from_flags(
        args.primary_rpc.as_ref(),
        args.primary_contract.as_ref(),
        args.primary_confirmations,
        args.primary_poll_ms,
    )?;
    #[cfg(not(feature = "primary"))]
    if args.primary_rpc.is_some() {
        bail!(
            "--primary-rpc: this server was built without primary-chain support; build it \
             with `cargo build --release -p fastpay-engine --features primary`"
        );
    }

    let data_dir = args.data_dir(server_path);
    if data_dir.is_none() {
        tracing::warn!(
            "WARNING: --no-durability: state is kept in memory only. After a restart this \
             authority forgets its votes and could sign two conflicting orders. Benchmarks only."
        );
    }
    tracing::debug!(
        authority = %entry.name,
        host = %entry.host,
        port = entry.port,
        shards = entry.shards,
        data_dir = ?data_dir,
        committee_size = committee.authorities.len(),
        genesis_accounts,
        "starting"
    );

    let shed_after = args.shed_after();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("install the signal handlers")?;
    }

    #[cfg_attr(not(feature = "primary"), allow(unused_mut))]
    let mut engine = Engine::start(EngineConfig {
        key_seed: key.seed(),
        committee: Arc::new(committee.committee.clone()),
        listen,
        genesis,
        cores: args.cores.clone(),
        steering: !args.no_steering,
        only_shard: args.shard,
        link_addresses,
        queue_capacity: QUEUE_CAPACITY,
        data_dir: data_dir.clone(),
        voting_record: args.voting_record(server_path),
        snapshot_after_bytes: args.snapshot_after_bytes,
        shed_after,
        #[cfg(feature = "primary")]
        redeem_approver: follow.as_ref().map(|f| f.approvers(&key.seed())),
        #[cfg(not(feature = "primary"))]
        redeem_approver: None,
    })?;
    if let Some(dir) = &data_dir {
        log_recovery(&engine, dir);
    }
    #[cfg(feature = "primary")]
    if let Some(follow) = follow {
        follow.start(&committee, entry, &mut engine, &stop)?;
    }
    let which = match args.shard {
        Some(j) => format!("shard {j} of {}", entry.shards),
        None => format!("{} shards", entry.shards),
    };
    let metrics = serve_metrics(args.metrics_address, entry, &engine)?;
    tracing::info!(
        authority = %entry.name,
        address = %engine.local_addr(),
        "authority {} listening on {} with {which} ({} genesis accounts, steering {})",
        entry.name,
        engine.local_addr(),
        genesis_accounts,
        if !args.no_steering && args.shard.is_none() {
            "on"
        } else {
            "off"
        }
    );

    report_until_stopped(&engine, &stop, Duration::from_secs(args.stats_interval));
    tracing::info!("shutting down");
    drop(metrics);
    let counters = engine.counters().to_vec();
    engine.shutdown();
    tracing::info!("final counters\n{}", counters::report(&counters).trim_end());
    Ok(())
}

/// Logs what each shard recovered from `dir`.
fn log_recovery(engine: &Engine, dir: &Path) {
    for report in engine.recovery() {
        tracing::info!(
            shard = report.shard,
            replayed = report.replayed,
            "shard {}: recovered from {}{} with {} log records replayed{}",
            report.shard,
            dir.display(),
            if report.from_snapshot {
                " (snapshot)"
            } else {
                ""
            },
            report.replayed,
            match report.truncated {
                Some((offset, bytes)) => {
                    format!("; cut a torn tail of {bytes} bytes at byte {offset}")
                }
                None => String::new(),
            }
        );
    }
}

/// Serves the engine's metrics at `address`, if given.
fn serve_metrics(
    address: Option<SocketAddr>,
    entry: &AuthorityEntry,
    engine: &Engine,
) -> Result<Option<MetricsServer>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let exporter = Exporter::new(entry.name.to_string(), engine.metric_sources());
    let metrics = MetricsServer::start(address, exporter.registry())
        .with_context(|| format!("serve metrics on {address}"))?;
    tracing::info!(
        address = %metrics.local_addr(),
        "metrics at http://{}/metrics",
        metrics.local_addr()
    );
    Ok(Some(metrics))
}

/// Logs the counters every `interval` (never when zero) until `stop` is set.
fn report_until_stopped(engine: &Engine, stop: &AtomicBool, interval: Duration) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if !interval.is_zero() && last.elapsed() >= interval {
            last = Instant::now();
            tracing::info!(
                "counters\n{}",
                counters::report(engine.counters()).trim_end()
            );
        }
    }
}
