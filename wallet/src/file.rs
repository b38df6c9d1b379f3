//! The wallet file (`accounts.json`): each account's secret key (none for a watch-only
//! account) and client state. Written atomically with mode 0600, so a crash leaves the old
//! wallet or the new one, never a torn one; and used by one `client` process at a time (an
//! exclusive lock on `<wallet>.lock`, held while the [`Wallet`] lives), so two processes
//! never sign from, and overwrite, the same state.

use fastpay_client::{ClientSnapshot, ClientState};
use fastpay_wire::{AccountId, Committee, CommitteeId, KeyPair};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why a wallet file could not be used. Each message is whole (no cause is also returned as
/// `source()`), so `{:#}` chains name it once.
#[derive(Debug, Error)]
pub enum WalletError {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not a wallet.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position where known.
        reason: String,
    },
    /// A wallet that others can read: it holds secret keys.
    #[error(
        "{path}: the wallet is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The wallet's accounts were made in another network than the committee file's.
    #[error(
        "{path}: this wallet's accounts and certificates belong to network {wallet}, but the \
         committee file makes network {committee} (a new network of the same keys accepts \
         nothing the old one signed); use another wallet file for the new network"
    )]
    OtherNetwork {
        /// The wallet file.
        path: PathBuf,
        /// The network the wallet was used in.
        wallet: CommitteeId,
        /// The committee file's network.
        committee: CommitteeId,
    },
    /// Another process has the wallet open.
    #[error(
        "{path} is in use by {holder} (another `client`); wait for it to finish, one client process per wallet at a time"
    )]
    WalletInUse {
        /// The wallet file.
        path: PathBuf,
        /// Who holds its lock, as far as the lock file says.
        holder: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |error| WalletError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Refuses a wallet that group or others may read.
fn check_private(path: &Path) -> Result<(), WalletError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WalletError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600, through a temporary file that only this
/// process can have created (`O_EXCL`, a random name, mode 0600 from its creation, in the
/// wallet's directory): a crash leaves the old wallet or the new one, never a torn one, and
/// nothing planted beside the wallet can capture its secrets.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = io_error(path);
    let result = (|| {
        // tempfile creates with O_CREAT | O_EXCL and mode 0600.
        let mut file = tempfile::Builder::new()
            .prefix(".wallet-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    result.map_err(io)
}

/// One account in the wallet.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletAccount {
    /// The secret key seed, hex; absent for an account watched without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Everything the client knows about the account.
    state: ClientSnapshot,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WalletFile {
    /// The committee id (network) the accounts' history belongs to; absent in wallets
    /// written before it was recorded, which take the committee file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<CommitteeId>,
    accounts: Vec<WalletAccount>,
}

/// Writes a wallet's accounts to its file, atomically: what [`Wallet::save`] does, usable
/// while the accounts are borrowed (say, by a drive that must save a certificate before its
/// confirmations leave).
#[derive(Debug, Clone)]
pub struct WalletSaver {
    path: PathBuf,
    network: CommitteeId,
}

impl WalletSaver {
    /// Writes `clients` as the wallet.
    pub fn save(&self, clients: &[ClientState]) -> Result<(), WalletError> {
        let file = WalletFile {
            network: Some(self.network),
            accounts: clients
                .iter()
                .map(|c| WalletAccount {
                    secret: c.key_seed().map(hex::encode),
                    state: c.snapshot(),
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| malformed(&self.path, e))?;
        write_private(&self.path, json.as_bytes())
    }
}

/// The accounts of one wallet file, as live client states, with the file's lock.
pub struct Wallet {
    saver: WalletSaver,
    clients: Vec<ClientState>,
    _lock: File,
}

fn malformed(path: &Path, reason: impl ToString) -> WalletError {
    WalletError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The lock file of the wallet at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the wallet's lock, writing our pid into it so a second process can name us.
fn lock(path: &Path) -> Result<File, WalletError> {
    let lock = lock_path(path);
    let io = |error| WalletError::Io {
        path: lock.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
                .map_or_else(|| "another process".to_string(), |pid| format!("pid {pid}"));
            return Err(WalletError::WalletInUse {
                path: path.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
        .map_err(io)?;
    Ok(file)
}

impl Wallet {
    /// Locks and opens `path`, or starts an empty wallet if it does not exist. Fails with
    /// [`WalletError::WalletInUse`] while another process has it open.
    pub fn open(path: &Path, committee: Arc<Committee>) -> Result<Self, WalletError> {
        let lock = lock(path)?;
        let saver = WalletSaver {
            path: path.to_path_buf(),
            network: committee.id(),
        };
        if !path.exists() {
            return Ok(Self {
                saver,
                clients: Vec::new(),
                _lock: lock,
            });
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|error| WalletError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let file: WalletFile = serde_json::from_str(&text).map_err(|e| malformed(path, e))?;
        if let Some(wallet) = file.network
            && wallet != committee.id()
        {
            return Err(WalletError::OtherNetwork {
                path: path.to_path_buf(),
                wallet,
                committee: committee.id(),
            });
        }
        let mut clients = Vec::with_capacity(file.accounts.len());
        for (i, account) in file.accounts.into_iter().enumerate() {
            let key = match account.secret {
                Some(secret) => Some(KeyPair::from_seed(
                    parse_secret(&secret)
                        .ok_or_else(|| malformed(path, format!("account {}: bad secret", i + 1)))?,
                )),
                None => None,
            };
            let client =
                ClientState::restore(key, committee.clone(), account.state).map_err(|_| {
                    malformed(
                        path,
                        format!("account {}: the secret does not own it", i + 1),
                    )
                })?;
            clients.push(client);
        }
        Ok(Self {
            saver,
            clients,
            _lock: lock,
        })
    }

    /// Writes the wallet atomically.
    pub fn save(&self) -> Result<(), WalletError> {
        self.saver.save(&self.clients)
    }

    /// What saves this wallet while its accounts are borrowed.
    pub fn saver(&self) -> WalletSaver {
        self.saver.clone()
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

/// A secret key seed from 64 hex digits.
pub fn parse_secret(text: &str) -> Option<[u8; 32]> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).ok()?;
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::Balance;

    fn committee() -> Arc<Committee> {
        Arc::new(Committee::equal_weights([KeyPair::from_seed([9; 32]).authority()], 1).unwrap())
    }

    #[test]
    fn one_process_at_a_time_and_watch_only_accounts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let mut wallet = Wallet::open(&path, committee()).unwrap();
        let second = Wallet::open(&path, committee());
        let Err(WalletError::WalletInUse { holder, .. }) = second else {
            panic!("a second opening of a locked wallet");
        };
        assert_eq!(holder, format!("pid {}", std::process::id()));
        let key = KeyPair::from_seed([1; 32]);
        let owned = key.account();
        wallet.add(ClientState::new(key, committee(), Balance::new(5)));
        let watched = KeyPair::from_seed([2; 32]).account();
        wallet.add(ClientState::watch(watched, committee(), Balance::ZERO));
        wallet.save().unwrap();
        drop(wallet);
        let wallet = Wallet::open(&path, committee()).unwrap();
        assert!(!wallet.clients()[wallet.position(&owned).unwrap()].is_watch_only());
        assert!(wallet.clients()[wallet.position(&watched).unwrap()].is_watch_only());
    }

    #[test]
    fn a_wallet_of_another_network_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let mut wallet = Wallet::open(&path, committee()).unwrap();
        let key = KeyPair::from_seed([1; 32]);
        wallet.add(ClientState::new(key, committee(), Balance::new(5)));
        wallet.save().unwrap();
        drop(wallet);
        // The same keys in a new network instance.
        let name = KeyPair::from_seed([9; 32]).authority();
        let renewed = Arc::new(
            (*committee())
                .clone()
                .in_instances([(name, fastpay_wire::NetworkInstance([1; 32]))]),
        );
        let Err(WalletError::OtherNetwork { wallet, .. }) = Wallet::open(&path, renewed) else {
            panic!("a wallet of the old network opened in the new one");
        };
        assert_eq!(wallet, committee().id());
        Wallet::open(&path, committee()).unwrap();
    }
}
