//! The reference quickstart, end to end, with real processes on 127.0.0.1: 4 authorities ×
//! 4 shards, 1000 accounts funded with 100; query, transfer, query, benchmark; then one
//! authority is killed and payments still complete, and a transfer interrupted while the
//! committee could not reach a quorum is finished by the next run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::{SERVER, check};

/// Held by each test for its whole run: two committees of 16 shards on a 2-core machine starve
/// each other (a debug build's benchmark then misses its deadline), so they take turns.
static ONE_COMMITTEE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The benchmark's `--timeout`: what a slow machine (debug build, AVX2 only, 2 cores) needs for
/// 1000 transfers with room to spare. A healthy run takes a few seconds; the limit only bounds
/// a broken one.
const BENCHMARK_TIMEOUT_S: &str = "300";

/// How long a committee may take to come up on a slow machine.
const STARTUP: Duration = Duration::from_secs(120);

/// Kills its processes when the test ends, however it ends.
struct Processes(Vec<Option<Child>>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Quickstart {
    dir: PathBuf,
}

impl Quickstart {
    fn client(&self, args: &[&str]) -> Output {
        common::client(&self.dir, args)
    }

    fn balance(&self, account: &str) -> i64 {
        let out = check(self.client(&["query_balance", account]), "query_balance");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a balance: {out:?}"))
    }

    fn start_server(&self, i: usize) -> Child {
        self.start_shard(i, None)
    }

    fn start_shard(&self, i: usize, shard: Option<u32>) -> Child {
        let shard_args = match shard {
            Some(j) => vec!["--shard".to_string(), j.to_string()],
            None => Vec::new(),
        };
        Command::new(SERVER)
            .current_dir(&self.dir)
            .args(["--server", &format!("server{i}.json"), "run"])
            .args(shard_args)
            .args(["--initial-accounts", "initial_accounts.txt"])
            .args(["--committee", "committee.json", "--stats-interval", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Generates four authorities with four shards each and `accounts` funded accounts; returns
/// the directory and the genesis lines.
fn set_up(accounts: usize) -> (tempfile::TempDir, Quickstart, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let q = Quickstart {
        dir: tmp.path().to_path_buf(),
    };
    let dir: &Path = &q.dir;
    let mut committee = String::new();
    for i in 1..=4 {
        // Room for the public port and the four link ports after it.
        let port = common::free_port_with_room(4).to_string();
        committee += &check(
            Command::new(SERVER)
                .current_dir(dir)
                .args(["--server", &format!("server{i}.json"), "generate"])
                .args(["--host", "127.0.0.1", "--port", &port, "--shards", "4"])
                .output()
                .unwrap(),
            "generate",
        );
    }
    fs::write(dir.join("committee.json"), committee).unwrap();
    let count = accounts.to_string();
    let genesis = check(
        q.client(&["create_accounts", &count, "--initial-funding", "100"]),
        "create_accounts",
    );
    fs::write(dir.join("initial_accounts.txt"), &genesis).unwrap();
    let addresses: Vec<String> = genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(addresses.len(), accounts);
    (tmp, q, addresses)
}

/// Waits until the committee answers queries.
fn wait_for_committee(q: &Quickstart, account: &str) {
    let deadline = Instant::now() + STARTUP;
    while q.balance(account) != 100 {
        assert!(Instant::now() < deadline, "the committee never came up");
    }
}

#[test]
fn reference_quickstart_end_to_end() {
    let _turn = ONE_COMMITTEE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_tmp, q, addresses) = set_up(1000);
    let dir: &Path = &q.dir;
    let (a1, a2) = (addresses[0].clone(), addresses[999].clone());

    let mut servers = Processes((1..=4).map(|i| Some(q.start_server(i))).collect());
    wait_for_committee(&q, &a1);
    assert_eq!(q.balance(&a2), 100);

    check(
        q.client(&["transfer", "10", "--from", &a1, "--to", &a2]),
        "transfer",
    );
    assert_eq!(q.balance(&a1), 90);
    assert_eq!(q.balance(&a2), 110);

    let report = check(
        q.client(&["--timeout", BENCHMARK_TIMEOUT_S, "benchmark"]),
        "benchmark",
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["transfers"], 1000);
    assert!(report["orders_per_s"].as_f64().unwrap() > 0.0);
    // Everyone paid one unit and received one: balances are unchanged.
    assert_eq!(q.balance(&a1), 90);
    assert_eq!(q.balance(&a2), 110);

    // One authority dies: f = 1, so payments go on.
    let mut dead = servers.0[3].take().unwrap();
    dead.kill().unwrap();
    dead.wait().unwrap();
    check(
        q.client(&["transfer", "5", "--from", &a2, "--to", &a1]),
        "transfer with one authority down",
    );
    assert_eq!(q.balance(&a1), 95);
    assert_eq!(q.balance(&a2), 105);

    // Freeze two of the three live authorities: no quorum, so the transfer is interrupted...
    let frozen = [
        servers.0[1].as_ref().unwrap(),
        servers.0[2].as_ref().unwrap(),
    ];
    for child in frozen {
        signal(child, "-STOP");
    }
    let interrupted = q.client(&[
        "--timeout",
        "1",
        "transfer",
        "7",
        "--from",
        &a1,
        "--to",
        &a2,
    ]);
    assert!(
        !interrupted.status.success(),
        "a transfer without a quorum must fail"
    );
    let wallet = fs::read_to_string(dir.join("accounts.json")).unwrap();
    assert!(
        wallet.contains("Voting"),
        "the interrupted order must be in the wallet"
    );
    for child in frozen {
        signal(child, "-CONT");
    }
    // ...and the next run finishes it before making its own payment.
    check(
        q.client(&["transfer", "1", "--from", &a1, "--to", &a2]),
        "resumed transfer",
    );
    assert_eq!(q.balance(&a1), 95 - 7 - 1);
    assert_eq!(q.balance(&a2), 105 + 7 + 1);

    // Paying an address the committee has never seen works, and the wallet knows the account.
    let stranger = "ab".repeat(32);
    check(
        q.client(&["transfer", "3", "--from", &a1, "--to", &stranger]),
        "pay a stranger",
    );
    assert_eq!(q.balance(&stranger), 3);
    assert!(
        fs::read_to_string(dir.join("accounts.json"))
            .unwrap()
            .contains(&a1)
    );

    // The supply audit passes with the dead authority reported incomplete: the three others
    // hold exactly the genesis, 1000 accounts of 100.
    let audit = supply_audit(&q);
    let (live, dead): (Vec<_>, Vec<_>) = audit["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|a| a["complete"] == true);
    assert_eq!((live.len(), dead.len()), (3, 1), "{audit}");
    for authority in live {
        assert_eq!(authority["genesis"], "100000", "{audit}");
        assert_eq!(authority["held"], "100000", "{audit}");
        assert_eq!(authority["balanced"], true, "{audit}");
    }
}

/// The reference quickstart's own command lines: every shard of every authority in its own
/// process (`run --shard J`), so credits between shards and misrouted datagrams cross
/// processes over the authenticated link.
#[test]
fn reference_quickstart_with_a_process_per_shard() {
    let _turn = ONE_COMMITTEE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_tmp, q, addresses) = set_up(200);
    let mut processes = Vec::new();
    for i in 1..=4 {
        for j in 0..4 {
            processes.push(Some(q.start_shard(i, Some(j))));
        }
    }
    let _processes = Processes(processes);
    let (a1, a2) = (&addresses[0], &addresses[199]);
    wait_for_committee(&q, a1);
    check(
        q.client(&["transfer", "10", "--from", a1, "--to", a2]),
        "transfer",
    );
    assert_eq!(q.balance(a1), 90);
    assert_eq!(q.balance(a2), 110);
    let report = check(
        q.client(&["--timeout", BENCHMARK_TIMEOUT_S, "benchmark"]),
        "benchmark",
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["transfers"], 200);
    // Every account paid one unit and received one; sample accounts on every shard.
    for address in addresses.iter().take(40) {
        let want = if address == a1 {
            90
        } else if address == a2 {
            110
        } else {
            100
        };
        assert_eq!(q.balance(address), want, "{address}");
    }
    // The supply audit: every authority's shards, in their own processes, account for the
    // genesis and nothing is left in flight between them.
    let audit = supply_audit(&q);
    for authority in audit["authorities"].as_array().unwrap() {
        assert_eq!(authority["complete"], true, "{audit}");
        assert_eq!(authority["genesis"], "20000", "{audit}");
        assert_eq!(authority["held"], "20000", "{audit}");
        assert_eq!(authority["in_flight"], "0", "{audit}");
    }
}

/// `client audit --settled`, which must pass; its JSON report.
fn supply_audit(q: &Quickstart) -> serde_json::Value {
    let report = check(
        q.client(&["--timeout", "20", "audit", "--settled"]),
        "client audit",
    );
    let audit: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["deposited"], "0", "{audit}");
    audit
}
