//! Helpers shared by the end-to-end tests that run the real binaries.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::process::Output;

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
