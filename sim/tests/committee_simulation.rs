//! The seeded committee simulation, running the real shard nodes: every invariant, over many
//! seeds, in both link modes, with crashes and restarts from simulated disks.
//!
//! CI runs the fixed seeds below. `FASTPAY_SIM_SEEDS=N` runs seeds 1..=N instead, and
//! `FASTPAY_SIM_SEED=S` replays exactly one seed (the one a failure prints).

use fastpay_sim::{SimConfig, SimReport, run};
use fastpay_wire::VoteScheme;

/// Seeds that CI runs on every change, per link mode: the whole file within two minutes on a
/// 2-core AVX2 machine now that every honest client runs the real client machines (120 seeds
/// took 215 s there; `FASTPAY_SIM_SEEDS` runs more).
const CI_SEEDS: u64 = 50;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("FASTPAY_SIM_SEED") {
        return vec![seed.parse().expect("FASTPAY_SIM_SEED must be an integer")];
    }
    let count = std::env::var("FASTPAY_SIM_SEEDS")
        .map(|n| n.parse().expect("FASTPAY_SIM_SEEDS must be an integer"))
        .unwrap_or(CI_SEEDS);
    (1..=count).collect()
}

fn run_all(shape: impl Fn(u64) -> SimConfig) -> Vec<SimReport> {
    seeds()
        .into_iter()
        .map(|seed| run(shape(seed)).unwrap_or_else(|failure| panic!("{failure}")))
        .collect()
}

fn summarize(name: &str, reports: &[SimReport]) -> (u64, u64) {
    let delivered: u64 = reports.iter().map(|r| r.messages_delivered).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let damaged: u64 = reports.iter().map(|r| r.damaged_restarts).sum();
    let snapshots: u64 = reports.iter().map(|r| r.snapshots).sum();
    let completed: u64 = reports.iter().map(|r| r.transfers_completed).sum();
    let credits: u64 = reports.iter().map(|r| r.cross_shard_credits).sum();
    let client_crashes: u64 = reports.iter().map(|r| r.client_crashes).sum();
    let recovered: u64 = reports.iter().map(|r| r.certificates_recovered).sum();
    let downloaded: u64 = reports.iter().map(|r| r.payments_downloaded).sum();
    let redeems: u64 = reports.iter().map(|r| r.redeems).sum();
    let refused: u64 = reports.iter().map(|r| r.redeems_refused).sum();
    eprintln!(
        "{name}: {} seeds: {delivered} messages delivered, {crashes} crash-restarts ({damaged} \
         from torn, zero-filled or scrambled logs), {snapshots} snapshots, {completed} transfers, \
         {credits} cross-shard credits, {client_crashes} client crashes, {recovered} lost \
         certificates recovered from the committee, {downloaded} payments downloaded, \
         {redeems} exits redeemed ({refused} redeems refused)",
        reports.len()
    );
    // Clients crash and resume, recover certificates they lost, and download payments.
    assert!(client_crashes > 0 && downloaded > 0, "{name}");
    if reports.len() >= 5 {
        assert!(recovered > 0, "{name}: no lost certificate was recovered");
        assert!(
            redeems > 0 && refused > 0,
            "{name}: no exit was redeemed, or none refused"
        );
    }
    // The faults the simulation promises actually happened.
    for r in reports {
        assert!(
            r.datagrams_dropped > 0 && r.datagrams_duplicated > 0,
            "{r:?}"
        );
        assert!(r.undecodable > 0 && r.replies_refused > 0, "{r:?}");
        assert!(
            r.cross_shard_credits > 0 && r.double_spends_attempted > 0,
            "{r:?}"
        );
        assert!(r.crashes > 0, "{r:?}");
    }
    (delivered, crashes)
}

#[test]
fn committee_keeps_every_invariant_through_crashes() {
    let in_process = run_all(SimConfig::standard);
    let split = run_all(|seed| SimConfig {
        split_shards: true,
        ..SimConfig::standard(seed)
    });
    let (d1, c1) = summarize("shards in one process", &in_process);
    let (d2, c2) = summarize("shards as separate processes", &split);
    if seeds().len() as u64 >= CI_SEEDS {
        assert!(d1 + d2 >= 1_000_000, "only {} messages", d1 + d2);
        assert!(c1 + c2 >= 1_000, "only {} crash-restarts", c1 + c2);
    }
    assert!(
        in_process
            .iter()
            .chain(&split)
            .any(|r| r.damaged_restarts > 0)
    );
    assert!(in_process.iter().chain(&split).any(|r| r.snapshots > 0));
}

/// The same invariants with every authority signing batches of votes (half the seeds with
/// shards in one process, half with shards as separate processes).
#[test]
fn committee_keeps_every_invariant_with_batched_votes() {
    let reports = run_all(|seed| SimConfig {
        vote_scheme: VoteScheme::Merkle,
        split_shards: seed % 2 == 0,
        ..SimConfig::standard(seed.wrapping_add(3_000))
    });
    summarize("batched votes", &reports);
}

#[test]
fn many_shards_heavy_loss() {
    run_all(|seed| SimConfig {
        shards: 8,
        honest_clients: 16,
        drop_rate: 0.3,
        duplicate_rate: 0.2,
        split_shards: seed % 2 == 0,
        ..SimConfig::standard(seed.wrapping_add(1_000))
    });
}

#[test]
fn single_shard_no_faults_completes_every_transfer() {
    for report in [VoteScheme::Single, VoteScheme::Merkle]
        .into_iter()
        .flat_map(|scheme| {
            run_all(move |seed| SimConfig {
                vote_scheme: scheme,
                ..no_faults(seed)
            })
        })
    {
        assert_eq!(report.transfers_completed, 24 * 4);
        assert_eq!(report.cross_shard_credits, 0);
        assert_eq!(report.crashes, 0);
    }
}

/// One shard, no loss, no crashes, no Byzantine authority.
fn no_faults(seed: u64) -> SimConfig {
    SimConfig {
        shards: 1,
        drop_rate: 0.0,
        duplicate_rate: 0.0,
        misroute_rate: 0.0,
        crash_interval_us: 0,
        byzantine: false,
        client_crash_rate: 0.0,
        unsaved_certificate_rate: 0.0,
        ..SimConfig::standard(seed.wrapping_add(2_000))
    }
}

#[test]
fn a_seed_replays_exactly() {
    for split_shards in [false, true] {
        let shape = |seed| SimConfig {
            split_shards,
            ..SimConfig::standard(seed)
        };
        let first = run(shape(7)).unwrap();
        let second = run(shape(7)).unwrap();
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        let other = run(shape(8)).unwrap();
        assert_ne!(format!("{first:?}"), format!("{other:?}"));
    }
}
