//! What a run measured, and how loadgen reports it: one JSON object for scripts (stdout) and a
//! table for people (stderr). The Prometheus textfile is [`crate::textfile`]'s.

use crate::workload::Phase;
use anyhow::Result;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Largest latency the histograms hold, in microseconds: a minute, far past any timeout.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Significant decimal digits the histograms keep (0.1% resolution).
const LATENCY_DIGITS: u8 = 3;

/// What a run measured.
pub struct Report {
    /// Requests started.
    pub sent: u64,
    /// Requests completed.
    pub ok: u64,
    /// Requests refused (by code).
    pub rejected: BTreeMap<String, u64>,
    /// Requests without an answer in time.
    pub timeouts: u64,
    /// Requests the authorities refused as `Overloaded` (they shed them: see `server run
    /// --shed-after-ms`); not counted in `rejected`.
    pub shed: u64,
    /// Latency from scheduled start to completion, microseconds.
    pub latency: Histogram<u64>,
    /// How long after its scheduled time each request was sent, microseconds: loadgen's own
    /// delay (its pacing tick, or a busy core), part of every `latency`.
    pub start_delay: Histogram<u64>,
    /// From sending a request to the arrival of its completing reply in loadgen's socket (the
    /// kernel's timestamp), microseconds: the latency without loadgen's own delays, what the
    /// authorities and the network took.
    pub wire_latency: Histogram<u64>,
    /// How long completing replies waited in loadgen's socket before loadgen read them,
    /// microseconds: loadgen's own delay, part of every `latency`.
    pub reply_waited: Histogram<u64>,
    /// For payments: scheduled start to certificate, microseconds.
    pub certify_latency: Histogram<u64>,
    /// Seconds over which requests were started.
    pub window_s: f64,
    /// Seconds from the first request started to the last one completed (at least
    /// `window_s`): over it, `ok` is the goodput, with no credit for a backlog the authorities
    /// drained after the sending stopped.
    pub active_s: f64,
    /// Requests started more than a millisecond after their scheduled time (the sender could
    /// not keep up, or the in-flight cap held them back).
    pub late: u64,
    /// Votes from one authority for two different orders of one account and sequence number.
    pub equivocations: u64,
    /// Replies that matched no outstanding request (late or duplicated).
    pub stray_replies: u64,
}

impl Report {
    /// An empty report, before the run.
    pub fn new() -> Result<Self> {
        let histogram = || Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, LATENCY_DIGITS);
        Ok(Self {
            sent: 0,
            ok: 0,
            rejected: BTreeMap::new(),
            timeouts: 0,
            shed: 0,
            latency: histogram()?,
            start_delay: histogram()?,
            wire_latency: histogram()?,
            reply_waited: histogram()?,
            certify_latency: histogram()?,
            window_s: 0.0,
            active_s: 0.0,
            late: 0,
            equivocations: 0,
            stray_replies: 0,
        })
    }

    /// Requests refused, over all codes.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Requests started per second of sending.
    pub fn offered_rate(&self) -> f64 {
        self.sent as f64 / self.window_s
    }

    /// Requests completed within the timeout, per second of sending.
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.window_s
    }

    /// The results as the one JSON object scripts read: `target_rate` is `--rate`, `targets`
    /// the authorities requests went to, `cpu_s` the CPU time loadgen used.
    pub fn to_json(
        &self,
        phase: Phase,
        target_rate: f64,
        targets: usize,
        cpu_s: f64,
    ) -> serde_json::Value {
        let latency = &self.latency;
        serde_json::json!({
            "phase": phase.name(),
            "offered_rate": self.offered_rate(),
            "achieved_rate": self.achieved_rate(),
            // The same per second from the first request to the last completion: a backlog the
            // authorities drain after the sending stopped earns nothing here.
            "goodput": self.ok as f64 / self.active_s,
            "target_rate": target_rate,
            "duration_s": self.window_s,
            "sent": self.sent,
            "ok": self.ok,
            "rejected": self.rejected_total(),
            "rejected_by_code": self.rejected,
            "shed": self.shed,
            "timeouts": self.timeouts,
            "loss": self.timeouts as f64 / (self.sent.max(1)) as f64,
            "late_starts": self.late,
            "equivocations": self.equivocations,
            "stray_replies": self.stray_replies,
            "targets": targets,
            "loadgen_cpu_s": cpu_s,
            "latency_us": {
                "p50": quantile(latency, 0.5), "p90": quantile(latency, 0.9),
                "p99": quantile(latency, 0.99), "p999": quantile(latency, 0.999),
                "max": latency.max(),
            },
            // The latency without loadgen's own delays (sending after the schedule, and the
            // completing replies sitting in its socket), and those delays.
            "wire_latency_us": {
                "p50": quantile(&self.wire_latency, 0.5),
                "p99": quantile(&self.wire_latency, 0.99),
                "p999": quantile(&self.wire_latency, 0.999),
                "max": self.wire_latency.max(),
            },
            "start_delay_us": {
                "p50": quantile(&self.start_delay, 0.5),
                "p99": quantile(&self.start_delay, 0.99),
                "max": self.start_delay.max(),
            },
            "reply_waited_us": {
                "p50": quantile(&self.reply_waited, 0.5),
                "p99": quantile(&self.reply_waited, 0.99),
                "max": self.reply_waited.max(),
            },
            "certify_latency_us": if phase == Phase::Payments {
                serde_json::json!({
                    "p50": quantile(&self.certify_latency, 0.5),
                    "p99": quantile(&self.certify_latency, 0.99),
                })
            } else {
                serde_json::Value::Null
            },
        })
    }

    /// The results as a table for people (`cpu_s`: the CPU time loadgen used), starting with
    /// an empty line.
    pub fn table(&self, phase: Phase, cpu_s: f64) -> String {
        let latency = &self.latency;
        let mut out = String::from("\n");
        let mut row = |label: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{label:<16}{value:>12}");
        };
        row("phase", &phase.name());
        row("offered /s", &format!("{:.0}", self.offered_rate()));
        row("achieved /s", &format!("{:.0}", self.achieved_rate()));
        row("sent", &self.sent);
        row("ok", &self.ok);
        row("rejected", &self.rejected_total());
        row("shed", &self.shed);
        row("timeouts", &self.timeouts);
        row("late starts", &self.late);
        let _ = writeln!(
            out,
            "{:<16}{:>12}/{}/{}/{}/{} us",
            "p50/90/99/999/max",
            quantile(latency, 0.5),
            quantile(latency, 0.9),
            quantile(latency, 0.99),
            quantile(latency, 0.999),
            latency.max(),
        );
        // The latency's parts: what the authorities and the network took, and loadgen's own.
        for (label, histogram, what) in [
            (
                "on the wire",
                &self.wire_latency,
                "request sent to reply arrived",
            ),
            (
                "start delay",
                &self.start_delay,
                "loadgen's own: sent after schedule",
            ),
            (
                "reply unread",
                &self.reply_waited,
                "loadgen's own: unread in its socket",
            ),
        ] {
            let _ = writeln!(
                out,
                "{label:<16}{:>12}/{}/{} us (p50/99/max, {what})",
                quantile(histogram, 0.5),
                quantile(histogram, 0.99),
                histogram.max(),
            );
        }
        for (code, n) in &self.rejected {
            let _ = writeln!(out, "  rejected {code}: {n}");
        }
        let _ = writeln!(
            out,
            "{:<16}{:>12.2} s ({:.0}% of one core over the run)",
            "loadgen CPU",
            cpu_s,
            100.0 * cpu_s / self.window_s.max(1e-9)
        );
        out
    }
}

/// The value at quantile `q` of `histogram`, 0 when it is empty.
pub fn quantile(histogram: &Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::new().unwrap();
        report.sent = 10;
        report.ok = 8;
        report.rejected.insert("Stale".into(), 2);
        report.window_s = 2.0;
        report.active_s = 4.0;
        report.latency.record(1_000).unwrap();
        report.latency.record(3_000).unwrap();
        report.wire_latency.record(800).unwrap();
        report.wire_latency.record(2_900).unwrap();
        report.start_delay.record(50).unwrap();
        report.reply_waited.record(100).unwrap();
        report.reply_waited.record(200).unwrap();
        report
    }

    #[test]
    fn the_json_holds_rates_counts_and_percentiles() {
        let json = sample().to_json(Phase::Orders, 5.0, 4, 0.5);
        assert_eq!(json["phase"], "orders");
        assert_eq!(json["offered_rate"], 5.0);
        assert_eq!(json["achieved_rate"], 4.0);
        assert_eq!(json["goodput"], 2.0);
        assert_eq!(json["rejected"], 2);
        assert_eq!(json["rejected_by_code"]["Stale"], 2);
        assert_eq!(json["targets"], 4);
        assert_eq!(json["latency_us"]["max"], 3_001);
        assert_eq!(json["wire_latency_us"]["p50"], 800);
        assert_eq!(json["wire_latency_us"]["max"], 2_901);
        assert_eq!(json["start_delay_us"]["max"], 50);
        assert_eq!(json["reply_waited_us"]["max"], 200);
        assert!(json["certify_latency_us"].is_null());
        let payments = sample().to_json(Phase::Payments, 5.0, 4, 0.5);
        assert_eq!(payments["certify_latency_us"]["p99"], 0);
    }

    #[test]
    fn the_table_aligns_labels_and_values() {
        let table = sample().table(Phase::Orders, 0.5);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(lines[1], "phase                 orders");
        assert_eq!(lines[2], "offered /s                 5");
        assert!(lines.contains(&"  rejected Stale: 2"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("reply unread") && l.contains(" 100/200/200 us")),
            "{table}"
        );
        assert!(lines.contains(&"loadgen CPU             0.50 s (25% of one core over the run)"));
    }
}
