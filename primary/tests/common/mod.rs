//! A real anvil for the tests: the binary from the pinned npm package, on a free port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use fastpay_primary::{EthCommittee, PrimaryChain, RedeemSigner};
use fastpay_wire::base_types::CommitteeId;

/// Overrides where the anvil binary is.
pub const ANVIL_ENV: &str = "FASTPAY_ANVIL";

/// How long anvil may take to listen (it takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Ether each dev account starts with: more than 2^64 gwei (about 18.4 billion ether), so a
/// deposit too large for FastPay's u64 units can be paid for and refused by the contract.
const DEV_BALANCE_ETHER: &str = "100000000000";

/// Anvil's first two dev keys (from its well-known test mnemonic).
const DEV_KEYS: [&str; 2] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
];

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC endpoint.
    pub url: String,
}

fn anvil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ANVIL_ENV) {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        path.exists(),
        "anvil is missing at {}: run `npm ci --prefix primary` (or set {ANVIL_ENV})",
        path.display()
    );
    path
}

impl Anvil {
    /// Starts anvil on a free port and waits until it listens.
    pub fn start() -> Anvil {
        let mut child = Command::new(anvil_binary())
            .args([
                "--port",
                "0",
                "--accounts",
                "2",
                "--balance",
                DEV_BALANCE_ETHER,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let stdout = child.stdout.take().expect("anvil stdout");
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
        let deadline = Instant::now() + START_TIMEOUT;
        let address = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("anvil did not say where it listens");
        Anvil {
            child,
            url: format!("http://{address}"),
        }
    }

    /// Dev key `i` (0 or 1), funded.
    pub fn key(&self, i: usize) -> PrivateKeySigner {
        DEV_KEYS[i].parse().expect("dev key")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A committee of `n` equal-weight authorities with the BFT quorum 2f + 1 (n = 3f + 1 or more).
pub struct TestCommittee {
    /// The authorities' redeem keys.
    pub keys: Vec<RedeemSigner>,
    /// The committee as the contract holds it.
    pub committee: EthCommittee,
}

impl TestCommittee {
    /// `n` fresh keys, quorum `n - (n - 1) / 3`, committee id `id`.
    pub fn new(n: usize, id: u8) -> Self {
        let keys: Vec<RedeemSigner> = (0..n).map(|_| RedeemSigner::random()).collect();
        let quorum = (n - (n - 1) / 3) as u64;
        let committee = EthCommittee::new(
            keys.iter().map(|k| (k.address(), 1)),
            quorum,
            CommitteeId([id; 32]),
        )
        .expect("committee");
        Self { keys, committee }
    }
}

/// Deploys a contract for `committee` on `anvil`, paid by dev key 0.
pub async fn deploy(anvil: &Anvil, committee: &EthCommittee) -> PrimaryChain {
    PrimaryChain::deploy(&anvil.url, anvil.key(0), committee)
        .await
        .expect("deploy")
}

/// A fresh address that holds nothing.
pub fn fresh_address(tag: u8) -> Address {
    Address::from_word(B256::repeat_byte(tag))
}
