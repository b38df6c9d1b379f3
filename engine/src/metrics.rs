//! An authority's metrics for Prometheus: what each shard publishes, and how it is encoded.
//!
//! Nothing here runs on a shard's hot path but [`Histogram::observe`], a few comparisons and
//! additions on the shard's own, unshared memory. Counters and gauges are one thing, the
//! relaxed atomics of [`ShardCounters`] (a gauge is a [`Counter`] of kind
//! [`CounterKind::Gauge`], set with [`ShardCounters::set`] by whichever thread knows the
//! level). The histograms live in the shard loop and its log writer and are copied into the
//! shard's [`ShardMetrics`] slots about once a second ([`PUBLISH_EVERY`]) with `try_lock`, so
//! a scrape in progress never makes a shard wait: it only delays that copy to the next
//! second. The scraping thread ([`crate::metrics_http`]) encodes from the slots and the
//! atomics, with `prometheus-client`'s text encoder.

use crate::counters::{Counter, CounterKind, ShardCounters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a shard copies its histograms into its slot and sets its gauges: Prometheus
/// scrapes every 10 to 60 s as a rule, so a second is fresh enough, and a copy of a few
/// hundred bytes a second costs a shard nothing measurable.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Bucket bounds of the batch size histogram (datagrams read from the socket per round):
/// powers of two up to a full batch ([`fastpay_wire::BATCH`]).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Bucket bounds, in seconds, of every duration histogram (a reply's delay, a log group's
/// sync, its records' wait for the writer): from ten microseconds (in memory, a small batch;
/// an idle writer) to a second (a disk in trouble), close together below two milliseconds,
/// where they usually fall, so that a p99 read from the buckets is within tens of
/// microseconds there.
pub const SECONDS_BUCKETS: &[f64] = &[
    10e-6, 25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 400e-6, 500e-6, 750e-6, 1e-3,
    1.5e-3, 2e-3, 3e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0,
];

/// A histogram with fixed bucket bounds; observing neither allocates nor synchronises.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these (increasing) upper bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records `n` observations of `value`.
    pub fn observe(&mut self, value: f64, n: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(slot) = self.counts.get_mut(bucket) {
            *slot = slot.saturating_add(n);
        }
        self.count = self.count.saturating_add(n);
        // Precision is not a concern for a sum that only feeds rates.
        self.sum += value * n as f64;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Each bucket's upper bound with the observations in it (above the previous bound; not
    /// cumulative: the encoder accumulates them), ending with `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// The histograms a shard loop publishes (its counters and gauges are [`ShardCounters`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardStats {
    /// Datagrams read from the socket per round that read any.
    pub batch_datagrams: Histogram,
    /// Seconds from the round that read a request to the sending of its reply.
    pub reply_seconds: Histogram,
}

impl Default for ShardStats {
    fn default() -> Self {
        Self {
            batch_datagrams: Histogram::new(BATCH_BUCKETS),
            reply_seconds: Histogram::new(SECONDS_BUCKETS),
        }
    }
}

/// The histograms a shard's log writer publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterStats {
    /// Seconds to write and `fdatasync` one group of records.
    pub fsync_seconds: Histogram,
    /// Seconds from the shard handing a round's records over to the writer taking them into
    /// a group: the sync in flight, then the writer's own wake-up.
    pub wait_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            fsync_seconds: Histogram::new(SECONDS_BUCKETS),
            wait_seconds: Histogram::new(SECONDS_BUCKETS),
        }
    }
}

/// A shard's published metrics: the slots its loop and its log writer copy into.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    stats: Mutex<ShardStats>,
    writer: Mutex<WriterStats>,
}

impl ShardMetrics {
    /// Copies `stats` in unless a scrape holds the slot (then the next publication will).
    /// Never blocks; the copy reuses the slot's buffers.
    pub fn publish(&self, stats: &ShardStats) -> bool {
        match self.stats.try_lock() {
            Ok(mut slot) => {
                slot.clone_from(stats);
                true
            }
            Err(_) => false,
        }
    }

    /// Copies the log writer's histograms in unless a scrape holds the slot.
    pub fn publish_writer(&self, stats: &WriterStats) -> bool {
        match self.writer.try_lock() {
            Ok(mut slot) => {
                slot.clone_from(stats);
                true
            }
            Err(_) => false,
        }
    }

    /// The last published stats.
    pub fn stats(&self) -> ShardStats {
        self.stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The log writer's last published histograms.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One shard as the exporter sees it.
#[derive(Debug, Clone)]
pub struct ShardSource {
    /// The shard's number.
    pub shard: u32,
    /// Its counters.
    pub counters: Arc<ShardCounters>,
    /// Its published stats.
    pub metrics: Arc<ShardMetrics>,
}

/// The `prometheus-client` collector of an authority's shards (those of this process only:
/// shards in other processes export their own).
#[derive(Debug)]
pub struct Exporter {
    authority: String,
    shards: Vec<ShardSource>,
}

/// The labels of one shard's series.
type Labels = [(&'static str, String); 2];

/// A metric whose value comes from each shard.
struct Family {
    name: String,
    help: String,
    kind: MetricType,
}

impl Exporter {
    /// An exporter labelling every series with `authority` and the shard's number.
    pub fn new(authority: String, shards: Vec<ShardSource>) -> Self {
        Self { authority, shards }
    }

    /// A registry holding this exporter, ready to encode.
    pub fn registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }

    fn labels(&self, shard: u32) -> Labels {
        [
            ("authority", self.authority.clone()),
            ("shard", shard.to_string()),
        ]
    }

    /// The name of the metric for `counter` (without `_total`, which the encoder adds to
    /// counters) and its type.
    pub fn counter_family(counter: Counter) -> (String, MetricType) {
        match (counter, counter.kind()) {
            (Counter::CpuMillis, _) => ("fastpay_shard_cpu_seconds".into(), MetricType::Counter),
            (Counter::Outbox, _) => ("fastpay_shard_outbox_credits".into(), MetricType::Gauge),
            (_, CounterKind::Gauge) => (
                format!("fastpay_shard_{}", counter.label()),
                MetricType::Gauge,
            ),
            (_, CounterKind::Total) => (
                format!("fastpay_shard_{}", counter.label()),
                MetricType::Counter,
            ),
        }
    }

    fn encode_family<T: EncodeMetric>(
        &self,
        encoder: &mut DescriptorEncoder,
        family: &Family,
        value: impl Fn(&ShardSource) -> T,
    ) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(&family.name, &family.help, None, family.kind)?;
        for shard in &self.shards {
            let labels = self.labels(shard.shard);
            value(shard).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// Encodes `family`, a series per shard, from what the shards `published`.
    fn encode_histogram(
        &self,
        encoder: &mut DescriptorEncoder,
        family: &HistogramFamily,
        published: &[Published],
    ) -> Result<(), std::fmt::Error> {
        let (name, help, histogram_of) = family;
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for shard in published {
            let histogram = histogram_of(shard);
            metric
                .encode_family(&self.labels(shard.0))?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum(),
                    histogram.count(),
                    &histogram.buckets(),
                    None,
                )?;
        }
        Ok(())
    }
}

/// One shard's histograms as a scrape reads them: its number, its loop's, its log writer's.
type Published = (u32, ShardStats, WriterStats);

/// A histogram family: its name, its help, and where each shard's histogram is.
type HistogramFamily = (&'static str, &'static str, fn(&Published) -> &Histogram);

/// Every histogram family the exporter encodes.
const HISTOGRAMS: [HistogramFamily; 4] = [
    (
        "fastpay_shard_batch_datagrams",
        "Datagrams read from the socket per round that read any.",
        |(_, stats, _)| &stats.batch_datagrams,
    ),
    (
        "fastpay_shard_reply_delay_seconds",
        "Seconds from the round that read a request to the sending of its reply (the \
         wait for the log to be durable included).",
        |(_, stats, _)| &stats.reply_seconds,
    ),
    (
        "fastpay_shard_fsync_duration_seconds",
        "Seconds to write and fdatasync one group of log records.",
        |(_, _, writer)| &writer.fsync_seconds,
    ),
    (
        "fastpay_shard_log_wait_seconds",
        "Seconds a round's log records waited for the log writer to take them up (the sync \
         in flight, then the writer's wake-up); a durable reply's extra time is this plus \
         one fsync.",
        |(_, _, writer)| &writer.wait_seconds,
    ),
];

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for counter in Counter::ALL {
            let (name, kind) = Self::counter_family(*counter);
            let help = match counter {
                Counter::CpuMillis => {
                    "CPU time the shard's thread used (updated about once a second)."
                }
                _ => counter.help().trim(),
            };
            let family = Family {
                name,
                help: help.to_string(),
                kind,
            };
            match (*counter, kind) {
                (Counter::CpuMillis, _) => self.encode_family(&mut encoder, &family, |s| {
                    ConstCounter::new(s.counters.get(Counter::CpuMillis) as f64 / 1e3)
                })?,
                (_, MetricType::Counter) => self.encode_family(&mut encoder, &family, |s| {
                    ConstCounter::new(s.counters.get(*counter))
                })?,
                _ => self.encode_family(&mut encoder, &family, |s| {
                    ConstGauge::new(i64::try_from(s.counters.get(*counter)).unwrap_or(i64::MAX))
                })?,
            }
        }
        let published: Vec<Published> = self
            .shards
            .iter()
            .map(|s| (s.shard, s.metrics.stats(), s.metrics.writer_stats()))
            .collect();
        for family in &HISTOGRAMS {
            self.encode_histogram(&mut encoder, family, &published)?;
        }
        Ok(())
    }
}

/// Encodes `registry` in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_end_with_infinity() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5, 1);
        h.observe(2.0, 2);
        h.observe(9.0, 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum(), 0.5 + 4.0 + 9.0);
        assert_eq!(h.buckets(), vec![(1.0, 1), (2.0, 2), (f64::INFINITY, 1)]);
    }

    /// What the shard loop pays: one observation per round and per reply batch, one
    /// publication a second. `cargo test --release -p fastpay-engine --lib -- --ignored
    /// stress_metrics_cost --nocapture` prints the cost of each.
    #[test]
    #[ignore]
    fn stress_metrics_cost() {
        let mut stats = ShardStats::default();
        let rounds = 10_000_000u32;
        let started = std::time::Instant::now();
        for i in 0..rounds {
            stats.batch_datagrams.observe(f64::from(i % 64 + 1), 1);
            stats
                .reply_seconds
                .observe(f64::from(i % 1000) * 1e-5, u64::from(i % 64 + 1));
        }
        let per_round = started.elapsed() / rounds;
        let metrics = ShardMetrics::default();
        let publications = 100_000u32;
        let started = std::time::Instant::now();
        for _ in 0..publications {
            assert!(metrics.publish(std::hint::black_box(&stats)));
        }
        let per_publication = started.elapsed() / publications;
        assert_eq!(metrics.stats(), stats);
        eprintln!(
            "two observations: {per_round:?} per round; one publication: {per_publication:?}"
        );
    }

    #[test]
    fn a_held_slot_is_skipped_not_waited_for() {
        let metrics = ShardMetrics::default();
        let mut stats = ShardStats::default();
        stats.batch_datagrams.observe(7.0, 1);
        let guard = metrics.stats.lock().unwrap();
        assert!(!metrics.publish(&stats));
        drop(guard);
        assert!(metrics.publish(&stats));
        assert_eq!(metrics.stats().batch_datagrams.count(), 1);
    }

    #[test]
    fn exports_every_counter_gauge_and_histogram_with_labels() {
        let counters = Arc::new(ShardCounters::default());
        counters.add(Counter::Voted, 5);
        counters.set(Counter::CpuMillis, 1500);
        counters.set(Counter::DiskBytes, 4096);
        counters.set(Counter::Accounts, 3);
        let metrics = Arc::new(ShardMetrics::default());
        let mut stats = ShardStats::default();
        stats.batch_datagrams.observe(10.0, 1);
        stats.reply_seconds.observe(0.002, 10);
        metrics.publish(&stats);
        let mut writer = WriterStats::default();
        writer.fsync_seconds.observe(200e-6, 1);
        writer.wait_seconds.observe(30e-6, 2);
        metrics.publish_writer(&writer);
        let registry = Exporter::new(
            "abc".into(),
            vec![ShardSource {
                shard: 1,
                counters,
                metrics,
            }],
        )
        .registry();
        let text = encode(&registry).unwrap();
        let has = |line: &str| {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            )
        };
        has("# TYPE fastpay_shard_voted_total counter");
        has(r#"fastpay_shard_voted_total{authority="abc",shard="1"} 5"#);
        has(r#"fastpay_shard_cpu_seconds_total{authority="abc",shard="1"} 1.5"#);
        has("# TYPE fastpay_shard_disk_bytes gauge");
        has(r#"fastpay_shard_disk_bytes{authority="abc",shard="1"} 4096"#);
        has(r#"fastpay_shard_accounts{authority="abc",shard="1"} 3"#);
        has("# TYPE fastpay_shard_batch_datagrams histogram");
        has(r#"fastpay_shard_batch_datagrams_bucket{authority="abc",shard="1",le="8"} 0"#);
        has(r#"fastpay_shard_batch_datagrams_bucket{authority="abc",shard="1",le="16"} 1"#);
        has(r#"fastpay_shard_batch_datagrams_bucket{authority="abc",shard="1",le="64"} 1"#);
        has(r#"fastpay_shard_batch_datagrams_bucket{authority="abc",shard="1",le="+Inf"} 1"#);
        has(r#"fastpay_shard_reply_delay_seconds_count{authority="abc",shard="1"} 10"#);
        has(r#"fastpay_shard_fsync_duration_seconds_count{authority="abc",shard="1"} 1"#);
        has("# TYPE fastpay_shard_log_wait_seconds histogram");
        has(r#"fastpay_shard_log_wait_seconds_bucket{authority="abc",shard="1",le="2.5e-05"} 0"#);
        has(r#"fastpay_shard_log_wait_seconds_bucket{authority="abc",shard="1",le="5e-05"} 2"#);
        has(r#"fastpay_shard_log_wait_seconds_count{authority="abc",shard="1"} 2"#);
        for counter in Counter::ALL {
            let (name, _) = Exporter::counter_family(*counter);
            assert!(text.contains(&name), "{name} missing");
        }
    }
}
