//! The seeded committee simulation: every invariant, over many seeds.
//!
//! CI runs the fixed seeds below. `FASTPAY_SIM_SEEDS=N` runs seeds 1..=N instead, and
//! `FASTPAY_SIM_SEED=S` replays exactly one seed (the one a failure prints).

use fastpay_sim::{SimConfig, SimReport, run};

/// Seeds that CI runs on every change.
const CI_SEEDS: u64 = 24;

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

#[test]
fn committee_keeps_every_invariant() {
    let reports = run_all(SimConfig::standard);
    let delivered: u64 = reports.iter().map(|r| r.datagrams_delivered).sum();
    let completed: u64 = reports.iter().map(|r| r.transfers_completed).sum();
    let credits: u64 = reports.iter().map(|r| r.cross_shard_credits).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicate_credits_ignored).sum();
    let double_spends: u64 = reports.iter().map(|r| r.double_spends_certified).sum();
    eprintln!(
        "{} seeds: {delivered} datagrams delivered, {completed} transfers, {credits} cross-shard \
         credits, {duplicates} redelivered credits ignored, {double_spends} double spends \
         certified once",
        reports.len()
    );
    // The faults the simulation promises actually happened.
    for r in &reports {
        assert!(
            r.datagrams_dropped > 0 && r.datagrams_duplicated > 0,
            "{r:?}"
        );
        assert!(r.undecodable > 0 && r.replies_refused > 0, "{r:?}");
        assert!(
            r.cross_shard_credits > 0 && r.double_spends_attempted > 0,
            "{r:?}"
        );
    }
    assert!(duplicates > 0);
}

#[test]
fn many_shards_heavy_loss() {
    run_all(|seed| SimConfig {
        shards: 8,
        honest_clients: 16,
        drop_rate: 0.3,
        duplicate_rate: 0.2,
        ..SimConfig::standard(seed.wrapping_add(1_000))
    });
}

#[test]
fn single_shard_no_faults_completes_every_transfer() {
    for report in run_all(|seed| SimConfig {
        shards: 1,
        drop_rate: 0.0,
        duplicate_rate: 0.0,
        credit_redelivery_rate: 0.0,
        byzantine: false,
        ..SimConfig::standard(seed.wrapping_add(2_000))
    }) {
        assert_eq!(report.transfers_completed, 24 * 4);
        assert_eq!(report.cross_shard_credits, 0);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let first = run(SimConfig::standard(7)).unwrap();
    let second = run(SimConfig::standard(7)).unwrap();
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    let other = run(SimConfig::standard(8)).unwrap();
    assert_ne!(format!("{first:?}"), format!("{other:?}"));
}
