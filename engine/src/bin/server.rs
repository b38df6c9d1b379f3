//! `server`: creates an authority's key file, and runs the authority.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fastpay_engine::config::{load_genesis, load_server_file, write_server_file};
use fastpay_engine::counters;
use fastpay_engine::runtime::{Engine, EngineConfig, QUEUE_CAPACITY};
use fastpay_wire::{CommitteeFile, ServerFile, VoteScheme};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A FastPay authority: one process serving all of its shards (or one shard with `--shard`).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The authority's private file (its key and address), created by `generate`.
    #[arg(long)]
    server: PathBuf,
    #[command(subcommand)]
    command: Command,
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
        /// How the authority signs its votes: `single` (one signature per vote) or `merkle`
        /// (one signature per batch of votes, each vote carrying its Merkle path).
        #[arg(long, default_value = "single")]
        vote_scheme: VoteScheme,
        /// Overwrite an existing --server file (its key is lost).
        #[arg(long)]
        force: bool,
    },
    /// Run the authority until SIGINT or SIGTERM, printing per-shard counters on a cadence
    /// and at exit.
    Run {
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
        /// the same value. Default: the authority's public host.
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
        /// Log size (bytes) after which a shard writes a snapshot and starts a new log.
        #[arg(long, default_value_t = fastpay_engine::store::SNAPSHOT_AFTER_BYTES)]
        snapshot_after_bytes: u64,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Generate {
            host,
            port,
            shards,
            vote_scheme,
            force,
        } => generate(&args.server, host, port, shards, vote_scheme, force),
        Command::Run {
            initial_accounts,
            committee,
            shard,
            link_host,
            cores,
            no_steering,
            stats_interval,
            data_dir,
            no_durability,
            snapshot_after_bytes,
        } => run(RunArgs {
            server: args.server,
            initial_accounts,
            committee,
            shard,
            link_host,
            cores,
            steering: !no_steering,
            stats_interval,
            data_dir,
            no_durability,
            snapshot_after_bytes,
        }),
    }
}

fn generate(
    path: &std::path::Path,
    host: String,
    port: u16,
    shards: u32,
    vote_scheme: VoteScheme,
    force: bool,
) -> Result<()> {
    if shards == 0 {
        bail!("--shards must be at least 1");
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; refusing to overwrite an authority key (use --force)",
            path.display()
        );
    }
    let (file, _) = ServerFile::generate(host, port, shards, vote_scheme)?;
    write_server_file(path, &file)?;
    println!("{}", serde_json::to_string(&file.authority)?);
    Ok(())
}

struct RunArgs {
    server: PathBuf,
    initial_accounts: PathBuf,
    committee: PathBuf,
    shard: Option<u32>,
    link_host: Option<String>,
    cores: Option<Vec<usize>>,
    steering: bool,
    stats_interval: u64,
    data_dir: Option<PathBuf>,
    no_durability: bool,
    snapshot_after_bytes: u64,
}

fn run(args: RunArgs) -> Result<()> {
    let (server, key) = load_server_file(&args.server)?;
    let committee = CommitteeFile::load(&args.committee)?;
    let entry = committee.entry(&server.authority.name).with_context(|| {
        format!(
            "authority {} (from {}) is not in {}",
            server.authority.name,
            args.server.display(),
            args.committee.display()
        )
    })?;
    if *entry != server.authority {
        bail!(
            "{} and {} disagree about authority {}: {:?} vs {:?}",
            args.server.display(),
            args.committee.display(),
            server.authority.name,
            server.authority,
            entry
        );
    }
    if let Some(shard) = args.shard
        && shard >= entry.shards
    {
        bail!(
            "--shard {shard} is out of range: authority {} has {} shards (0..{})",
            entry.name,
            entry.shards,
            entry.shards
        );
    }
    let genesis = load_genesis(&args.initial_accounts)?;
    let genesis_accounts = genesis.accounts().len();
    let listen = entry.address()?;

    let data_dir = if args.no_durability {
        eprintln!(
            "WARNING: --no-durability: state is kept in memory only. After a restart this \
             authority forgets its votes and could sign two conflicting orders. Benchmarks only."
        );
        None
    } else {
        Some(
            args.data_dir
                .clone()
                .unwrap_or_else(|| args.server.with_extension("data")),
        )
    };

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("install the signal handlers")?;
    }

    let engine = Engine::start(EngineConfig {
        key_seed: key.seed(),
        committee: Arc::new(committee.committee.clone()),
        listen,
        genesis,
        cores: args.cores,
        steering: args.steering,
        only_shard: args.shard,
        link_addresses: (0..entry.shards)
            .map(|j| entry.link_address_at(args.link_host.as_deref().unwrap_or(&entry.host), j))
            .collect::<Result<_, _>>()?,
        queue_capacity: QUEUE_CAPACITY,
        data_dir: data_dir.clone(),
        snapshot_after_bytes: args.snapshot_after_bytes,
    })?;
    if let Some(dir) = &data_dir {
        for report in engine.recovery() {
            eprintln!(
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
    let which = match args.shard {
        Some(j) => format!("shard {j} of {}", entry.shards),
        None => format!("{} shards", entry.shards),
    };
    eprintln!(
        "authority {} listening on {} with {which} ({} genesis accounts, steering {})",
        entry.name,
        engine.local_addr(),
        genesis_accounts,
        if args.steering && args.shard.is_none() {
            "on"
        } else {
            "off"
        }
    );

    let interval = Duration::from_secs(args.stats_interval);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if !interval.is_zero() && last.elapsed() >= interval {
            last = Instant::now();
            eprint!("{}", counters::report(engine.counters()));
        }
    }
    eprintln!("shutting down");
    let counters = engine.counters().to_vec();
    engine.shutdown();
    eprint!("final counters\n{}", counters::report(&counters));
    Ok(())
}
