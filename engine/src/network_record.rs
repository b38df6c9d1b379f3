//! Which network a shard's data belongs to, and which networks an authority's shards have
//! voted in.
//!
//! A network is a committee id: the voting set, weights and every member's network instance
//! (`server new-network` draws a new one for a kept key). Two files tie a shard to it before
//! it recovers or votes:
//!
//! - `network` in the shard's data directory holds the id the data was made in: data of one
//!   network never serves another committee file.
//! - The authority's voting record (`server.voted` beside the server file, one
//!   `<committee id> <shard>` line per shard and network, appended and synced before the
//!   shard's first vote) outlives a wiped data directory: a shard whose data is gone does not
//!   start again in a network it voted in, where it could sign an order conflicting with a
//!   vote it no longer remembers.

use crate::config::{ConfigError, write_private};
use fastpay_wire::CommitteeId;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The file in a shard's data directory naming its network.
const NETWORK_FILE: &str = "network";

/// Why a shard may not start in this network with this data.
#[derive(Debug, Error)]
pub enum NetworkRecordError {
    /// The data directory was made in another network.
    #[error(
        "{dir}: this data belongs to network {found}, but the committee file makes network \
         {expected}; run with that network's committee file (a new network starts with an \
         empty data directory)"
    )]
    OtherNetwork {
        /// The shard's data directory.
        dir: PathBuf,
        /// The id the data was made in, as written.
        found: String,
        /// The committee file's id.
        expected: CommitteeId,
    },
    /// The shard voted in this network, and its data is gone.
    #[error(
        "shard {shard} voted in network {network} ({record} says so) but its data directory \
         {dir} is empty: its votes are lost, and voting again could sign an order conflicting \
         with one of them. Restore the data directory, or start a new network: `server \
         new-network` for each kept key, a new committee file and genesis, every authority \
         wiped"
    )]
    VotesLost {
        /// The shard.
        shard: u32,
        /// The network it voted in.
        network: CommitteeId,
        /// Its (empty) data directory.
        dir: PathBuf,
        /// The voting record.
        record: PathBuf,
    },
    /// A line of the voting record is not `<committee id> <shard>`.
    #[error("{path}: line {line} is not `<committee id> <shard>`; refusing to guess what voted")]
    Malformed {
        /// The voting record.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// The data's `network` file could not be written.
    #[error(transparent)]
    Write(#[from] ConfigError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NetworkRecordError + '_ {
    move |source| NetworkRecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`inspect`] found of a shard's data directory and the voting record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection {
    /// The data directory is missing or empty.
    pub empty: bool,
    /// It names its network (the `network` file is there).
    pub marked: bool,
    /// The voting record lists the shard in this network.
    pub voted: bool,
}

/// Checks, writing nothing, that shard `shard` may start in `network` with the data in `dir`
/// and the voting `record`: refuses data of another network and a shard that voted in
/// `network` and whose data is gone (what `server check` reports and [`claim`] enforces).
pub fn inspect(
    dir: &Path,
    shard: u32,
    network: CommitteeId,
    record: Option<&Path>,
) -> Result<Inspection, NetworkRecordError> {
    let voted = match record {
        Some(path) => read_record(path)?.contains(&(network, shard)),
        None => false,
    };
    let empty = is_empty(dir)?;
    if empty {
        if let (true, Some(record)) = (voted, record) {
            return Err(NetworkRecordError::VotesLost {
                shard,
                network,
                dir: dir.to_path_buf(),
                record: record.to_path_buf(),
            });
        }
        return Ok(Inspection {
            empty,
            marked: false,
            voted,
        });
    }
    let path = dir.join(NETWORK_FILE);
    let marked = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == network.to_string() => true,
        Ok(text) => {
            return Err(NetworkRecordError::OtherNetwork {
                dir: dir.to_path_buf(),
                found: text.trim().chars().take(64).collect(),
                expected: network,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(&path)(e)),
    };
    Ok(Inspection {
        empty,
        marked,
        voted,
    })
}

/// Ties shard `shard`'s data directory `dir` to `network` before the shard recovers from it
/// or votes: [`inspect`], then records what is missing (synced): the data's network, and the
/// shard in the voting `record`.
///
/// Data made before the `network` file existed is taken as this network's.
pub fn claim(
    dir: &Path,
    shard: u32,
    network: CommitteeId,
    record: Option<&Path>,
) -> Result<(), NetworkRecordError> {
    let found = inspect(dir, shard, network, record)?;
    if found.empty {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    if !found.marked {
        write_private(&dir.join(NETWORK_FILE), format!("{network}\n").as_bytes())?;
    }
    // After the data's own mark: a crash in between leaves data that says its network, and
    // the next start records the vote before any.
    if let (false, Some(record)) = (found.voted, record) {
        append_synced(record, format!("{network} {shard}\n").as_bytes())?;
    }
    Ok(())
}

/// Whether `dir` is missing or holds nothing.
fn is_empty(dir: &Path) -> Result<bool, NetworkRecordError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// Every (network, shard) the record lists; a missing record lists none.
fn read_record(path: &Path) -> Result<Vec<(CommitteeId, u32)>, NetworkRecordError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let malformed = || NetworkRecordError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let (network, shard) = line.trim().split_once(' ').ok_or_else(malformed)?;
            Ok((
                network.parse().map_err(|_| malformed())?,
                shard.parse().map_err(|_| malformed())?,
            ))
        })
        .collect()
}

/// Appends `bytes` to `path` (creating it) and syncs the file and, for a new file, its
/// directory.
fn append_synced(path: &Path, bytes: &[u8]) -> Result<(), NetworkRecordError> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    if !existed && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error(parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: CommitteeId = CommitteeId([1; 32]);
    const B: CommitteeId = CommitteeId([2; 32]);

    #[test]
    fn a_shard_whose_data_is_gone_does_not_vote_again_in_its_network() {
        let root = tempfile::tempdir().unwrap();
        let record = root.path().join("server.voted");
        let data = root.path().join("data/shard-0");
        claim(&data, 0, A, Some(&record)).unwrap();
        // Restarts with the data are fine, and record nothing twice.
        claim(&data, 0, A, Some(&record)).unwrap();
        assert_eq!(read_record(&record).unwrap(), vec![(A, 0)]);
        // Another shard of the same authority has its own data.
        claim(&root.path().join("data/shard-1"), 1, A, Some(&record)).unwrap();
        // The data wiped: refused in the network it voted in, fine in a new one.
        std::fs::remove_dir_all(root.path().join("data")).unwrap();
        assert!(matches!(
            claim(&data, 0, A, Some(&record)),
            Err(NetworkRecordError::VotesLost { shard: 0, .. })
        ));
        claim(&data, 0, B, Some(&record)).unwrap();
        assert_eq!(read_record(&record).unwrap(), vec![(A, 0), (A, 1), (B, 0)]);
    }

    #[test]
    fn data_of_another_network_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("shard-0");
        claim(&data, 0, A, None).unwrap();
        let err = claim(&data, 0, B, None).unwrap_err();
        assert!(
            matches!(err, NetworkRecordError::OtherNetwork { .. }),
            "{err}"
        );
        // Data from before the network file: adopted, then held to it.
        std::fs::remove_file(data.join(NETWORK_FILE)).unwrap();
        std::fs::write(data.join("log"), b"records").unwrap();
        claim(&data, 0, B, None).unwrap();
        assert!(claim(&data, 0, A, None).is_err());
    }

    #[test]
    fn a_broken_record_is_refused_not_ignored() {
        let root = tempfile::tempdir().unwrap();
        let record = root.path().join("server.voted");
        std::fs::write(&record, format!("{A} 0\nnot a line\n")).unwrap();
        let err = claim(&root.path().join("shard-0"), 0, B, Some(&record)).unwrap_err();
        assert!(
            matches!(err, NetworkRecordError::Malformed { line: 2, .. }),
            "{err}"
        );
    }
}
