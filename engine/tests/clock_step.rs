//! A shard process restarted with its clock stepped back a day keeps its links working: the
//! links number credits durably and read no clock, where they once took each incarnation's
//! epoch from the wall clock, so that every frame of the restarted shard was refused as
//! stale, forever.
//!
//! Needs `faketime` (Debian's `faketime` package; CI installs it).

mod common;

use common::{Authority, balance, committee, fund_accounts, pay_one, wait_serving};
use std::time::{Duration, Instant};

/// The shard's wrapper: libfaketime preloaded by `env`, which execs the server in its own
/// process. (The `faketime` command forks and waits, so killing it orphaned the server.)
const A_DAY_BACK: [&str; 3] = [
    "env",
    "LD_PRELOAD=/usr/$LIB/faketime/libfaketime.so.1",
    "FAKETIME=-1d",
];

/// Whether the wrapper moves the clock: `date` under it reads about a day earlier.
fn faketime_available() -> bool {
    let seconds = |wrapper: &[&str]| {
        std::process::Command::new(wrapper.first().copied().unwrap_or("date"))
            .args(wrapper.iter().skip(1))
            .args(if wrapper.is_empty() {
                vec!["+%s"]
            } else {
                vec!["date", "+%s"]
            })
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
    };
    match (seconds(&[]), seconds(&A_DAY_BACK)) {
        (Some(now), Some(back)) => (now - back - 86_400).abs() < 600,
        _ => false,
    }
}

/// Waits until `account`'s balance reads `want`.
fn wait_balance(dir: &std::path::Path, account: &str, want: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while balance(dir, account) != want.to_string() {
        assert!(
            Instant::now() < deadline,
            "{what}: {account} never reached {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_shard_restarted_with_its_clock_stepped_back_still_sends_credits() {
    if !faketime_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "faketime is missing (apt-get install faketime)"
        );
        eprintln!("skipped: faketime is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    committee(dir, 1);
    let accounts = fund_accounts(dir, 40);
    let shard = |a: &String| fastpay_wire::shard_of(&a.parse().unwrap(), 2).0;
    // The payer's shard sends the credits; it is the one that restarts.
    let payer = accounts.iter().find(|a| shard(a) == 0).unwrap().clone();
    let payee = accounts.iter().find(|a| shard(a) == 1).unwrap().clone();
    let mut shards: Vec<Authority> = (0..2).map(|j| Authority::new(dir, 1, Some(j))).collect();
    for s in &mut shards {
        s.start();
    }
    wait_serving(dir, &payer);
    pay_one(dir, &payer, &payee, "a payment before the restart");
    wait_balance(dir, &payee, 101, "before the restart");

    shards[0].kill();
    shards[0].wrapper = A_DAY_BACK.map(String::from).to_vec();
    shards[0].start();
    pay_one(dir, &payer, &payee, "a payment after the restart");
    wait_balance(
        dir,
        &payee,
        102,
        "after a restart with the clock a day back",
    );
    assert_eq!(balance(dir, &payer), "98");
}
