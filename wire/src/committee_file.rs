//! The committee file and the public part of an authority's server file: the one place their
//! JSON format is read.
//!
//! The committee file lists every authority, one JSON object each, in order, as
//! `server generate >> committee.json` appends them:
//! `{"name":"<64 hex digits>","host":"127.0.0.1","port":9100,"shards":4,"weight":1}`.
//! `weight` defaults to 1; `votes` (`"single"` or `"merkle"`, see [`crate::merkle`]) defaults
//! to `"single"` and is written only when it is `"merkle"`; unknown fields are refused. An authority's server file is one JSON
//! object holding its entry and its secret key seed.
//!
//! Parsing is pure and names the file (and the entry) in every error. [`CommitteeFile::load`]
//! is the only file this module reads: the server file holds a secret, and reading it (with its
//! permission check) is left to the caller, who hands the text to [`ServerFile::parse`].

use crate::base_types::AuthorityName;
use crate::committee::{Committee, CommitteeError, CommitteeMember};
use crate::crypto::{CryptoError, KeyPair};
use crate::merkle::VoteScheme;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a committee file or a server file could not be used.
///
/// Each message is whole (file, then cause); the cause is not also returned by
/// [`std::error::Error::source`], so `{:#}` chains (anyhow) do not print it twice.
#[derive(Debug, Error)]
pub enum CommitteeFileError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the entry and position where known.
        reason: String,
    },
    /// The entries do not make a valid committee.
    #[error("{path}: {error}")]
    Committee {
        /// The committee file.
        path: PathBuf,
        /// What is wrong.
        error: CommitteeError,
    },
    /// An authority's host and port do not resolve to an address.
    #[error("authority {name}: cannot resolve {host}:{port}")]
    Unresolvable {
        /// The authority.
        name: AuthorityName,
        /// Its host.
        host: String,
        /// The port (its public port, or the one a link port would have overflowed from).
        port: u16,
    },
}

fn malformed(path: &Path, reason: impl ToString) -> CommitteeFileError {
    CommitteeFileError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// One authority's public description: an entry of the committee file.
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
    /// How the authority signs its votes: `"single"` (one signature per vote, the default,
    /// left out of the file) or `"merkle"` (one signature per batch of votes).
    #[serde(default, skip_serializing_if = "VoteScheme::is_default")]
    pub votes: VoteScheme,
}

fn one() -> u64 {
    1
}

impl AuthorityEntry {
    /// The public address clients send to.
    pub fn address(&self) -> Result<SocketAddr, CommitteeFileError> {
        self.resolve(self.port)
    }

    /// The link address of shard `shard` (used when shards run in separate processes).
    pub fn link_address(&self, shard: u32) -> Result<SocketAddr, CommitteeFileError> {
        self.link_address_at(&self.host, shard)
    }

    /// Where shard `shard`'s link listens when the authority binds its links to `host` (a
    /// private address, say) rather than its public host: the same port.
    pub fn link_address_at(
        &self,
        host: &str,
        shard: u32,
    ) -> Result<SocketAddr, CommitteeFileError> {
        let port = u32::from(self.port)
            .checked_add(1)
            .and_then(|p| p.checked_add(shard))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| CommitteeFileError::Unresolvable {
                name: self.name,
                host: host.to_string(),
                port: self.port,
            })?;
        resolve(self.name, host, port)
    }

    fn resolve(&self, port: u16) -> Result<SocketAddr, CommitteeFileError> {
        resolve(self.name, &self.host, port)
    }
}

/// The first address `host:port` resolves to.
fn resolve(name: AuthorityName, host: &str, port: u16) -> Result<SocketAddr, CommitteeFileError> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| CommitteeFileError::Unresolvable {
            name,
            host: host.to_string(),
            port,
        })
}

/// A validated committee file: its entries in file order and the committee they make.
#[derive(Debug, Clone)]
pub struct CommitteeFile {
    /// The entries in file order.
    pub authorities: Vec<AuthorityEntry>,
    /// The validated committee.
    pub committee: Committee,
}

impl CommitteeFile {
    /// Reads and validates a committee file.
    pub fn load(path: &Path) -> Result<Self, CommitteeFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| CommitteeFileError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates committee text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, CommitteeFileError> {
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
                    votes: a.votes,
                })
                .collect(),
        )
        .map_err(|error| CommitteeFileError::Committee {
            path: path.to_path_buf(),
            error,
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

/// An authority's private server file: its public entry and its secret key seed (hex). No
/// `Debug`, so the secret cannot end up in a log by accident.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// The authority's public entry.
    pub authority: AuthorityEntry,
    /// The secret key seed, hex.
    secret: String,
}

impl ServerFile {
    /// A new authority with a fresh key, of weight one, signing votes by `votes`.
    pub fn generate(
        host: String,
        port: u16,
        shards: u32,
        votes: VoteScheme,
    ) -> Result<(Self, KeyPair), CryptoError> {
        let key = KeyPair::generate()?;
        let file = Self {
            authority: AuthorityEntry {
                name: key.authority(),
                host,
                port,
                shards,
                weight: 1,
                votes,
            },
            secret: hex::encode(key.seed()),
        };
        Ok((file, key))
    }

    /// Parses server-file text and checks that the key matches the name; `path` names it in
    /// errors. Does not (cannot) check who may read the file.
    pub fn parse(path: &Path, text: &str) -> Result<(Self, KeyPair), CommitteeFileError> {
        let file: ServerFile = serde_json::from_str(text).map_err(|e| malformed(path, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> AuthorityEntry {
        AuthorityEntry {
            name: KeyPair::from_seed([i; 32]).authority(),
            host: "127.0.0.1".into(),
            port: 9000 + u16::from(i) * 100,
            shards: 4,
            weight: 1,
            votes: VoteScheme::Single,
        }
    }

    #[test]
    fn committee_file_is_appended_json() {
        let lines: Vec<String> = (1..=4)
            .map(|i| serde_json::to_string(&entry(i)).unwrap())
            .collect();
        let text = lines.join("\n") + "\n";
        let file = CommitteeFile::parse(Path::new("c.json"), &text).unwrap();
        assert_eq!(file.authorities.len(), 4);
        assert_eq!(file.committee.quorum_threshold(), 3);
        assert_eq!(
            file.authorities[1].link_address(2).unwrap(),
            "127.0.0.1:9203".parse().unwrap()
        );
        assert_eq!(file.entry(&entry(3).name), Some(&entry(3)));
    }

    #[test]
    fn committee_file_format_is_stable() {
        // A line as `server generate` writes it; `weight` may be left out.
        let name = entry(1).name;
        let text = format!(
            "{{\"name\":\"{name}\",\"host\":\"127.0.0.1\",\"port\":9100,\"shards\":4,\"weight\":1}}"
        );
        assert_eq!(serde_json::to_string(&entry(1)).unwrap(), text);
        let short =
            format!("{{\"name\":\"{name}\",\"host\":\"127.0.0.1\",\"port\":9100,\"shards\":4}}");
        let file = CommitteeFile::parse(Path::new("c.json"), &short).unwrap();
        assert_eq!(file.authorities, vec![entry(1)]);
        assert_eq!(
            file.authorities[0].address().unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
    }

    fn text_of(file: &ServerFile) -> String {
        serde_json::to_string(&file.authority).unwrap()
    }

    #[test]
    fn vote_scheme_is_optional_and_checked() {
        let name = entry(1).name;
        let merkle = format!(
            "{{\"name\":\"{name}\",\"host\":\"127.0.0.1\",\"port\":9100,\"shards\":4,\"weight\":1,\"votes\":\"merkle\"}}"
        );
        let file = CommitteeFile::parse(Path::new("c.json"), &merkle).unwrap();
        assert_eq!(file.authorities[0].votes, VoteScheme::Merkle);
        assert_eq!(file.committee.vote_scheme(&name), VoteScheme::Merkle);
        assert_eq!(serde_json::to_string(&file.authorities[0]).unwrap(), merkle);
        // Old files (no field) keep the per-vote scheme, and the committee id.
        let old = CommitteeFile::parse(
            Path::new("c.json"),
            &serde_json::to_string(&entry(1)).unwrap(),
        )
        .unwrap();
        assert_eq!(old.committee.vote_scheme(&name), VoteScheme::Single);
        assert_eq!(old.committee.id(), file.committee.id());
        let bad = merkle.replace("\"merkle\"", "\"batch\"");
        assert!(matches!(
            CommitteeFile::parse(Path::new("c.json"), &bad),
            Err(CommitteeFileError::Malformed { .. })
        ));
    }

    #[test]
    fn broken_committee_files_are_typed_errors() {
        let path = Path::new("committee.json");
        let err = CommitteeFile::parse(path, "{\"name\": 3}").unwrap_err();
        assert!(
            err.to_string().starts_with("committee.json: entry 1:"),
            "{err}"
        );
        assert!(matches!(
            CommitteeFile::parse(path, ""),
            Err(CommitteeFileError::Committee {
                error: CommitteeError::Empty,
                ..
            })
        ));
        let line = serde_json::to_string(&entry(1)).unwrap();
        assert!(matches!(
            CommitteeFile::parse(path, &format!("{line}\n{line}")),
            Err(CommitteeFileError::Committee {
                error: CommitteeError::Duplicate(_),
                ..
            })
        ));
        let unknown = line.replace("\"weight\"", "\"wieght\"");
        let err = CommitteeFile::parse(path, &format!("{line}\n{unknown}")).unwrap_err();
        assert!(
            err.to_string().starts_with("committee.json: entry 2:"),
            "{err}"
        );
        let err = CommitteeFile::load(Path::new("/nonexistent/committee.json")).unwrap_err();
        assert!(matches!(err, CommitteeFileError::Io { .. }), "{err}");
        // The cause is in the message only, so an error chain names it once.
        assert!(std::error::Error::source(&err).is_none());
        assert!(err.to_string().starts_with("/nonexistent/committee.json: "));
    }

    #[test]
    fn link_ports_past_the_last_port_are_refused() {
        let mut high = entry(1);
        high.port = u16::MAX - 1;
        assert!(high.link_address(0).is_ok());
        assert!(matches!(
            high.link_address(1),
            Err(CommitteeFileError::Unresolvable { .. })
        ));
    }

    #[test]
    fn server_file_round_trips_and_checks_its_key() {
        let path = Path::new("server.json");
        let (file, key) =
            ServerFile::generate("127.0.0.1".into(), 9100, 4, VoteScheme::Merkle).unwrap();
        assert!(text_of(&file).contains("\"votes\":\"merkle\""));
        let text = serde_json::to_string_pretty(&file).unwrap();
        let (parsed, parsed_key) = ServerFile::parse(path, &text).unwrap();
        assert_eq!(parsed.authority, file.authority);
        assert_eq!(parsed_key.seed(), key.seed());

        let other = KeyPair::from_seed([9; 32]);
        let swapped = text.replace(&hex::encode(key.seed()), &hex::encode(other.seed()));
        let err = ServerFile::parse(path, &swapped).err().unwrap();
        assert_eq!(
            err.to_string(),
            "server.json: secret does not match the authority name"
        );
        let short = text.replace(&hex::encode(key.seed()), "abcd");
        let err = ServerFile::parse(path, &short).err().unwrap();
        assert_eq!(err.to_string(), "server.json: secret is not 64 hex digits");
        assert!(matches!(
            ServerFile::parse(path, "{"),
            Err(CommitteeFileError::Malformed { .. })
        ));
    }
}
