//! `server check`: everything `run` would refuse, and a few mistakes it would not
//! notice until traffic came, found before start and reported all at once.
//!
//! It reads the same files through the same parsers as `run` ([`crate::config`],
//! [`fastpay_wire::CommitteeFile`], [`fastpay_authority::Genesis`]), so the messages are the
//! ones `run` would give; it adds checks across files (the server in the committee, addresses
//! two authorities share, link ports that land on another authority's port), genesis
//! addresses that are not public keys (such an account could never send), and whether the
//! ports are free on this machine now.

use crate::config::{ConfigError, load_genesis, load_server_file};
use crate::network_record::inspect;
use fastpay_wire::{AccountId, AuthorityEntry, CommitteeFile, PublicKey, shard_of};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One thing wrong with an authority's set-up.
#[derive(Debug, Error)]
pub enum Problem {
    /// A file could not be read or is malformed (the parsers' own message).
    #[error(transparent)]
    File(#[from] ConfigError),
    /// The server file's authority is missing from the committee.
    #[error("authority {name} (from {server}) is not in {committee}")]
    NotInCommittee {
        /// The authority.
        name: String,
        /// The server file.
        server: PathBuf,
        /// The committee file.
        committee: PathBuf,
    },
    /// The server file and the committee describe the authority differently.
    #[error("{server} and {committee} disagree about authority {name}: {ours} vs {theirs}")]
    Disagree {
        /// The authority.
        name: String,
        /// The server file.
        server: PathBuf,
        /// The committee file.
        committee: PathBuf,
        /// The server file's entry.
        ours: String,
        /// The committee's entry.
        theirs: String,
    },
    /// `--shard` names no shard of the authority.
    #[error("--shard {shard} is out of range: authority {name} has {shards} shards (0..{shards})")]
    ShardOutOfRange {
        /// The shard asked for.
        shard: u32,
        /// The authority.
        name: String,
        /// How many it has.
        shards: u32,
    },
    /// A committee entry's address does not resolve.
    #[error("{committee}: {reason}")]
    Unresolvable {
        /// The committee file.
        committee: PathBuf,
        /// The resolver's message.
        reason: String,
    },
    /// Two ports of the committee (public or link ports) are the same address.
    #[error("{committee}: {address} is {first} and also {second}")]
    PortClash {
        /// The committee file.
        committee: PathBuf,
        /// The shared address.
        address: SocketAddr,
        /// Its first use.
        first: String,
        /// Its other use.
        second: String,
    },
    /// A port this authority needs is taken on this machine.
    #[error("{what} {address} is already in use by another process")]
    PortBusy {
        /// Which port.
        what: &'static str,
        /// The address.
        address: SocketAddr,
    },
    /// A genesis address that is not an ed25519 public key: the account could never send.
    #[error(
        "{path}: line {line}: account {account} is not a valid public key (it could receive but never send)"
    )]
    NotAKey {
        /// The genesis file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The address.
        account: String,
    },
    /// The data directory's path is taken by something else.
    #[error("{path}: the data directory is not a directory")]
    DataDirNotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A shard's data is another network's, or it voted in this one and its data is gone.
    #[error(transparent)]
    Network(#[from] crate::network_record::NetworkRecordError),
}

/// What `check` looks at: the paths and options `run` was given.
#[derive(Debug, Clone)]
pub struct CheckInput<'a> {
    /// The server file.
    pub server: &'a Path,
    /// The committee file.
    pub committee: &'a Path,
    /// The genesis file.
    pub genesis: &'a Path,
    /// `--shard`.
    pub shard: Option<u32>,
    /// `--link-host` (with `--shard`).
    pub link_host: Option<&'a str>,
    /// `--metrics-address`.
    pub metrics_address: Option<SocketAddr>,
    /// The data directory `run` would use, if durable.
    pub data_dir: Option<&'a Path>,
    /// The voting record `run` would keep, if durable.
    pub voting_record: Option<&'a Path>,
    /// Whether to try binding the ports (off when checking files for another machine).
    pub probe_ports: bool,
}

/// What a successful check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    /// The authority's entry.
    pub authority: AuthorityEntry,
    /// Authorities in the committee.
    pub committee_size: usize,
    /// Genesis accounts in all.
    pub accounts: usize,
    /// Genesis accounts per shard of this authority.
    pub accounts_per_shard: Vec<usize>,
}

/// Checks everything; returns what was found, or every problem.
pub fn check(input: &CheckInput) -> Result<CheckSummary, Vec<Problem>> {
    let mut problems = Vec::new();
    let server = load_server_file(input.server)
        .map_err(|e| problems.push(e.into()))
        .ok();
    let committee = CommitteeFile::load(input.committee)
        .map_err(|e| problems.push(ConfigError::from(e).into()))
        .ok();
    let genesis = load_genesis(input.genesis)
        .map_err(|e| problems.push(e.into()))
        .ok();
    if let Some(committee) = &committee {
        check_addresses(input.committee, committee, &mut problems);
    }
    if genesis.is_some() {
        check_genesis_keys(input.genesis, &mut problems);
    }
    if let Some(dir) = input.data_dir
        && dir.exists()
        && !dir.is_dir()
    {
        problems.push(Problem::DataDirNotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let entry = match (&server, &committee) {
        (Some((server, _)), Some(committee)) => {
            check_membership(input, &server.authority, committee, &mut problems)
        }
        _ => None,
    };
    if let Some(entry) = &entry
        && input.probe_ports
    {
        probe_ports(input, entry, &mut problems);
    }
    if let (Some(entry), Some(committee), Some(dir)) = (&entry, &committee, input.data_dir)
        && (dir.is_dir() || !dir.exists())
    {
        let shards = input.shard.map_or(0..entry.shards, |j| j..j + 1);
        for shard in shards {
            let shard_dir = crate::store::shard_dir(dir, shard);
            let network = committee.committee.id();
            if let Err(e) = inspect(&shard_dir, shard, network, input.voting_record) {
                problems.push(e.into());
            }
        }
    }
    match (entry, committee, genesis) {
        (Some(authority), Some(committee), Some(genesis)) if problems.is_empty() => {
            let mut accounts_per_shard = vec![0; authority.shards as usize];
            for (account, _) in genesis.accounts() {
                if let Some(n) =
                    accounts_per_shard.get_mut(shard_of(account, authority.shards).0 as usize)
                {
                    *n += 1;
                }
            }
            Ok(CheckSummary {
                authority,
                committee_size: committee.authorities.len(),
                accounts: genesis.accounts().len(),
                accounts_per_shard,
            })
        }
        _ => Err(problems),
    }
}

/// Genesis addresses that are not public keys, by line (the file parsed already, so every
/// line that is not blank or a comment holds an address).
fn check_genesis_keys(path: &Path, problems: &mut Vec<Problem>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for (index, raw) in text.lines().enumerate() {
        let Some((address, _)) = raw.trim().split_once(':') else {
            continue;
        };
        let Ok(account) = address.parse::<AccountId>() else {
            continue;
        };
        if PublicKey::of_account(&account).is_err() {
            problems.push(Problem::NotAKey {
                path: path.to_path_buf(),
                line: index + 1,
                account: address.to_string(),
            });
        }
    }
}

/// The server's entry, if the committee has it and agrees, and `--shard` fits it.
fn check_membership(
    input: &CheckInput,
    ours: &AuthorityEntry,
    committee: &CommitteeFile,
    problems: &mut Vec<Problem>,
) -> Option<AuthorityEntry> {
    membership(input.server, input.committee, ours, committee, input.shard)
        .map_err(|problem| problems.push(problem))
        .ok()
        .cloned()
}

/// The one membership check of `server run` and `server check`: the entry of the server file's
/// authority `ours` (read from `server`) in `committee` (read from `committee_path`), if the
/// committee has it and agrees with it, and `shard` (`--shard`) is one of its shards.
pub fn membership<'c>(
    server: &Path,
    committee_path: &Path,
    ours: &AuthorityEntry,
    committee: &'c CommitteeFile,
    shard: Option<u32>,
) -> Result<&'c AuthorityEntry, Problem> {
    let Some(entry) = committee.entry(&ours.name) else {
        return Err(Problem::NotInCommittee {
            name: ours.name.to_string(),
            server: server.to_path_buf(),
            committee: committee_path.to_path_buf(),
        });
    };
    if entry != ours {
        let (mut theirs, mut mine) = (describe(entry), describe(ours));
        if theirs == mine {
            // They differ in what the short description leaves out.
            (theirs, mine) = (format!("{entry:?}"), format!("{ours:?}"));
        }
        return Err(Problem::Disagree {
            name: ours.name.to_string(),
            server: server.to_path_buf(),
            committee: committee_path.to_path_buf(),
            ours: mine,
            theirs,
        });
    }
    if let Some(shard) = shard
        && shard >= entry.shards
    {
        return Err(Problem::ShardOutOfRange {
            shard,
            name: entry.name.to_string(),
            shards: entry.shards,
        });
    }
    Ok(entry)
}

fn describe(entry: &AuthorityEntry) -> String {
    let network = entry
        .instance
        .map_or_else(|| "none".to_string(), |i| i.to_string()[..16].to_string());
    format!(
        "{}:{} with {} shards, weight {}, network instance {network}",
        entry.host, entry.port, entry.shards, entry.weight
    )
}

/// Every public and link address of the committee is used once.
fn check_addresses(path: &Path, committee: &CommitteeFile, problems: &mut Vec<Problem>) {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let mut claim = |address: SocketAddr, what: String, problems: &mut Vec<Problem>| {
        if let Some(first) = seen.get(&address) {
            problems.push(Problem::PortClash {
                committee: path.to_path_buf(),
                address,
                first: first.clone(),
                second: what,
            });
        } else {
            seen.insert(address, what);
        }
    };
    for entry in &committee.authorities {
        // Shards placed on their own addresses each claim theirs; an authority's shards may
        // share one (SO_REUSEPORT), so each distinct address is claimed once.
        match entry.shard_addresses() {
            Ok(mut addresses) => {
                addresses.sort();
                addresses.dedup();
                for address in addresses {
                    claim(
                        address,
                        format!("the port of authority {}", entry.name),
                        problems,
                    );
                }
            }
            Err(e) => {
                problems.push(Problem::Unresolvable {
                    committee: path.to_path_buf(),
                    reason: e.to_string(),
                });
                continue;
            }
        }
        // Link ports only matter for authorities that split their shards over processes,
        // but any authority may: the committee keeps them free.
        for j in 0..entry.shards {
            if let Ok(address) = entry.link_address(j) {
                claim(
                    address,
                    format!("the link port of shard {j} of authority {}", entry.name),
                    problems,
                );
            }
        }
    }
}

/// The ports `run` would bind are free now.
fn probe_ports(input: &CheckInput, entry: &AuthorityEntry, problems: &mut Vec<Problem>) {
    let mut busy = |what: &'static str, address: SocketAddr, free: bool| {
        if !free {
            problems.push(Problem::PortBusy { what, address });
        }
    };
    // A shard process shares the public port with its sibling shards' processes
    // (SO_REUSEPORT); only a whole authority needs it free.
    if input.shard.is_none()
        && let Ok(address) = entry.shard_address(0)
    {
        let free = UdpSocket::bind(address).is_ok();
        busy("the authority's UDP port", address, free);
    }
    if let Some(shard) = input.shard {
        let address = if entry.is_placed() {
            entry.link_address(shard)
        } else {
            entry.link_address_at(input.link_host.unwrap_or(&entry.host), shard)
        };
        if let Ok(address) = address {
            let free = UdpSocket::bind(address).is_ok();
            busy("the shard's link port", address, free);
        }
    }
    if let Some(address) = input.metrics_address {
        let free = TcpListener::bind(address).is_ok();
        busy("the metrics address", address, free);
    }
}
