//! The `loadgen` binary's command line as a user meets it: `genesis` writes the accounts the
//! authorities start with, and bad arguments or a missing committee file are refused with a
//! clear message and a failing status, before any load is sent.

use std::process::{Command, Output};

fn loadgen(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn genesis_writes_one_funded_account_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&["genesis", "--accounts", "3"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        let (account, amount) = line.split_once(':').unwrap();
        assert_eq!(account.len(), 64, "{line}");
        assert!(amount.parse::<u64>().unwrap() > 0, "{line}");
    }
}

#[test]
fn bad_arguments_and_a_missing_committee_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&["--rate", "fast"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));
    let out = loadgen(&["--rate", "10", "--duration", "1"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("committee.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
