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
//! An authority whose shards run on several hosts adds `shard_addresses`, one object per shard
//! in shard order: `"shard_addresses":[{"listen":"10.0.0.1:9100","link":"10.0.1.1:9200"},..]`.
//! `listen` is where the shard receives (and replies to) clients; `link` is where it exchanges
//! cross-shard frames with its sibling shards, so every sibling must reach it and the shard
//! binds it. Without the field (files written before it existed), every shard listens on
//! `host:port` and shard `j`'s link on `host:port+1+j`.
//!
//! Parsing is pure and names the file (and the entry) in every error. [`CommitteeFile::load`]
//! is the only file this module reads: the server file holds a secret, and reading it (with its
//! permission check) is left to the caller, who hands the text to [`ServerFile::parse`].

use crate::base_types::{AuthorityName, NetworkInstance};
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
    /// No key could be made (the system's randomness failed).
    #[error("cannot generate a key: {0}")]
    Key(CryptoError),
    /// A shard's address (from `shard_addresses`) does not resolve.
    #[error("authority {name}: cannot resolve shard {shard} address {address}")]
    UnresolvableShard {
        /// The authority.
        name: AuthorityName,
        /// The shard.
        shard: u32,
        /// The `host:port` text.
        address: String,
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
    /// Where each shard listens, in shard order, when the shards are spread over hosts; empty:
    /// every shard at `host:port`, links at `host:port+1+j`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_addresses: Vec<ShardAddress>,
    /// The Ethereum address (`0x` and 40 hex digits) of the authority's secp256k1 key, which
    /// approves redeems on the primary chain; absent for a committee without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eth_address: Option<String>,
    /// The random value the authority drew for this network instance (64 hex digits): the
    /// committee id covers it, so a new network of the same keys (`server new-network`)
    /// accepts nothing the old one signed. `server generate` always writes one; an entry
    /// without it (a hand-written test committee) counts as all zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<NetworkInstance>,
}

/// Where one shard of an authority listens: two `host:port` strings (a name, an IPv4
/// address, or a bracketed IPv6 address, then the port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardAddress {
    /// Where the shard receives client datagrams and replies from.
    pub listen: String,
    /// Where the shard's link to its sibling shards listens (and sends from).
    pub link: String,
}

fn one() -> u64 {
    1
}

impl AuthorityEntry {
    /// The authority's public address (`host:port`): where every shard listens unless
    /// `shard_addresses` places them.
    pub fn address(&self) -> Result<SocketAddr, CommitteeFileError> {
        self.resolve(self.port)
    }

    /// Whether the entry places each shard at its own addresses.
    pub fn is_placed(&self) -> bool {
        !self.shard_addresses.is_empty()
    }

    /// Where clients send the datagrams of shard `shard`.
    pub fn shard_address(&self, shard: u32) -> Result<SocketAddr, CommitteeFileError> {
        match self.placement(shard)? {
            Some(placed) => resolve_pair(self.name, shard, &placed.listen),
            None => self.address(),
        }
    }

    /// The listen address of every shard, in shard order.
    pub fn shard_addresses(&self) -> Result<Vec<SocketAddr>, CommitteeFileError> {
        (0..self.shards).map(|j| self.shard_address(j)).collect()
    }

    /// The link address of shard `shard` (used when shards run in separate processes).
    pub fn link_address(&self, shard: u32) -> Result<SocketAddr, CommitteeFileError> {
        match self.placement(shard)? {
            Some(placed) => resolve_pair(self.name, shard, &placed.link),
            None => self.link_address_at(&self.host, shard),
        }
    }

    fn placement(&self, shard: u32) -> Result<Option<&ShardAddress>, CommitteeFileError> {
        if !self.is_placed() {
            return Ok(None);
        }
        self.shard_addresses
            .get(shard as usize)
            .map(Some)
            .ok_or_else(|| CommitteeFileError::UnresolvableShard {
                name: self.name,
                shard,
                address: "(no such shard)".into(),
            })
    }

    /// Checks `shard_addresses`: none, or one per shard, each `host:port`, links distinct.
    fn check_placement(&self) -> Result<(), String> {
        if !self.is_placed() {
            return Ok(());
        }
        if self.shard_addresses.len() != self.shards as usize {
            return Err(format!(
                "authority {}: shard_addresses lists {} shards but shards is {}",
                self.name,
                self.shard_addresses.len(),
                self.shards
            ));
        }
        for (j, placed) in self.shard_addresses.iter().enumerate() {
            for (what, text) in [("listen", &placed.listen), ("link", &placed.link)] {
                if split_host_port(text).is_none() {
                    return Err(format!(
                        "authority {}: shard {j} {what} address {text:?} is not host:port",
                        self.name
                    ));
                }
            }
            if self.shard_addresses[..j]
                .iter()
                .any(|p| p.link == placed.link)
            {
                return Err(format!(
                    "authority {}: shard {j} shares its link address {} with an earlier shard",
                    self.name, placed.link
                ));
            }
        }
        Ok(())
    }

    /// Where shard `shard`'s link listens when the authority binds its links to `host` (a
    /// private address, say) rather than its public host: the same port. Only for entries
    /// without `shard_addresses`.
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

/// `host:port` split at the last colon (a bracketed IPv6 host keeps its brackets); `None`
/// without a host or a port number.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

/// The first address a shard's `host:port` resolves to.
fn resolve_pair(
    name: AuthorityName,
    shard: u32,
    text: &str,
) -> Result<SocketAddr, CommitteeFileError> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| CommitteeFileError::UnresolvableShard {
            name,
            shard,
            address: text.to_string(),
        })
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
            entry.check_placement().map_err(|reason| {
                malformed(
                    path,
                    format!("entry {}: {reason}", authorities.len().saturating_add(1)),
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
        })?
        .in_instances(
            authorities
                .iter()
                .filter_map(|a| a.instance.map(|instance| (a.name, instance))),
        );
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
    /// A new authority with a fresh key, of weight one, signing votes by `votes`, every shard at `host:port`.
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
                shard_addresses: Vec::new(),
                eth_address: None,
                instance: Some(draw_instance()?),
            },
            secret: hex::encode(key.seed()),
        };
        Ok((file, key))
    }

    /// A new authority whose shards listen at `shard_addresses` (one per shard); `host:port`
    /// stays its public address. Fails on a malformed placement.
    pub fn generate_placed(
        host: String,
        port: u16,
        shard_addresses: Vec<ShardAddress>,
        votes: VoteScheme,
    ) -> Result<(Self, KeyPair), CommitteeFileError> {
        let shards = u32::try_from(shard_addresses.len()).unwrap_or(u32::MAX);
        let key = KeyPair::generate().map_err(CommitteeFileError::Key)?;
        let authority = AuthorityEntry {
            name: key.authority(),
            host,
            port,
            shards,
            weight: 1,
            votes,
            shard_addresses,
            eth_address: None,
            instance: Some(draw_instance().map_err(CommitteeFileError::Key)?),
        };
        authority
            .check_placement()
            .map_err(|reason| malformed(Path::new("--shard-listen/--shard-link"), reason))?;
        let file = Self {
            authority,
            secret: hex::encode(key.seed()),
        };
        Ok((file, key))
    }

    /// The same authority (its key kept) in a new network instance: a fresh random
    /// instance, so the committee id changes and nothing signed before is valid any more.
    pub fn draw_new_instance(&mut self) -> Result<(), CryptoError> {
        self.authority.instance = Some(draw_instance()?);
        Ok(())
    }

    /// Parses server-file text and checks that the key matches the name; `path` names it in
    /// errors. Does not (cannot) check who may read the file.
    pub fn parse(path: &Path, text: &str) -> Result<(Self, KeyPair), CommitteeFileError> {
        let file: ServerFile = serde_json::from_str(text).map_err(|e| malformed(path, e))?;
        file.authority
            .check_placement()
            .map_err(|reason| malformed(path, reason))?;
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

/// A fresh random network instance.
fn draw_instance() -> Result<NetworkInstance, CryptoError> {
    let mut value = [0u8; 32];
    getrandom::fill(&mut value).map_err(|_| CryptoError::NoRandomness)?;
    Ok(NetworkInstance(value))
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
            shard_addresses: Vec::new(),
            eth_address: None,
            instance: None,
        }
    }

    fn placed(i: u8) -> AuthorityEntry {
        AuthorityEntry {
            shard_addresses: (0..4)
                .map(|j| ShardAddress {
                    listen: format!("10.0.{j}.{i}:9100"),
                    link: format!("10.0.{j}.{i}:{}", 9200 + j),
                })
                .collect(),
            ..entry(i)
        }
    }

    #[test]
    fn placed_shards_have_their_own_addresses() {
        let name = placed(1).name;
        let text = format!(
            "{{\"name\":\"{name}\",\"host\":\"127.0.0.1\",\"port\":9100,\"shards\":4,\"weight\":1,\
             \"shard_addresses\":[{{\"listen\":\"10.0.0.1:9100\",\"link\":\"10.0.0.1:9200\"}},\
             {{\"listen\":\"10.0.1.1:9100\",\"link\":\"10.0.1.1:9201\"}},\
             {{\"listen\":\"10.0.2.1:9100\",\"link\":\"10.0.2.1:9202\"}},\
             {{\"listen\":\"10.0.3.1:9100\",\"link\":\"10.0.3.1:9203\"}}]}}"
        );
        assert_eq!(serde_json::to_string(&placed(1)).unwrap(), text);
        // Placed and unplaced entries mix in one committee.
        let file = CommitteeFile::parse(
            Path::new("c.json"),
            &format!("{text}\n{}", serde_json::to_string(&entry(2)).unwrap()),
        )
        .unwrap();
        let a = &file.authorities[0];
        assert!(a.is_placed());
        assert_eq!(
            a.shard_address(2).unwrap(),
            "10.0.2.1:9100".parse().unwrap()
        );
        assert_eq!(a.link_address(3).unwrap(), "10.0.3.1:9203".parse().unwrap());
        assert_eq!(a.shard_addresses().unwrap().len(), 4);
        assert!(matches!(
            a.shard_address(4),
            Err(CommitteeFileError::UnresolvableShard { shard: 4, .. })
        ));
        let b = &file.authorities[1];
        assert!(!b.is_placed());
        assert_eq!(b.shard_address(3).unwrap(), b.address().unwrap());
        assert_eq!(
            b.link_address(1).unwrap(),
            "127.0.0.1:9202".parse().unwrap()
        );
    }

    #[test]
    fn bad_placements_are_refused_naming_the_entry() {
        let path = Path::new("committee.json");
        let first = serde_json::to_string(&entry(1)).unwrap();
        let check = |bad: AuthorityEntry, needle: &str| {
            let line = serde_json::to_string(&bad).unwrap();
            let err = CommitteeFile::parse(path, &format!("{first}\n{line}")).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("committee.json: entry 2:"), "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message}");
        };
        let mut short = placed(2);
        short.shard_addresses.pop();
        check(short, "lists 3 shards but shards is 4");
        let mut no_port = placed(2);
        no_port.shard_addresses[1].listen = "10.0.0.1".into();
        check(
            no_port,
            "shard 1 listen address \"10.0.0.1\" is not host:port",
        );
        let mut no_host = placed(2);
        no_host.shard_addresses[2].link = ":9000".into();
        check(no_host, "shard 2 link address");
        let mut shared = placed(2);
        shared.shard_addresses[3].link = shared.shard_addresses[0].link.clone();
        check(shared, "shard 3 shares its link address");
        let mut unknown = serde_json::to_string(&placed(2)).unwrap();
        unknown = unknown.replacen("\"link\"", "\"lnik\"", 1);
        let err = CommitteeFile::parse(path, &format!("{first}\n{unknown}")).unwrap_err();
        assert!(
            err.to_string().starts_with("committee.json: entry 2:"),
            "{err}"
        );
        // A name that does not resolve is an error when used, not a panic.
        let mut nowhere = placed(2);
        nowhere.shard_addresses[0].listen = "no-such-host.invalid:9100".into();
        assert!(matches!(
            nowhere.shard_address(0),
            Err(CommitteeFileError::UnresolvableShard { shard: 0, .. })
        ));
    }

    #[test]
    fn placed_server_files_round_trip() {
        let path = Path::new("server.json");
        let addresses = placed(1).shard_addresses;
        let (file, _) = ServerFile::generate_placed(
            "10.0.0.1".into(),
            9100,
            addresses.clone(),
            VoteScheme::Single,
        )
        .unwrap();
        assert_eq!(file.authority.shards, 4);
        let text = serde_json::to_string(&file).unwrap();
        let (parsed, _) = ServerFile::parse(path, &text).unwrap();
        assert_eq!(parsed.authority.shard_addresses, addresses);
        let err = ServerFile::generate_placed(
            "10.0.0.1".into(),
            9100,
            vec![addresses[0].clone(), addresses[0].clone()],
            VoteScheme::Single,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("shares its link address"), "{err}");
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

    #[test]
    fn generated_authorities_draw_a_network_instance_the_id_covers() {
        let generate = || {
            ServerFile::generate("127.0.0.1".into(), 9100, 2, VoteScheme::Single)
                .unwrap()
                .0
        };
        let mut files: Vec<ServerFile> = (0..4).map(|_| generate()).collect();
        let committee_of = |files: &[ServerFile]| {
            let text: Vec<String> = files.iter().map(text_of).collect();
            CommitteeFile::parse(Path::new("c.json"), &text.join("\n")).unwrap()
        };
        let first = committee_of(&files);
        let instance = files[0].authority.instance.unwrap();
        assert!(text_of(&files[0]).contains(&format!("\"instance\":\"{instance}\"")));
        assert_eq!(first.authorities[0].instance, Some(instance));
        // Same keys, one instance drawn anew: another network, another id.
        files[3].draw_new_instance().unwrap();
        let second = committee_of(&files);
        assert_eq!(
            first.committee.members(),
            second.committee.members(),
            "the voting set is the same"
        );
        assert_ne!(first.committee.id(), second.committee.id());
        let bad = text_of(&files[0]).replace(&instance.to_string(), "12");
        assert!(matches!(
            CommitteeFile::parse(Path::new("c.json"), &bad),
            Err(CommitteeFileError::Malformed { .. })
        ));
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
