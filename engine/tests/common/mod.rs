//! Helpers shared by the end-to-end tests that run the real binaries.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output};

pub const SERVER: &str = env!("CARGO_BIN_EXE_server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// A UDP port nobody holds right now.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nobody holds, with the `room` ports after it free too (for shard links).
pub fn free_port_with_room(room: u16) -> u16 {
    loop {
        let port = free_port();
        if port < 60_000 && (1..=room).all(|k| UdpSocket::bind(("127.0.0.1", port + k)).is_ok()) {
            return port;
        }
    }
}

/// Runs the `client` binary in `dir` with the usual committee and wallet files.
pub fn client(dir: &Path, args: &[&str]) -> Output {
    Command::new(CLIENT)
        .current_dir(dir)
        .args([
            "--committee",
            "committee.json",
            "--accounts",
            "accounts.json",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// Asserts the command succeeded; returns its stdout.
pub fn check(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts the command failed cleanly (exit code 1, no panic) mentioning `needle`.
pub fn fails_with(output: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}
