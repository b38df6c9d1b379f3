//! An authority seen from the outside as an operator sees it: its Prometheus endpoint
//! scraped over HTTP while it serves payments, and its logs at the most verbose level, which
//! must never show its secret key.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{Authority, committee, fund_accounts, pay_one, wait_serving};

/// A TCP port nobody holds right now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1; returns the status line, headers and body.
fn http_get(address: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_string(), headers.to_string(), body.to_string())
}

/// Checks `text` is well-formed Prometheus text exposition format (every sample's family
/// declared by `# HELP` and `# TYPE` first, names and labels well-formed, values numbers,
/// histogram buckets cumulative and ending with `+Inf` equal to `_count`); returns the
/// samples by their full series name.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad name in {line:?}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{line:?}"
            );
            assert!(
                helped.last().is_some_and(|h| h == name),
                "TYPE without HELP: {line:?}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line:?}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad name in {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (key, value) = pair.split_once('=').unwrap();
                assert!(valid_name(key), "bad label in {line:?}");
                assert!(value.starts_with('"') && value.ends_with('"'), "{line:?}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE: {line:?}"
        );
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{line:?}"
        );
    }
    // Histograms: cumulative buckets ending at +Inf == _count.
    for (name, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for (series, value) in &samples {
            let Some(labels) = series.strip_prefix(&format!("{name}_bucket{{")) else {
                continue;
            };
            let (rest, le) = labels.rsplit_once(",le=\"").unwrap();
            let le = le.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            by_series
                .entry(rest.to_string())
                .or_default()
                .push((le, *value));
        }
        assert!(!by_series.is_empty(), "histogram {name} has no buckets");
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}: not cumulative"
            );
            let (last_le, last) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{name} lacks +Inf");
            assert_eq!(
                samples.get(&format!("{name}_count{{{labels}}}")),
                Some(&last),
                "{name}: +Inf bucket is not _count"
            );
        }
    }
    samples
}

/// The sum of a metric's samples over all its series.
fn total(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes until `done` holds for the samples (shards publish about once a second).
fn scrape_until(
    address: SocketAddr,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, headers, body) = http_get(address, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let samples = parse_exposition(&body);
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "metrics never moved:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn secret_of(dir: &Path) -> String {
    let file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("server1.json")).unwrap()).unwrap();
    file["secret"].as_str().unwrap().to_string()
}

#[test]
fn metrics_endpoint_counts_payments_in_prometheus_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    committee(dir, 1);
    let accounts = fund_accounts(dir, 4);
    let address: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut authority = Authority::new(dir, 1, None);
    authority.extra = vec!["--metrics-address".into(), address.to_string()];
    authority.start();
    wait_serving(dir, &accounts[0]);

    let before = scrape_until(address, |s| total(s, "fastpay_shard_accounts") == 4.0);
    assert_eq!(total(&before, "fastpay_shard_voted_total"), 0.0);
    let name = fastpay_wire::CommitteeFile::load(&dir.join("committee.json"))
        .unwrap()
        .authorities[0]
        .name
        .to_string();
    for shard in 0..2 {
        assert!(
            before.contains_key(&format!(
                "fastpay_shard_received_total{{authority=\"{name}\",shard=\"{shard}\"}}"
            )),
            "no series for shard {shard}: {before:?}"
        );
    }

    for _ in 0..3 {
        pay_one(dir, &accounts[0], &accounts[1], "payment");
    }
    let after = scrape_until(address, |s| {
        total(s, "fastpay_shard_reply_delay_seconds_count") > 0.0
            && total(s, "fastpay_shard_fsync_duration_seconds_count") > 0.0
            && total(s, "fastpay_shard_log_wait_seconds_count") > 0.0
    });
    assert_eq!(total(&after, "fastpay_shard_voted_total"), 3.0);
    assert!(total(&after, "fastpay_shard_confirmed_total") >= 3.0);
    assert!(total(&after, "fastpay_shard_received_total") >= 6.0);
    assert!(total(&after, "fastpay_shard_fsyncs_total") >= 3.0);
    assert!(total(&after, "fastpay_shard_disk_bytes") > 0.0);
    assert!(total(&after, "fastpay_shard_batch_datagrams_count") > 0.0);
    assert!(total(&after, "fastpay_shard_reply_delay_seconds_sum") > 0.0);
    // Every round that logged anything waited for the writer, so at least one per payment.
    assert!(total(&after, "fastpay_shard_log_wait_seconds_count") >= 3.0);

    let (status, _, _) = http_get(address, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    authority.terminate();
}

/// A client trickling its request one byte at a time (each byte well within any per-read
/// timeout) and others that connect and say nothing must not keep Prometheus from scraping.
#[test]
fn slow_clients_cannot_hold_the_metrics_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    committee(dir, 1);
    let accounts = fund_accounts(dir, 1);
    let address: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut authority = Authority::new(dir, 1, None);
    authority.extra = vec!["--metrics-address".into(), address.to_string()];
    authority.start();
    wait_serving(dir, &accounts[0]);
    scrape_until(address, |s| total(s, "fastpay_shard_accounts") == 1.0);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || stream.write_all(&[*byte]).is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();
    // The scrapes come after the slow clients connected: each must still be answered (within
    // http_get's 10-second read timeout, though the slow ones stay connected throughout).
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let (status, _, body) = http_get(address, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("fastpay_shard_accounts"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickler.join().unwrap();
    drop(silent);
    authority.terminate();
}

#[test]
fn logs_never_show_the_secret_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    committee(dir, 1);
    let accounts = fund_accounts(dir, 2);
    let secret = secret_of(dir);
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&secret, &mut seed).unwrap();
    // The encodings the secret could leak in: the file's hex (either case), and the byte
    // array as `Debug` prints it.
    let forms = [
        secret.to_lowercase(),
        secret.to_uppercase(),
        format!("{seed:?}"),
        format!("{:?}", &seed[..8])
            .trim_end_matches(']')
            .to_string(),
    ];

    for format in ["text", "json"] {
        let log = dir.join(format!("server-{format}.log"));
        let mut authority = Authority::new(dir, 1, None);
        authority.log = Some(log.clone());
        authority.env = vec![("RUST_LOG".into(), "trace".into())];
        authority.extra = vec!["--log-format".into(), format.into()];
        authority.start();
        wait_serving(dir, &accounts[0]);
        pay_one(dir, &accounts[0], &accounts[1], "payment");
        authority.terminate();
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("listening"), "{text}");
        assert!(text.contains("final counters"), "{text}");
        assert!(
            text.contains("TRACE") || text.contains("\"level\":\"TRACE\""),
            "trace level was not on: {text}"
        );
        for form in &forms {
            assert!(!text.contains(form.as_str()), "the secret is in the log");
        }
        if format == "json" {
            for line in text.lines() {
                let event: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(
                    event["level"].is_string() && event["fields"].is_object(),
                    "{line}"
                );
            }
        }
    }

    // A failure to start is an event like any other for a JSON collector.
    let output = std::process::Command::new(common::SERVER)
        .current_dir(dir)
        .args(["--server", "server1.json", "--log-format", "json", "run"])
        .args(["--initial-accounts", "initial_accounts.txt"])
        .args(["--committee", "missing.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let event: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(event["level"], "ERROR", "{stderr}");
    assert!(
        event["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("missing.json"),
        "{stderr}"
    );

    // `check`, which reads the key file, at trace level too.
    let output = std::process::Command::new(common::SERVER)
        .current_dir(dir)
        .env("RUST_LOG", "trace")
        .args(["--server", "server1.json", "check"])
        .args(["--initial-accounts", "initial_accounts.txt"])
        .args(["--committee", "committee.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "the secret is in check's output"
            );
        }
    }
}
