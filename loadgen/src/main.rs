//! `loadgen`: an open-loop load generator for FastPay authorities.
//!
//! It pre-generates accounts and pre-signs every order (and, for confirmations, every
//! certificate) before the clock starts, then sends on a fixed schedule at `--rate`, whatever
//! the replies do, and reports throughput and latency percentiles: one JSON object on stdout,
//! a table on stderr. It links only to the wire crate (and to `fastpay-udp` for its GSO sends
//! and GRO receives), so it shares no logic with the server that could hide the server's bugs.

#![forbid(unsafe_code)]

mod audit;

mod endpoints;
mod report;
mod run;
mod setup;
mod textfile;
mod workload;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use endpoints::Endpoints;
use fastpay_wire::{AuthorityEntry, CertifiedTransferOrder, Committee, CommitteeFile, CommitteeId};
use indicatif::ProgressBar;
use run::{Flood, Phase, RunConfig};
use setup::Prepared;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Open-loop load generator: sends pre-signed FastPay requests at a fixed rate and reports
/// throughput and latency (JSON on stdout, a table on stderr).
///
/// The authorities must have been started with this seed's accounts in their genesis
/// (`loadgen genesis --accounts N > initial_accounts.txt`).
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Requests started per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// What each request is: orders (votes), confirmations (certificates applied) or payments
    /// (order, quorum, certificate, confirmation, end to end).
    #[arg(long, value_enum, default_value_t = PhaseArg::Orders)]
    phase: PhaseArg,
    /// Most requests outstanding at once.
    #[arg(long, default_value_t = 100_000)]
    in_flight: usize,
    /// Microseconds between the sender's wake-ups: each sends what is due (one burst) and
    /// reads the replies that arrived. Latencies include up to one tick of this pacing; a
    /// longer tick wakes loadgen less often, which leaves more of a shared machine to the
    /// authority under test (each wake-up costs a few microseconds of CPU).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=1000))]
    tick_us: u64,
    /// The committee file.
    #[arg(long, default_value = "committee.json")]
    committee: PathBuf,
    /// Where requests go: `all`, or one authority by its position in the committee file
    /// (from 0) or its name.
    #[arg(long, default_value = "all")]
    target: String,
    /// Seed of the benchmark accounts (as given to `loadgen genesis`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Accounts in the genesis set (recipients wrap around it).
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// First account to use: consecutive runs against one authority need disjoint accounts.
    #[arg(long, default_value_t = 0)]
    account_offset: u64,
    /// The sequence number of every order: the accounts' next one. 0 for fresh accounts;
    /// runs that reuse the same accounts pass 1, 2, ... in turn (every earlier order of
    /// each account must have been confirmed).
    #[arg(long, default_value_t = 0)]
    sequence_number: u64,
    /// Confirmations phase: sign certificates with the authorities' own keys (their server
    /// files, in committee order) instead of collecting live votes, so one authority can be
    /// measured alone, as the reference benchmark did.
    #[arg(long)]
    offline_certificates: bool,
    /// The authorities' server files, for --offline-certificates.
    #[arg(long, value_delimiter = ',')]
    keys: Vec<PathBuf>,
    /// Milliseconds before an unanswered request counts as timed out.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    /// UDP sockets to send from (distinct source ports).
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Mix hostile datagrams into the run: this share (0..1) of everything sent is orders with
    /// broken signatures from funded accounts (the last 1000 of the genesis set).
    #[arg(long, conflicts_with = "flood_garbage")]
    flood_invalid: Option<f64>,
    /// Mix hostile datagrams into the run: this share (0..1) of everything sent is random bytes.
    #[arg(long, conflicts_with = "flood_confirmations")]
    flood_garbage: Option<f64>,
    /// Mix hostile datagrams into the run: this share (0..1) of everything sent is
    /// confirmation orders forging a quorum's signatures on transfers from accounts nobody
    /// funded, sequence number 0, each from a different sender (16,384 of them, in turn): every
    /// one passes the cheap checks and costs a quorum's signature verifications.
    #[arg(long, conflicts_with = "flood_invalid")]
    flood_confirmations: Option<f64>,
    /// Mix hostile datagrams into the run: this share (0..1) of everything sent is queries
    /// for the payments the run's recipients received, each of the smallest size an
    /// authority answers (too small for any certificate), for the run's first 16,384
    /// recipients in turn: their answers must cost the authority next to nothing, however
    /// many certificates it holds or has yet to store.
    #[arg(long, conflicts_with_all = ["flood_invalid", "flood_garbage", "flood_confirmations"])]
    flood_queries: Option<f64>,
    /// Send the hostile datagrams of a --flood-* option to these addresses instead of the
    /// authorities (comma separated), e.g. the link ports of an authority's shard processes.
    #[arg(long, value_delimiter = ',')]
    flood_to: Vec<std::net::SocketAddr>,
    /// Also write the results in Prometheus text format to this file (atomically), for
    /// node_exporter's textfile collector: point it at a `*.prom` file in the directory given
    /// to `--collector.textfile.directory`.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print genesis lines (`ADDRESS:BALANCE`) for the benchmark accounts.
    Genesis {
        /// How many accounts.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: u64,
        /// Seed of the accounts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Balance of each.
        #[arg(long, default_value_t = 1_000)]
        funding: u64,
    },
    /// Ask every authority about every benchmark account and print, per authority, the sum
    /// of the balances and how many accounts moved (one JSON object on stdout): after a run,
    /// each authority must still hold the genesis supply.
    Audit {
        /// How many accounts.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: u64,
        /// Seed of the accounts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The committee file.
        #[arg(long, default_value = "committee.json")]
        committee: PathBuf,
    },
    /// Measure this core's crypto ceiling: microseconds to sign a vote and to verify a
    /// signature (in batches of 64), and the orders and confirmations per CPU-second a shard
    /// could answer if that were all it did (one JSON object on stdout). Pin it to a shard's
    /// core (`taskset -c 0 loadgen ceiling`) to read a benchmark's rates as shares of it.
    Ceiling {
        /// Seconds to spend on each measurement (the median of five rounds is reported).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Votes in a quorum: a confirmation costs its shard this many verifications and the
        /// owner's. Default: the quorum of --committee if given, else 1 (one authority).
        #[arg(long)]
        quorum: Option<usize>,
        /// A committee file to take the quorum from.
        #[arg(long)]
        committee: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PhaseArg {
    Orders,
    Confirmations,
    Payments,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Genesis {
            accounts,
            seed,
            funding,
        }) => genesis(*accounts, *seed, *funding),
        Some(Command::Audit {
            accounts,
            seed,
            committee,
        }) => audit(committee, *seed, *accounts),
        Some(Command::Ceiling {
            seconds,
            quorum,
            committee,
        }) => ceiling(*seconds, *quorum, committee.as_deref()),
        None => benchmark(&args),
    }
}

/// `loadgen genesis`: the benchmark accounts' genesis lines, on stdout.
fn genesis(accounts: u64, seed: u64, funding: u64) -> Result<()> {
    let lines = setup::genesis(seed, 0, accounts, funding);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `loadgen audit`: every authority's view of the benchmark accounts, as JSON on stdout.
fn audit(committee: &Path, seed: u64, accounts: u64) -> Result<()> {
    let file = CommitteeFile::load(committee)?;
    let quorum = setup::vote_quorum(&file.committee)?;
    let report = audit::audit(&file.authorities, quorum, seed, accounts)?;
    println!("{report}");
    Ok(())
}

/// `loadgen ceiling`: this core's crypto ceiling, as JSON on stdout (and a line on stderr).
fn ceiling(seconds: f64, quorum: Option<usize>, committee: Option<&Path>) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
        bail!("--seconds must be between 0 and 600");
    }
    let quorum = match (quorum, committee) {
        (Some(q), _) => q,
        (None, Some(path)) => setup::vote_quorum(&CommitteeFile::load(path)?.committee)?,
        (None, None) => 1,
    };
    eprintln!("measuring signing and batch verification ({seconds} s each)...");
    let ceiling = fastpay_ceiling::measure(Duration::from_secs_f64(seconds), quorum);
    eprintln!(
        "sign {:.2} us, verify {:.2} us/signature: {:.0} orders/CPU-s, {:.0} confirmations/CPU-s ({} signatures each)",
        ceiling.sign_us,
        ceiling.verify_us,
        ceiling.orders_per_cpu_s(),
        ceiling.confirmations_per_cpu_s(),
        ceiling.confirmation_signatures
    );
    println!("{}", ceiling.to_json());
    Ok(())
}

/// The benchmark: prepares every request, runs them open-loop and reports (JSON on stdout,
/// a table on stderr, and the textfile of `--metrics-file`).
fn benchmark(args: &Args) -> Result<()> {
    let plan = Plan::new(args)?;
    let targets = plan.targets.len();
    eprintln!(
        "loadgen: {} at {} /s for {} s to {} authorit{} ({} accounts from {})",
        plan.phase.name(),
        args.rate,
        args.duration,
        targets,
        if targets == 1 { "y" } else { "ies" },
        plan.count,
        args.account_offset
    );
    let committee = plan.committee.id();
    let mut jobs = setup::prepare_orders(
        args.seed,
        &committee,
        args.account_offset,
        plan.count,
        args.accounts,
        fastpay_wire::SequenceNumber::new(args.sequence_number),
    );
    let mut endpoints = Endpoints::new(&plan.authorities, args.sockets)?;
    let mut certificates = Vec::new();
    if plan.phase == Phase::Confirmations {
        (jobs, certificates) = certify_unmeasured(args, &plan, &mut endpoints, jobs)?;
    }
    let flood = flood(args, &committee, &plan.authorities, plan.quorum)?;
    let config = plan.run_config(args, plan.phase, plan.targets.clone(), plan.needed, flood);
    let bar = live_bar("running");
    let cpu_before = process_cpu_seconds();
    let report = run::run(&config, &mut endpoints, &jobs, &certificates, &bar)?;
    let cpu_s = process_cpu_seconds() - cpu_before;
    bar.finish_and_clear();

    eprint!("{}", report.table(plan.phase, cpu_s));
    if let Some(path) = &args.metrics_file {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        textfile::write(
            path,
            &textfile::render(&report, plan.phase.name(), args.rate, end)?,
        )
        .with_context(|| format!("write {}", path.display()))?;
    }
    println!("{}", report.to_json(plan.phase, args.rate, targets, cpu_s));
    Ok(())
}

/// The benchmark's arguments checked against each other and against the committee they
/// name.
struct Plan {
    phase: Phase,
    committee: Committee,
    /// The committee file's entries, in file order.
    authorities: Vec<AuthorityEntry>,
    /// Where requests go (positions in the committee file).
    targets: Vec<usize>,
    /// Votes in a quorum of the committee.
    quorum: usize,
    /// Replies needed from the targets: from the one target, else from a quorum.
    needed: usize,
    /// Accounts the run uses from `--account-offset`, one request each.
    count: u64,
}

impl Plan {
    fn new(args: &Args) -> Result<Self> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(args.rate) || !positive(args.duration) {
            bail!("--rate and --duration must be positive");
        }
        let phase = match args.phase {
            PhaseArg::Orders => Phase::Orders,
            PhaseArg::Confirmations => Phase::Confirmations,
            PhaseArg::Payments => Phase::Payments,
        };
        // Orders and offline votes are signed for the committee the authorities were started
        // with.
        let CommitteeFile {
            authorities,
            committee,
        } = CommitteeFile::load(&args.committee)?;
        let quorum = setup::vote_quorum(&committee)?;
        if authorities.iter().any(|a| a.weight != 1) {
            eprintln!(
                "note: weights differ from 1; loadgen waits for {quorum} authorities (quorum weight {})",
                committee.quorum_threshold()
            );
        }
        let targets = targets(&args.target, &authorities)?;
        if phase == Phase::Payments && targets.len() < quorum {
            bail!("--phase payments needs --target all (a quorum of {quorum} authorities)");
        }
        let needed = if targets.len() == 1 { 1 } else { quorum };
        Ok(Self {
            phase,
            committee,
            authorities,
            targets,
            quorum,
            needed,
            count: account_count(args)?,
        })
    }

    /// A run of `phase` to `targets`, each request done at `needed` replies.
    fn run_config(
        &self,
        args: &Args,
        phase: Phase,
        targets: Vec<usize>,
        needed: usize,
        flood: Option<Flood>,
    ) -> RunConfig {
        RunConfig {
            phase,
            rate: args.rate,
            duration: Duration::from_secs_f64(args.duration),
            in_flight: args.in_flight,
            tick: Duration::from_micros(args.tick_us),
            timeout: Duration::from_millis(args.timeout_ms),
            targets,
            needed,
            quorum: self.quorum,
            flood,
        }
    }
}

/// The authorities `--target` names: `all`, one by its position in the committee file, or
/// one by its name.
fn targets(target: &str, authorities: &[AuthorityEntry]) -> Result<Vec<usize>> {
    Ok(match target {
        "all" => (0..authorities.len()).collect(),
        text => match text.parse::<usize>() {
            Ok(i) if i < authorities.len() => vec![i],
            Ok(i) => bail!(
                "--target {i}: the committee has {} authorities",
                authorities.len()
            ),
            Err(_) => vec![
                authorities
                    .iter()
                    .position(|a| a.name.to_string() == text)
                    .with_context(|| format!("--target {text}: no such authority"))?,
            ],
        },
    })
}

/// The accounts a run at `--rate` for `--duration` uses from `--account-offset`: one per
/// request, as many as the genesis set has left.
fn account_count(args: &Args) -> Result<u64> {
    let count = ((args.rate * args.duration).ceil() as u64)
        .min(args.accounts.saturating_sub(args.account_offset));
    if count == 0 {
        bail!(
            "no accounts left: --account-offset {} of --accounts {}",
            args.account_offset,
            args.accounts
        );
    }
    if (count as f64) < args.rate * args.duration {
        eprintln!(
            "note: only {count} accounts available from offset {}; the run is shorter",
            args.account_offset
        );
    }
    Ok(count)
}

/// Before a confirmations run: the orders are voted on first (unmeasured), as they would be
/// in a real payment, so that the measured confirmations skip the targets' own votes and the
/// owner signature. Returns the orders that got their votes, each with its certificate (of
/// live votes, or signed with `--keys` for `--offline-certificates`).
fn certify_unmeasured(
    args: &Args,
    plan: &Plan,
    endpoints: &mut Endpoints,
    jobs: Vec<Prepared>,
) -> Result<(Vec<Prepared>, Vec<CertifiedTransferOrder>)> {
    let (offline, targets, needed) = if args.offline_certificates {
        let offline = offline_certificates(args, plan, &jobs)?;
        (offline, plan.targets.clone(), plan.needed)
    } else {
        (
            Vec::new(),
            (0..plan.authorities.len()).collect(),
            plan.quorum,
        )
    };
    let prepare = plan.run_config(args, Phase::Orders, targets, needed, None);
    let bar = live_bar("voting (unmeasured)");
    let votes = run::run_collecting(&prepare, endpoints, &jobs, &bar)?;
    bar.finish_and_clear();
    // Keep the orders the targets voted for, each with its certificate.
    let mut kept = Vec::new();
    let mut certificates = Vec::new();
    for (i, vote) in votes.into_iter().enumerate() {
        if let Some(live) = vote {
            kept.push(jobs[i].clone());
            certificates.push(if args.offline_certificates {
                with_live_votes(offline[i].clone(), &live)
            } else {
                live
            });
        }
    }
    if kept.len() < jobs.len() {
        eprintln!(
            "note: {} of {} orders got their votes; confirming those",
            kept.len(),
            jobs.len()
        );
    }
    Ok((kept, certificates))
}

/// A certificate for every order, signed with the keys of `--keys` (one server file per
/// authority, in committee order).
fn offline_certificates(
    args: &Args,
    plan: &Plan,
    jobs: &[Prepared],
) -> Result<Vec<CertifiedTransferOrder>> {
    if args.keys.len() != plan.authorities.len() {
        bail!(
            "--offline-certificates needs --keys with one server file per authority, in committee order"
        );
    }
    let mut keys = Vec::new();
    for path in &args.keys {
        keys.push(setup::load_authority_key(path)?);
    }
    // Put the targets' keys first so certificates carry their own (skippable) votes.
    keys.sort_by_key(|k| {
        !plan
            .targets
            .iter()
            .any(|&t| plan.authorities[t].name == k.authority())
    });
    Ok(setup::offline_certificates(
        jobs,
        &plan.committee,
        &keys,
        plan.quorum,
    ))
}

/// `offline` with the targets' own votes as they cast them `live`, so that each target skips
/// its own vote (with batched votes, the live batch differs from the offline one).
fn with_live_votes(
    mut offline: CertifiedTransferOrder,
    live: &CertifiedTransferOrder,
) -> CertifiedTransferOrder {
    for (name, signature) in &mut offline.signatures {
        if let Some((_, vote)) = live.signatures.iter().find(|(n, _)| n == name) {
            *signature = *vote;
        }
    }
    offline
}

/// The hostile traffic the --flood-* options ask for.
fn flood(
    args: &Args,
    committee: &CommitteeId,
    authorities: &[AuthorityEntry],
    quorum: usize,
) -> Result<Option<Flood>> {
    let (share, forged) = match (
        args.flood_invalid,
        args.flood_garbage,
        args.flood_confirmations,
        args.flood_queries,
    ) {
        (Some(share), _, _, _) => {
            // Orders from the last funded accounts, each with one signature byte flipped.
            let first = args.accounts.saturating_sub(1000);
            let forged = setup::prepare_orders(
                args.seed,
                committee,
                first,
                args.accounts - first,
                args.accounts,
                fastpay_wire::SequenceNumber::ZERO,
            )
            .into_iter()
            .map(|p| {
                let mut order = p.order;
                order.signature.0[40] ^= 0x55;
                fastpay_wire::Message::TransferOrder(order)
            })
            .collect();
            (share, forged)
        }
        (None, Some(share), _, _) => (share, Vec::new()),
        (None, None, Some(share), _) => {
            let names: Vec<_> = authorities.iter().map(|a| a.name).collect();
            (
                share,
                setup::forged_confirmations(&names, quorum, committee, 16_384),
            )
        }
        (None, None, None, Some(share)) => {
            let recipients = args
                .accounts
                .saturating_sub(args.account_offset)
                .min(16_384);
            let queries = (0..recipients)
                .map(|i| {
                    let index = (args.account_offset + i + 1) % args.accounts.max(1);
                    setup::smallest_received_query(setup::account_key(args.seed, index).account())
                })
                .collect();
            (share, queries)
        }
        (None, None, None, None) => {
            if !args.flood_to.is_empty() {
                bail!(
                    "--flood-to needs one of --flood-invalid, --flood-garbage, \
                     --flood-confirmations, --flood-queries"
                );
            }
            return Ok(None);
        }
    };
    if !(0.0..1.0).contains(&share) {
        bail!("a --flood-* share must be in [0, 1)");
    }
    Ok(Some(Flood {
        share,
        forged,
        to: args.flood_to.clone(),
    }))
}

/// CPU time (user and system) this process has used so far, in seconds (0 where the OS will
/// not say): how much of the machine loadgen itself took from the authority it measures.
fn process_cpu_seconds() -> f64 {
    fastpay_udp::process_cpu_time().map_or(0.0, |t| t.as_secs_f64())
}

fn live_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_prefix(what.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix}: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}
