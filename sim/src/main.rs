//! Runs the committee simulation from the command line and prints its report as JSON.

#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;
use fastpay_sim::{SimConfig, run};

/// Simulate a FastPay committee (real shard nodes on simulated disks that crash and restart,
/// real clients and signatures) over a lossy network, checking conservation, agreement,
/// durability, exactly-once credits and liveness. Prints one JSON report
/// per seed on stdout; exits non-zero with the failing seed when an invariant breaks.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// First seed to run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many consecutive seeds to run.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Authorities in the committee (3f + 1).
    #[arg(long, default_value_t = 4)]
    authorities: usize,
    /// Shards per authority.
    #[arg(long, default_value_t = 3)]
    shards: u32,
    /// Honest clients.
    #[arg(long, default_value_t = 24)]
    clients: usize,
    /// Clients that attempt a double spend.
    #[arg(long, default_value_t = 4)]
    double_spenders: usize,
    /// Payments per honest client.
    #[arg(long, default_value_t = 4)]
    transfers: usize,
    /// Probability that a datagram is lost (0..1).
    #[arg(long, default_value_t = 0.10)]
    drop_rate: f64,
    /// Probability that a datagram is delivered twice (0..1).
    #[arg(long, default_value_t = 0.05)]
    duplicate_rate: f64,
    /// Run without the Byzantine authority.
    #[arg(long)]
    no_byzantine: bool,
    /// Run each shard as its own process (lossy links between shards; crashes take one shard).
    #[arg(long)]
    split_shards: bool,
    /// Mean virtual microseconds between crashes of each honest authority (0: none).
    #[arg(long, default_value_t = 40_000)]
    crash_interval_us: u64,
    /// How every authority signs its votes: `merkle` (as `server generate` by default) or
    /// `single`.
    #[arg(long, default_value = "merkle")]
    vote_scheme: fastpay_wire::VoteScheme,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.authorities >= 1, "--authorities must be at least 1");
    anyhow::ensure!(args.shards >= 1, "--shards must be at least 1");
    anyhow::ensure!(
        (0.0..1.0).contains(&args.drop_rate) && (0.0..1.0).contains(&args.duplicate_rate),
        "--drop-rate and --duplicate-rate must be in [0, 1)"
    );
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let config = SimConfig {
            authorities: args.authorities,
            shards: args.shards,
            honest_clients: args.clients,
            double_spenders: args.double_spenders,
            transfers_per_client: args.transfers,
            drop_rate: args.drop_rate,
            duplicate_rate: args.duplicate_rate,
            byzantine: !args.no_byzantine,
            split_shards: args.split_shards,
            crash_interval_us: args.crash_interval_us,
            vote_scheme: args.vote_scheme,
            ..SimConfig::standard(seed)
        };
        let report = run(config)?;
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
