//! A local development chain: anvil, from the pinned npm package `@foundry-rs/anvil-linux-amd64`
//! (`npm ci --prefix primary` installs it), on a free port, for tests, demos and benchmarks.
//! Production nodes are reached by URL ([`crate::PrimaryChain::connect`]); nothing here is
//! used by them.

use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use thiserror::Error;

/// Overrides where the anvil binary is.
pub const ANVIL_ENV: &str = "FASTPAY_ANVIL";

/// How long anvil may take to listen (it takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ether each dev account starts with: more than 2^64 gwei (about 18.4 billion ether), so a
/// deposit too large for FastPay's u64 units can be paid for and refused by the contract.
const DEV_BALANCE_ETHER: &str = "100000000000";

/// Anvil's first two dev keys (from its well-known test mnemonic).
pub const DEV_KEYS: [&str; 2] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
];

/// Why anvil could not be started or driven.
#[derive(Debug, Error)]
pub enum DevnetError {
    /// The binary is not where it is looked for.
    #[error("anvil is missing at {0}: run `npm ci --prefix primary` (or set {ANVIL_ENV})")]
    Missing(PathBuf),
    /// It could not be started.
    #[error("could not start anvil: {0}")]
    Spawn(#[from] std::io::Error),
    /// It did not say where it listens in time.
    #[error("anvil did not say where it listens within {0:?}")]
    NoAddress(Duration),
    /// One of its development calls failed.
    #[error("anvil call {0} failed: {1}")]
    Call(&'static str, String),
}

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC endpoint.
    pub url: String,
}

/// Where the anvil binary is: `$FASTPAY_ANVIL`, or the npm package in this crate's directory.
pub fn anvil_binary() -> Result<PathBuf, DevnetError> {
    let path = match std::env::var_os(ANVIL_ENV) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    };
    match path.exists() {
        true => Ok(path),
        false => Err(DevnetError::Missing(path)),
    }
}

impl Anvil {
    /// Starts anvil on a free port, mining a block per transaction (and on [`Anvil::mine`]),
    /// and waits until it listens.
    pub fn start() -> Result<Anvil, DevnetError> {
        Self::start_with(&[])
    }

    /// [`Anvil::start`] with extra arguments (`--block-time 1`, say).
    pub fn start_with(extra: &[&str]) -> Result<Anvil, DevnetError> {
        let mut child = Command::new(anvil_binary()?)
            .args([
                "--port",
                "0",
                "--accounts",
                "2",
                "--balance",
                DEV_BALANCE_ETHER,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(DevnetError::NoAddress(Duration::ZERO));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address it listens on, then drains its log so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("Listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => Ok(Anvil {
                child,
                url: format!("http://{address}"),
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(DevnetError::NoAddress(START_TIMEOUT))
            }
        }
    }

    /// Dev key `i` (0 or 1), funded.
    pub fn key(&self, i: usize) -> PrivateKeySigner {
        #[allow(clippy::expect_used)]
        DEV_KEYS[i % DEV_KEYS.len()]
            .parse()
            .expect("a dev key parses")
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) -> Result<(), DevnetError> {
        self.call::<()>("anvil_mine", vec![blocks.into()]).await
    }

    /// Takes a snapshot of the chain to [`Anvil::revert`] to later.
    pub async fn snapshot(&self) -> Result<String, DevnetError> {
        self.call("evm_snapshot", vec![]).await
    }

    /// Reverts the chain to `snapshot`: every block since is gone (a reorganisation as a
    /// follower sees it: those blocks' logs vanish and the heights are built again).
    pub async fn revert(&self, snapshot: &str) -> Result<bool, DevnetError> {
        self.call("evm_revert", vec![snapshot.into()]).await
    }

    async fn call<R>(
        &self,
        method: &'static str,
        params: Vec<serde_json::Value>,
    ) -> Result<R, DevnetError>
    where
        R: serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + Unpin + 'static,
    {
        let url = self
            .url
            .parse::<alloy::transports::http::reqwest::Url>()
            .map_err(|e| DevnetError::Call(method, e.to_string()))?;
        let provider = alloy::providers::ProviderBuilder::new().connect_http(url);
        provider
            .raw_request::<_, R>(method.into(), params)
            .await
            .map_err(|e| DevnetError::Call(method, e.to_string()))
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
