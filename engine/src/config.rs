//! The files an operator handles: an authority's private server file, the committee file and
//! the genesis file. Every malformed file is a typed error naming the file.
//!
//! The committee file's format, and the server file's, live in
//! [`fastpay_wire::committee_file`], shared with the load generator; here is what only the
//! authority needs: secret files kept private (mode 0600, written atomically), and genesis.

use fastpay_authority::{Genesis, GenesisError};
use fastpay_wire::{CommitteeFileError, KeyPair, ServerFile};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a configuration file could not be used. As with
/// [`CommitteeFileError`], each message is whole and no cause is also returned as `source()`,
/// so `{:#}` chains name it once.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read or written.
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
    /// The genesis file is malformed.
    #[error("{path}: {error}")]
    Genesis {
        /// The genesis file.
        path: PathBuf,
        /// What is wrong, with its line.
        error: GenesisError,
    },
    /// A committee file, or the public part of a server file, is unusable.
    #[error(transparent)]
    CommitteeFile(#[from] CommitteeFileError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn malformed(path: &Path, reason: impl ToString) -> ConfigError {
    ConfigError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads an authority's server file, refusing one that group or others can read, and checks
/// that the key matches the name.
pub fn load_server_file(path: &Path) -> Result<(ServerFile, KeyPair), ConfigError> {
    check_private(path)?;
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    Ok(ServerFile::parse(path, &text)?)
}

/// Writes an authority's server file with mode 0600, atomically (a temporary file renamed into
/// place).
pub fn write_server_file(path: &Path, file: &ServerFile) -> Result<(), ConfigError> {
    let json = serde_json::to_string_pretty(file).map_err(|e| malformed(path, e))?;
    write_private(path, json.as_bytes())
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
    Genesis::parse(&text).map_err(|error| ConfigError::Genesis {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        let (file, key) =
            ServerFile::generate("127.0.0.1".into(), 9100, 4, Default::default()).unwrap();
        write_server_file(&path, &file).unwrap();
        let (loaded, loaded_key) = load_server_file(&path).unwrap();
        assert_eq!(loaded.authority, file.authority);
        assert_eq!(loaded_key.seed(), key.seed());

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_server_file(&path),
            Err(ConfigError::InsecurePermissions { mode: 0o644, .. })
        ));
    }
}
