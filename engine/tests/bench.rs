//! `bench`, the reference's local benchmark, runs to the end on a small load: every order and
//! every confirmation answered, the numbers as JSON; and refuses what it cannot do.

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

#[test]
fn bench_runs_a_small_load_to_the_end() {
    let output = Command::new(BENCH)
        .args(["--num-accounts", "2000", "--committee-size", "4"])
        .args(["--num-shards", "2", "--max-in-flight", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(report["orders"], 2000, "{report}");
    assert_eq!(report["confirmations"], 2000, "{report}");
    assert_eq!(report["orders_lost"], 0, "{report}");
    assert_eq!(report["confirmations_lost"], 0, "{report}");
    assert!(report["orders_per_s"].as_f64().unwrap() > 0.0);
    assert!(stderr.contains("confirmations"), "{stderr}");
    // Where the CPU went: the authority's shard threads did the work (2,000 signature
    // checks a phase at least: measurable on any machine), the ceiling was measured,
    // and each share of it follows from them.
    for phase in ["orders", "confirmations"] {
        let cpu = report[format!("{phase}_authority_cpu_s")].as_f64().unwrap();
        let client = report[format!("{phase}_client_cpu_s")].as_f64().unwrap();
        assert!(cpu > 0.0 && client >= 0.0, "{report}");
        let per_cpu = report[format!("{phase}_per_authority_cpu_s")]
            .as_f64()
            .unwrap();
        assert!((per_cpu - 2000.0 / cpu).abs() <= 1.0, "{report}");
        let ceiling = report["ceiling"][format!("{phase}_per_cpu_s")]
            .as_f64()
            .unwrap();
        let share = report[format!("{phase}_of_ceiling")].as_f64().unwrap();
        assert!((share - 2000.0 / cpu / ceiling).abs() < 1e-6, "{report}");
    }
    assert_eq!(report["ceiling"]["confirmation_signatures"], 4, "{report}");
}

#[test]
fn bench_refuses_what_it_cannot_do() {
    for (args, needle) in [
        (vec!["--protocol", "tcp"], "UDP only"),
        (vec!["--num-accounts", "0"], "at least 1"),
        (vec!["--max-in-flight", "0"], "at least 1"),
    ] {
        let output = Command::new(BENCH).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
