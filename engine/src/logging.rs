//! The binaries' diagnostics: `tracing` events on stderr, filtered by `RUST_LOG`.

use std::io::IsTerminal;

/// Installs the process's subscriber: events on stderr (colours only on a terminal), as
/// readable lines or, with `json`, one JSON object per event; levels from `RUST_LOG`, else
/// `default` (an `EnvFilter` directive such as `info`).
pub fn init(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second call (tests starting two engines in one process) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
