//! `client serve`: the wallet as a long-running HTTP service for applications, with a page
//! for people.
//!
//! JSON over HTTP/1 ([`http::router`]; the OpenAPI description at `/openapi.json`): the
//! accounts and their history, payments made once per idempotency key and answered once
//! final, and a live stream of payments received (Server-Sent Events at `/api/events`),
//! which a poller learns from the committee by syncing the watched accounts. One process per
//! wallet (the wallet's lock is held while it runs); loopback unless a bearer token is given.

pub mod core;
pub mod http;

use crate::{Network, Wallet};
use core::WalletCore;
use http::AppState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// A file holding the bearer token every API request must carry; required unless
    /// `listen` is a loopback address.
    pub token_file: Option<PathBuf>,
    /// How often the watched accounts are synced with the committee.
    pub poll_interval: Duration,
    /// How long one request may take before it is answered with 504.
    pub deadline: Duration,
}

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Listening beyond loopback needs a token.
    #[error(
        "--listen {0} is not a loopback address: anyone who reaches it could pay from this wallet; \
         give --token-file FILE (a secret of at least 16 characters, mode 0600)"
    )]
    TokenRequired(SocketAddr),
    /// The token file is unusable.
    #[error("--token-file {path}: {reason}")]
    BadToken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The address could not be bound, or the server failed.
    #[error("listening on {address}: {error}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Reads a bearer token: at least 16 characters, in a file only its owner can read.
fn read_token(path: &Path) -> Result<String, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: String| ServeError::BadToken {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.trim();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "the token must be one word of at least 16 characters".to_string()
        ));
    }
    Ok(token.to_string())
}

/// Serves `wallet` over HTTP until interrupted (SIGINT or SIGTERM), each network step
/// giving up after `timeout`.
pub fn serve(
    wallet: Wallet,
    network: Network,
    timeout: Duration,
    options: &ServeOptions,
) -> Result<(), ServeError> {
    let token = match &options.token_file {
        Some(path) => Some(read_token(path)?),
        None if options.listen.ip().is_loopback() => None,
        None => return Err(ServeError::TokenRequired(options.listen)),
    };
    let listen_error = |error| ServeError::Listen {
        address: options.listen,
        error,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(listen_error)?;
    let state = AppState::new(
        WalletCore::new(wallet, network, timeout),
        token.as_deref(),
        options.deadline,
    );
    let poller = state.clone();
    let interval = options.poll_interval;
    std::thread::Builder::new()
        .name("poller".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                for error in poller.poll_once() {
                    eprintln!("serve: syncing a watched account: {error}");
                }
            }
        })
        .map_err(listen_error)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(listen_error)?;
        let address = listener.local_addr().map_err(listen_error)?;
        eprintln!(
            "serve: listening on http://{address}/ (API under /api, description at /openapi.json{})",
            if token.is_some() {
                "; API requests need the bearer token"
            } else {
                ""
            }
        );
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(listen_error)
    })?;
    eprintln!("serve: stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let term = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn tokens_must_be_private_and_long() {
        let dir = tempfile::tempdir().unwrap();
        let good = token_file(dir.path(), "0123456789abcdef0123\n", 0o600);
        assert_eq!(read_token(&good).unwrap(), "0123456789abcdef0123");
        let open = token_file(dir.path(), "0123456789abcdef0123", 0o644);
        assert!(
            read_token(&open)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
        let short = token_file(dir.path(), "short", 0o600);
        assert!(read_token(&short).unwrap_err().to_string().contains("16"));
        let missing = dir.path().join("absent");
        assert!(read_token(&missing).is_err());
    }
}
