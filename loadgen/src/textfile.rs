//! A run's results in the Prometheus text format, for node_exporter's textfile collector
//! (`--collector.textfile.directory`): loadgen is a batch job that ends, so rather than
//! serve an endpoint nobody may scrape before it exits, it leaves a file that the machine's
//! node_exporter exposes until the next run replaces it. The text is encoded by
//! `prometheus-client`, as the authorities' `/metrics` is.

use crate::report::Report;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::path::Path;

/// Upper bounds, in seconds, of the latency histogram's buckets: steps of 1, 2.5 and 5 (as
/// the authorities' reply delay buckets) from 50 µs, a vote on loopback, to 10 s, past the
/// 2 s default of `--timeout-ms`.
const LATENCY_BUCKETS: &[f64] = &[
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0,
];

/// A counter of the run: name (without the `_total` the encoder adds), help, and its
/// values, each with the error code it counts if it counts one.
type Count = (&'static str, &'static str, Vec<(Option<String>, u64)>);

/// A gauge of the run: name, help, value.
type Level = (&'static str, &'static str, f64);

/// What the textfile says about one run, labelled with its phase.
#[derive(Debug)]
struct RunMetrics {
    phase: String,
    counters: Vec<Count>,
    gauges: Vec<Level>,
    /// Latency: sum and count of the observations, in seconds, and the observations per
    /// bucket of [`LATENCY_BUCKETS`] (not cumulative), ending with `+Inf`.
    latency_sum: f64,
    latency_count: u64,
    latency_buckets: Vec<(f64, u64)>,
}

impl RunMetrics {
    fn new(report: &Report, phase: &str, rate: f64, end_unix_s: f64) -> Self {
        let one = |value: u64| vec![(None, value)];
        let counters = vec![
            (
                "fastpay_loadgen_requests_sent",
                "Requests started in the last run.",
                one(report.sent),
            ),
            (
                "fastpay_loadgen_requests_ok",
                "Requests completed in the last run.",
                one(report.ok),
            ),
            (
                "fastpay_loadgen_requests_rejected",
                "Requests refused in the last run, by the authorities' error code.",
                report
                    .rejected
                    .iter()
                    .map(|(code, n)| (Some(code.clone()), *n))
                    .collect(),
            ),
            (
                "fastpay_loadgen_requests_timed_out",
                "Requests without an answer in time in the last run.",
                one(report.timeouts),
            ),
            (
                "fastpay_loadgen_requests_shed",
                "Requests the authorities refused as Overloaded (shed) in the last run.",
                one(report.shed),
            ),
            (
                "fastpay_loadgen_equivocations",
                "Votes from one authority for two orders of one account and sequence number.",
                one(report.equivocations),
            ),
        ];
        let gauges = vec![
            (
                "fastpay_loadgen_target_requests_per_second",
                "The rate requests were scheduled at.",
                rate,
            ),
            (
                "fastpay_loadgen_achieved_requests_per_second",
                "Requests completed per second of the last run.",
                report.ok as f64 / report.window_s.max(1e-9),
            ),
            (
                "fastpay_loadgen_run_duration_seconds",
                "Seconds over which the last run started requests.",
                report.window_s,
            ),
            (
                "fastpay_loadgen_run_end_timestamp_seconds",
                "When the last run ended, in seconds since the Unix epoch.",
                end_unix_s,
            ),
        ];
        let latency = &report.latency;
        Self {
            phase: phase.to_string(),
            counters,
            gauges,
            latency_sum: latency.mean() * latency.len() as f64 / 1e6,
            latency_count: latency.len(),
            latency_buckets: buckets(latency),
        }
    }
}

/// The observations of `latency` (in microseconds) per bucket of [`LATENCY_BUCKETS`] (not
/// cumulative), ending with `+Inf`.
fn buckets(latency: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .map(|bound| (bound, 0))
        .collect();
    for value in latency.iter_recorded() {
        let seconds = value.value_iterated_to() as f64 / 1e6;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        buckets[bucket].1 += value.count_at_value();
    }
    buckets
}

impl Collector for RunMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = [("phase", self.phase.as_str())];
        for (name, help, values) in &self.counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (code, value) in values {
                let mut labels = labels.to_vec();
                labels.extend(code.as_deref().map(|code| ("code", code)));
                ConstCounter::new(*value).encode(metric.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in &self.gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(*value).encode(metric.encode_family(&labels)?)?;
        }
        encoder
            .encode_descriptor(
                "fastpay_loadgen_latency_seconds",
                "Seconds from a request's scheduled start to its completion in the last run.",
                None,
                MetricType::Histogram,
            )?
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                self.latency_sum,
                self.latency_count,
                &self.latency_buckets,
                None,
            )
    }
}

/// Renders `report` (for `phase`, run at `rate` for its window, ending at `end_unix_s`).
pub fn render(
    report: &Report,
    phase: &str,
    rate: f64,
    end_unix_s: f64,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RunMetrics::new(report, phase, rate, end_unix_s)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
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

    const HELP_LINES: [&str; 11] = [
        "# HELP fastpay_loadgen_requests_sent_total Requests started in the last run.",
        "# HELP fastpay_loadgen_requests_ok_total Requests completed in the last run.",
        "# HELP fastpay_loadgen_requests_rejected_total Requests refused in the last run, by the authorities' error code.",
        "# HELP fastpay_loadgen_requests_timed_out_total Requests without an answer in time in the last run.",
        "# HELP fastpay_loadgen_requests_shed_total Requests the authorities refused as Overloaded (shed) in the last run.",
        "# HELP fastpay_loadgen_equivocations_total Votes from one authority for two orders of one account and sequence number.",
        "# HELP fastpay_loadgen_target_requests_per_second The rate requests were scheduled at.",
        "# HELP fastpay_loadgen_achieved_requests_per_second Requests completed per second of the last run.",
        "# HELP fastpay_loadgen_run_duration_seconds Seconds over which the last run started requests.",
        "# HELP fastpay_loadgen_run_end_timestamp_seconds When the last run ended, in seconds since the Unix epoch.",
        "# HELP fastpay_loadgen_latency_seconds Seconds from a request's scheduled start to its completion in the last run.",
    ];

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
        let text = render(&report, "orders", 5.0, 1.5e9).unwrap();
        for line in [
            "# TYPE fastpay_loadgen_requests_sent_total counter",
            "fastpay_loadgen_requests_sent_total{phase=\"orders\"} 10",
            "fastpay_loadgen_requests_rejected_total{phase=\"orders\",code=\"Stale\\\"x\"} 3",
            "fastpay_loadgen_achieved_requests_per_second{phase=\"orders\"} 1.0",
            "# TYPE fastpay_loadgen_latency_seconds histogram",
            "fastpay_loadgen_latency_seconds_bucket{phase=\"orders\",le=\"0.0005\"} 0",
            "fastpay_loadgen_latency_seconds_bucket{phase=\"orders\",le=\"0.001\"} 1",
            "fastpay_loadgen_latency_seconds_bucket{phase=\"orders\",le=\"0.005\"} 2",
            "fastpay_loadgen_latency_seconds_bucket{phase=\"orders\",le=\"+Inf\"} 2",
            "fastpay_loadgen_latency_seconds_count{phase=\"orders\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Dashboards and alerts find the metrics by these names and describe them by these
        // texts: they are the ones loadgen has always written.
        let help: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP")).collect();
        assert_eq!(help, HELP_LINES, "in\n{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadgen.prom");
        write(&path, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
