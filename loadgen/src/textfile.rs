//! A run's results in the Prometheus text format, for node_exporter's textfile collector
//! (`--collector.textfile.directory`): loadgen is a batch job that ends, so rather than
//! serve an endpoint nobody may scrape before it exits, it leaves a file that the machine's
//! node_exporter exposes until the next run replaces it.

use crate::report::Report;
use std::fmt::Write as _;
use std::path::Path;

/// Latency quantiles reported, as the summary's `quantile` labels.
const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// Renders `report` (for `phase`, run at `rate` for its window, ending at `end_unix_s`).
pub fn render(report: &Report, phase: &str, rate: f64, end_unix_s: f64) -> String {
    let mut out = String::new();
    let labels = format!("phase=\"{phase}\"");
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (series, value) in samples {
            let _ = writeln!(out, "{series} {value}");
        }
    };
    let one = |name: &str, value: f64| vec![(format!("{name}{{{labels}}}"), value)];
    metric(
        "fastpay_loadgen_requests_sent_total",
        "counter",
        "Requests started in the last run.",
        &one("fastpay_loadgen_requests_sent_total", report.sent as f64),
    );
    metric(
        "fastpay_loadgen_requests_ok_total",
        "counter",
        "Requests completed in the last run.",
        &one("fastpay_loadgen_requests_ok_total", report.ok as f64),
    );
    let rejected: Vec<(String, f64)> = report
        .rejected
        .iter()
        .map(|(code, n)| {
            (
                format!(
                    "fastpay_loadgen_requests_rejected_total{{{labels},code=\"{}\"}}",
                    escape(code)
                ),
                *n as f64,
            )
        })
        .collect();
    metric(
        "fastpay_loadgen_requests_rejected_total",
        "counter",
        "Requests refused in the last run, by the authorities' error code.",
        &rejected,
    );
    metric(
        "fastpay_loadgen_requests_timed_out_total",
        "counter",
        "Requests without an answer in time in the last run.",
        &one(
            "fastpay_loadgen_requests_timed_out_total",
            report.timeouts as f64,
        ),
    );
    metric(
        "fastpay_loadgen_requests_shed_total",
        "counter",
        "Requests the authorities refused as Overloaded (shed) in the last run.",
        &one("fastpay_loadgen_requests_shed_total", report.shed as f64),
    );
    metric(
        "fastpay_loadgen_equivocations_total",
        "counter",
        "Votes from one authority for two orders of one account and sequence number.",
        &one(
            "fastpay_loadgen_equivocations_total",
            report.equivocations as f64,
        ),
    );
    metric(
        "fastpay_loadgen_target_requests_per_second",
        "gauge",
        "The rate requests were scheduled at.",
        &one("fastpay_loadgen_target_requests_per_second", rate),
    );
    let window = report.window_s.max(1e-9);
    metric(
        "fastpay_loadgen_achieved_requests_per_second",
        "gauge",
        "Requests completed per second of the last run.",
        &one(
            "fastpay_loadgen_achieved_requests_per_second",
            report.ok as f64 / window,
        ),
    );
    metric(
        "fastpay_loadgen_run_duration_seconds",
        "gauge",
        "Seconds over which the last run started requests.",
        &one("fastpay_loadgen_run_duration_seconds", report.window_s),
    );
    metric(
        "fastpay_loadgen_run_end_timestamp_seconds",
        "gauge",
        "When the last run ended, in seconds since the Unix epoch.",
        &one("fastpay_loadgen_run_end_timestamp_seconds", end_unix_s),
    );
    let latency = &report.latency;
    let mut samples: Vec<(String, f64)> = QUANTILES
        .iter()
        .map(|q| {
            let micros = if latency.is_empty() {
                0
            } else {
                latency.value_at_quantile(*q)
            };
            (
                format!("fastpay_loadgen_latency_seconds{{{labels},quantile=\"{q}\"}}"),
                micros as f64 / 1e6,
            )
        })
        .collect();
    samples.push((
        format!("fastpay_loadgen_latency_seconds_sum{{{labels}}}"),
        latency.mean() * latency.len() as f64 / 1e6,
    ));
    samples.push((
        format!("fastpay_loadgen_latency_seconds_count{{{labels}}}"),
        latency.len() as f64,
    ));
    metric(
        "fastpay_loadgen_latency_seconds",
        "summary",
        "Seconds from a request's scheduled start to its completion in the last run.",
        &samples,
    );
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` atomically (a temporary file renamed into place), as the
/// textfile collector requires: it must never read a half-written file.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn renders_every_result_with_its_type() {
        let mut latency = hdrhistogram::Histogram::new(3).unwrap();
        latency.record(1_000).unwrap();
        latency.record(3_000).unwrap();
        let report = Report {
            sent: 10,
            ok: 2,
            rejected: BTreeMap::from([("Stale\"x".to_string(), 3)]),
            timeouts: 5,
            shed: 2,
            latency,
            active_s: 4.0,
            window_s: 2.0,
            ..Report::new().unwrap()
        };
        let text = render(&report, "orders", 5.0, 1.5e9);
        for line in [
            "# TYPE fastpay_loadgen_requests_sent_total counter",
            "fastpay_loadgen_requests_sent_total{phase=\"orders\"} 10",
            "fastpay_loadgen_requests_rejected_total{phase=\"orders\",code=\"Stale\\\"x\"} 3",
            "fastpay_loadgen_achieved_requests_per_second{phase=\"orders\"} 1",
            "fastpay_loadgen_latency_seconds_count{phase=\"orders\"} 2",
            "# TYPE fastpay_loadgen_latency_seconds summary",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadgen.prom");
        write(&path, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
