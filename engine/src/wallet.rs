//! The wallet file (`accounts.json`): each account's secret key and client state. Written
//! atomically with mode 0600, so a crash leaves the old wallet or the new one, never a torn one.

use crate::config::{ConfigError, check_private, write_private};
use fastpay_client::{ClientSnapshot, ClientState};
use fastpay_wire::{AccountId, Committee, KeyPair};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One account in the wallet.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletAccount {
    /// The secret key seed, hex.
    secret: String,
    /// Everything the client knows about the account.
    state: ClientSnapshot,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WalletFile {
    accounts: Vec<WalletAccount>,
}

/// The accounts of one wallet file, as live client states.
pub struct Wallet {
    path: PathBuf,
    clients: Vec<ClientState>,
}

fn malformed(path: &Path, reason: impl ToString) -> ConfigError {
    ConfigError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Wallet {
    /// Opens `path`, or starts an empty wallet if it does not exist.
    pub fn open(path: &Path, committee: Arc<Committee>) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Ok(Self {
                path: path.to_path_buf(),
                clients: Vec::new(),
            });
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let file: WalletFile = serde_json::from_str(&text).map_err(|e| malformed(path, e))?;
        let mut clients = Vec::with_capacity(file.accounts.len());
        for (i, account) in file.accounts.into_iter().enumerate() {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(account.secret.trim(), &mut seed)
                .map_err(|_| malformed(path, format!("account {}: bad secret", i + 1)))?;
            let client =
                ClientState::restore(KeyPair::from_seed(seed), committee.clone(), account.state)
                    .map_err(|_| {
                        malformed(
                            path,
                            format!("account {}: the secret does not own it", i + 1),
                        )
                    })?;
            clients.push(client);
        }
        Ok(Self {
            path: path.to_path_buf(),
            clients,
        })
    }

    /// Writes the wallet atomically.
    pub fn save(&self) -> Result<(), ConfigError> {
        let file = WalletFile {
            accounts: self
                .clients
                .iter()
                .map(|c| WalletAccount {
                    secret: hex::encode(c.key_seed()),
                    state: c.snapshot(),
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| malformed(&self.path, e))?;
        write_private(&self.path, json.as_bytes())
    }

    /// Adds an account.
    pub fn add(&mut self, client: ClientState) {
        self.clients.push(client);
    }

    /// Every account.
    pub fn clients(&self) -> &[ClientState] {
        &self.clients
    }

    /// Every account, mutably.
    pub fn clients_mut(&mut self) -> &mut [ClientState] {
        &mut self.clients
    }

    /// The index of `account`.
    pub fn position(&self, account: &AccountId) -> Option<usize> {
        self.clients.iter().position(|c| c.account() == *account)
    }
}
