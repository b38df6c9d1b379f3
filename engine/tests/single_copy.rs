//! A shard runs once: a second copy (here, one shard started on its own while the whole
//! authority runs, which `SO_REUSEPORT` would let share the port) refuses to start, with an
//! error naming the holder, durable or in memory. Two copies would vote from two states.

mod common;

use common::{Authority, SERVER, committee};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `server run --shard 0` with `extra`, giving it 10 s to give up.
fn second_copy(dir: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(SERVER)
        .current_dir(dir)
        .args(["--server", "server1.json", "run", "--shard", "0"])
        .args(["--initial-accounts", "initial_accounts.txt"])
        .args(["--committee", "committee.json", "--stats-interval", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "a second copy of shard 0 kept running: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn refuses(output: Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

#[test]
fn a_second_copy_of_a_shard_refuses_to_start() {
    for durable in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let port = committee(dir, 1)[0].0.port();
        fs::write(
            dir.join("initial_accounts.txt"),
            format!("{}:100\n", "ab".repeat(32)),
        )
        .unwrap();
        let mut first = Authority::new(dir, 1, None);
        let extra: &[&str] = if durable { &[] } else { &["--no-durability"] };
        first.extra = extra.iter().map(|s| s.to_string()).collect();
        first.start();
        // Wait until the first copy listens (it binds its port once its shards recovered).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "the first copy never started");
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = first.pid().unwrap().to_string();
        if durable {
            refuses(
                second_copy(dir, extra),
                &[
                    "LOCK is locked by another running copy",
                    &format!("pid {pid}"),
                ],
            );
        } else {
            refuses(
                second_copy(dir, extra),
                &[
                    "shard 0 of authority",
                    "is already running in another process",
                ],
            );
        }
        first.kill();
    }
}
