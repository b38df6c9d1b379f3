//! The files an operator handles: an authority's private server file, the committee file and
//! the genesis file. Every malformed file is a typed error naming the file.

use fastpay_authority::{Genesis, GenesisError};
use fastpay_wire::{AuthorityName, Committee, CommitteeError, CommitteeMember, KeyPair};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a configuration file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position where known.
        reason: String,
    },
    /// A secret key file that others can read.
    #[error(
        "{path}: the key file is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The committee is inconsistent.
    #[error("{path}: {source}")]
    Committee {
        /// The committee file.
        path: PathBuf,
        /// What is wrong.
        source: CommitteeError,
    },
    /// The genesis file is malformed.
    #[error("{path}: {source}")]
    Genesis {
        /// The genesis file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: GenesisError,
    },
    /// An authority's host and port do not resolve to an address.
    #[error("authority {name}: cannot resolve {host}:{port}")]
    Unresolvable {
        /// The authority.
        name: AuthorityName,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn malformed(path: &Path, reason: impl ToString) -> ConfigError {
    ConfigError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// One authority's public description: a line of the committee file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEntry {
    /// The authority's public key.
    pub name: AuthorityName,
    /// Host its shards listen on.
    pub host: String,
    /// The authority's one public UDP port, shared by all its shards. When shards run in
    /// separate processes, shard `j` also listens on `port + 1 + j` for links between shards.
    pub port: u16,
    /// Number of shards.
    pub shards: u32,
    /// Voting weight.
    #[serde(default = "one")]
    pub weight: u64,
}

fn one() -> u64 {
    1
}

impl AuthorityEntry {
    /// The public address clients send to.
    pub fn address(&self) -> Result<SocketAddr, ConfigError> {
        self.resolve(self.port)
    }

    /// The link address of shard `shard` (used when shards run in separate processes).
    pub fn link_address(&self, shard: u32) -> Result<SocketAddr, ConfigError> {
        let port = u32::from(self.port)
            .checked_add(1)
            .and_then(|p| p.checked_add(shard))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| ConfigError::Unresolvable {
                name: self.name,
                host: self.host.clone(),
                port: self.port,
            })?;
        self.resolve(port)
    }

    fn resolve(&self, port: u16) -> Result<SocketAddr, ConfigError> {
        (self.host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ConfigError::Unresolvable {
                name: self.name,
                host: self.host.clone(),
                port,
            })
    }
}

/// The committee file: authority entries, one JSON object each (as `generate >> committee.json`
/// writes them), in order.
#[derive(Debug, Clone)]
pub struct CommitteeConfig {
    /// The entries in file order.
    pub authorities: Vec<AuthorityEntry>,
    /// The validated committee.
    pub committee: Committee,
}

impl CommitteeConfig {
    /// Reads and validates a committee file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(io_error(path))?;
        Self::parse(path, &text)
    }

    /// Parses committee text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut authorities = Vec::new();
        for entry in serde_json::Deserializer::from_str(text).into_iter::<AuthorityEntry>() {
            let entry = entry.map_err(|e| {
                malformed(
                    path,
                    format!("entry {}: {e}", authorities.len().saturating_add(1)),
                )
            })?;
            authorities.push(entry);
        }
        let committee = Committee::new(
            authorities
                .iter()
                .map(|a| CommitteeMember {
                    name: a.name,
                    weight: a.weight,
                    num_shards: a.shards,
                })
                .collect(),
        )
        .map_err(|source| ConfigError::Committee {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            authorities,
            committee,
        })
    }

    /// The entry of `name`.
    pub fn entry(&self, name: &AuthorityName) -> Option<&AuthorityEntry> {
        self.authorities.iter().find(|a| a.name == *name)
    }
}

/// An authority's private file: its key and where it listens. Readable by its owner only.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// The authority's public entry.
    pub authority: AuthorityEntry,
    /// The secret key seed, hex.
    secret: String,
}

impl ServerFile {
    /// A new authority with a fresh key.
    pub fn generate(host: String, port: u16, shards: u32) -> Result<(Self, KeyPair), ConfigError> {
        let key = KeyPair::generate().map_err(|e| malformed(Path::new("<keygen>"), e))?;
        let file = Self {
            authority: AuthorityEntry {
                name: key.authority(),
                host,
                port,
                shards,
                weight: 1,
            },
            secret: hex::encode(key.seed()),
        };
        Ok((file, key))
    }

    /// Writes the file with mode 0600, atomically (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| malformed(path, e))?;
        write_private(path, json.as_bytes())
    }

    /// Reads the file, refusing one that group or others can read, and checks that the key
    /// matches the name.
    pub fn load(path: &Path) -> Result<(Self, KeyPair), ConfigError> {
        check_private(path)?;
        let text = fs::read_to_string(path).map_err(io_error(path))?;
        let file: ServerFile = serde_json::from_str(&text).map_err(|e| malformed(path, e))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(file.secret.trim(), &mut seed)
            .map_err(|_| malformed(path, "secret is not 64 hex digits"))?;
        let key = KeyPair::from_seed(seed);
        if key.authority() != file.authority.name {
            return Err(malformed(path, "secret does not match the authority name"));
        }
        Ok((file, key))
    }
}

/// Refuses a secret file that group or others may read.
pub fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::InsecurePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600: a crash leaves the old file or the new
/// one, never a torn one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| malformed(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

/// Reads a genesis file (`ADDRESS:BALANCE` lines).
pub fn load_genesis(path: &Path) -> Result<Genesis, ConfigError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    Genesis::parse(&text).map_err(|source| ConfigError::Genesis {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        let (file, key) = ServerFile::generate("127.0.0.1".into(), 9100, 4).unwrap();
        file.write(&path).unwrap();
        let (loaded, loaded_key) = ServerFile::load(&path).unwrap();
        assert_eq!(loaded.authority, file.authority);
        assert_eq!(loaded_key.seed(), key.seed());

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ServerFile::load(&path),
            Err(ConfigError::InsecurePermissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn committee_file_is_appended_json() {
        let entries: Vec<String> = (0..4)
            .map(|i| {
                let (file, _) =
                    ServerFile::generate("127.0.0.1".into(), 9100 + i * 100, 4).unwrap();
                serde_json::to_string(&file.authority).unwrap()
            })
            .collect();
        let text = entries.join("\n") + "\n";
        let config = CommitteeConfig::parse(Path::new("c.json"), &text).unwrap();
        assert_eq!(config.authorities.len(), 4);
        assert_eq!(config.committee.quorum_threshold(), 3);
        assert_eq!(
            config.authorities[1].link_address(2).unwrap(),
            "127.0.0.1:9203".parse().unwrap()
        );
    }

    #[test]
    fn broken_committee_files_are_typed_errors() {
        let path = Path::new("committee.json");
        let err = CommitteeConfig::parse(path, "{\"name\": 3}").unwrap_err();
        assert!(
            err.to_string().starts_with("committee.json: entry 1:"),
            "{err}"
        );
        assert!(matches!(
            CommitteeConfig::parse(path, ""),
            Err(ConfigError::Committee {
                source: CommitteeError::Empty,
                ..
            })
        ));
        let (file, _) = ServerFile::generate("127.0.0.1".into(), 9100, 4).unwrap();
        let line = serde_json::to_string(&file.authority).unwrap();
        assert!(matches!(
            CommitteeConfig::parse(path, &format!("{line}\n{line}")),
            Err(ConfigError::Committee {
                source: CommitteeError::Duplicate(_),
                ..
            })
        ));
    }
}
