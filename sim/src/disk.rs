//! A simulated shard disk: keeps only what was synced, and a crash does to the rest what a
//! power loss may: loses it, tears the last write, or leaves a zero-filled tail.
//!
//! The log holds the node's real framed records (`fastpay_node::log`), and recovery parses
//! them with the same code as the engine's store, so torn and zero-filled tails meet the real
//! parser. A snapshot follows the store's protocol: the log is synced, the snapshot is written
//! in the background and, once it lands, replaces the log prefix it covers; a crash before it
//! lands keeps the old snapshot and the whole log.

use fastpay_node::log::{LogError, Record, Snapshot, decode_log};
use rand::RngExt;
use rand::rngs::StdRng;

/// What a crash did to the unsynced end of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashFault {
    /// Nothing was unsynced.
    Clean,
    /// The unsynced bytes are gone.
    Lost,
    /// Part of the unsynced bytes reached the disk, cut anywhere.
    Torn,
    /// The file was extended but its data never written: zeros.
    ZeroFilled,
    /// The unsynced bytes all reached the disk after all.
    Kept,
}

/// One shard's disk.
#[derive(Debug, Default)]
pub struct SimDisk {
    snapshot: Option<Snapshot>,
    /// The log since the snapshot: written bytes, of which `synced` are durable.
    log: Vec<u8>,
    synced: usize,
    /// Absolute offset of `log[0]` (bytes dropped by snapshots so far).
    base: u64,
    /// A snapshot being written, and the absolute log offset it covers.
    writing: Option<(Snapshot, u64)>,
}

impl SimDisk {
    /// Appends bytes (not yet durable); returns the absolute offset they end at.
    pub fn write(&mut self, bytes: &[u8]) -> u64 {
        self.log.extend_from_slice(bytes);
        self.base + self.log.len() as u64
    }

    /// Everything written up to absolute offset `end` is durable.
    pub fn sync(&mut self, end: u64) {
        let end = end.saturating_sub(self.base).min(self.log.len() as u64) as usize;
        self.synced = self.synced.max(end);
    }

    /// Syncs the log and starts writing `snapshot`, which covers all of it.
    pub fn begin_snapshot(&mut self, snapshot: Snapshot) {
        self.synced = self.log.len();
        self.writing = Some((snapshot, self.base + self.log.len() as u64));
    }

    /// Whether a snapshot is being written.
    pub fn snapshot_in_progress(&self) -> bool {
        self.writing.is_some()
    }

    /// The background snapshot landed: it replaces the log prefix it covers.
    pub fn snapshot_landed(&mut self) {
        let Some((snapshot, covers)) = self.writing.take() else {
            return;
        };
        let cut = covers.saturating_sub(self.base).min(self.log.len() as u64) as usize;
        self.log.drain(..cut);
        self.synced = self.synced.saturating_sub(cut);
        self.base += cut as u64;
        self.snapshot = Some(snapshot);
    }

    /// Loses power: the snapshot being written is lost, and the unsynced end of the log meets
    /// a fault chosen by `rng`.
    pub fn crash(&mut self, rng: &mut StdRng) -> CrashFault {
        self.writing = None;
        let unsynced = self.log.len() - self.synced;
        if unsynced == 0 {
            return CrashFault::Clean;
        }
        let fault = match rng.random_range(0..4u8) {
            0 => CrashFault::Lost,
            1 => CrashFault::Torn,
            2 => CrashFault::ZeroFilled,
            _ => CrashFault::Kept,
        };
        match fault {
            CrashFault::Lost => self.log.truncate(self.synced),
            CrashFault::Torn => {
                let keep = rng.random_range(0..unsynced);
                self.log.truncate(self.synced + keep);
            }
            CrashFault::ZeroFilled => {
                let len = rng.random_range(1..=unsynced);
                self.log.truncate(self.synced);
                self.log.resize(self.synced + len, 0);
            }
            CrashFault::Clean | CrashFault::Kept => {}
        }
        self.synced = self.log.len();
        fault
    }

    /// Bytes of log since the snapshot.
    pub fn log_bytes(&self) -> u64 {
        self.log.len() as u64
    }

    /// What recovery finds: the snapshot and the records after it. A torn tail is cut off,
    /// as the store does; corruption is an error.
    pub fn recover(&mut self) -> Result<(Option<Snapshot>, Vec<Record>), LogError> {
        let (records, torn) = decode_log(&self.log)?;
        if let Some((offset, _)) = torn {
            self.log.truncate(offset as usize);
            self.synced = self.synced.min(self.log.len());
        }
        Ok((self.snapshot.clone(), records))
    }
}
