//! A simulated shard disk: keeps only what was synced, and a crash does to the rest what a
//! power loss may: loses it, tears the last write, or leaves a zero-filled tail.
//!
//! The log holds the node's real framed records in groups, one per write, as the engine's
//! store writes them (`fastpay_node::log`), and recovery parses them with the same code, so
//! torn, zero-filled and scrambled tails meet the real parser. A snapshot follows the store's
//! protocol: the log is synced and cut, later records are written after the cut while the
//! snapshot is encoded, the snapshot is then written in the background and, once it lands,
//! replaces the log prefix before the cut; a crash before it lands keeps the old snapshot and
//! the whole log.

use fastpay_node::log::{
    EncodedSnapshot, LogError, Record, Snapshot, decode_log, new_group, seal_group,
};
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
    /// The pages of the last write landed out of order: some of them never did.
    Scrambled,
    /// The unsynced bytes all reached the disk after all.
    Kept,
}

/// One shard's disk.
#[derive(Debug, Default)]
pub struct SimDisk {
    snapshot: Option<EncodedSnapshot>,
    /// The log since the snapshot: written bytes, of which `synced` are durable.
    log: Vec<u8>,
    synced: usize,
    /// Absolute offset of `log[0]` (bytes dropped by snapshots so far).
    base: u64,
    /// Where the log was cut for a snapshot being encoded (an absolute offset).
    cut: Option<u64>,
    /// A snapshot being written, and the absolute log offset it covers.
    writing: Option<(EncodedSnapshot, u64)>,
    /// Where each write not yet synced ends (indexes into `log`).
    unsynced_ends: Vec<usize>,
    group: Vec<u8>,
}

impl SimDisk {
    /// Appends framed records as one group, in one write (not yet durable); returns the
    /// absolute offset they end at.
    pub fn write(&mut self, records: &[u8]) -> u64 {
        new_group(&mut self.group);
        self.group.extend_from_slice(records);
        seal_group(&mut self.group);
        self.log.extend_from_slice(&self.group);
        self.unsynced_ends.push(self.log.len());
        self.base + self.log.len() as u64
    }

    /// Everything written up to absolute offset `end` is durable.
    pub fn sync(&mut self, end: u64) {
        let end = end.saturating_sub(self.base).min(self.log.len() as u64) as usize;
        self.synced = self.synced.max(end);
        let synced = self.synced;
        self.unsynced_ends.retain(|e| *e > synced);
    }

    /// Syncs the log and cuts it for a snapshot of all of it.
    pub fn cut(&mut self) {
        self.cut = Some(self.cut_log());
    }

    /// Syncs the log; returns the absolute offset it ends at.
    fn cut_log(&mut self) -> u64 {
        self.sync(u64::MAX);
        self.base + self.log.len() as u64
    }

    /// Starts writing `snapshot`, which covers the log up to the last cut (all of it,
    /// without a cut).
    pub fn write_snapshot(&mut self, snapshot: EncodedSnapshot) {
        let covers = match self.cut.take() {
            Some(covers) => covers,
            None => self.cut_log(),
        };
        self.writing = Some((snapshot, covers));
    }

    /// Whether a snapshot is cut or being written.
    pub fn snapshot_in_progress(&self) -> bool {
        self.cut.is_some() || self.writing.is_some()
    }

    /// The background snapshot landed: it replaces the log prefix it covers.
    pub fn snapshot_landed(&mut self) {
        let Some((snapshot, covers)) = self.writing.take() else {
            return;
        };
        let cut = covers.saturating_sub(self.base).min(self.log.len() as u64) as usize;
        self.log.drain(..cut);
        self.synced = self.synced.saturating_sub(cut);
        for end in &mut self.unsynced_ends {
            *end = end.saturating_sub(cut);
        }
        self.base += cut as u64;
        self.snapshot = Some(snapshot);
    }

    /// Loses power: the snapshot being written is lost, and the unsynced end of the log meets
    /// a fault chosen by `rng`.
    pub fn crash(&mut self, rng: &mut StdRng) -> CrashFault {
        self.cut = None;
        self.writing = None;
        let unsynced = self.log.len() - self.synced;
        if unsynced == 0 {
            return CrashFault::Clean;
        }
        let fault = match rng.random_range(0..5u8) {
            0 => CrashFault::Lost,
            1 => CrashFault::Torn,
            2 => CrashFault::ZeroFilled,
            3 => CrashFault::Scrambled,
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
            CrashFault::Scrambled => {
                // Earlier writes landed whole; of the next one, a page is missing; later ones
                // never started.
                let landed = rng.random_range(0..self.unsynced_ends.len());
                let start = match landed {
                    0 => self.synced,
                    n => self.unsynced_ends[n - 1],
                };
                let end = self.unsynced_ends[landed];
                self.log.truncate(end);
                let page = rng.random_range(start..end) & !511;
                let page = page.max(start);
                let page_end = (page + 512).min(end);
                self.log[page..page_end].fill(0);
            }
            CrashFault::Clean | CrashFault::Kept => {}
        }
        self.unsynced_ends.clear();
        self.synced = self.log.len();
        fault
    }

    /// Bytes of log since the snapshot.
    pub fn log_bytes(&self) -> u64 {
        self.log.len() as u64
    }

    /// What recovery finds: the snapshot and the records after it. What follows the whole
    /// groups (a torn tail, or zeros) is cut off: the store writes its next group where the
    /// whole groups end. Corruption is an error.
    pub fn recover(&mut self) -> Result<(Option<Snapshot>, Vec<Record>), LogError> {
        let decoded = decode_log(&self.log)?;
        self.log.truncate(decoded.end as usize);
        self.synced = self.synced.min(self.log.len());
        let records = decoded.records;
        let snapshot = match &self.snapshot {
            Some(encoded) => Some(encoded.decode().map_err(|_| LogError {
                offset: 0,
                reason: "snapshot does not decode",
            })?),
            None => None,
        };
        Ok((snapshot, records))
    }
}
