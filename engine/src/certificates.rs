//! A shard's certificate store: every certificate the shard applied, on disk, indexed by
//! (sender, sequence number) and by (recipient, arrival index), read back to answer
//! certificate queries.
//!
//! One [redb](https://docs.rs/redb) file per shard, `<data-dir>/shard-<j>/certificates.redb`,
//! with two tables: `certificates` (sender ‖ sequence number, big-endian, → the certificate's
//! stored encoding) and `received` (recipient ‖ arrival index, big-endian, → sender ‖ sequence
//! number). Its page cache is capped at [`CACHE_BYTES`], so the memory it uses does not grow
//! with the certificates it holds.
//!
//! Durability comes from the log: a certificate is stored (in a redb transaction committed
//! without a sync) only once the log record that applied it is durable, and the log record
//! carries the certificate. The store is synced (a redb commit with `Durability::Immediate`)
//! before a snapshot lets the logs go, at most every [`SYNC_INTERVAL`] while certificates
//! arrive, and at shutdown. After a crash the store is back at its last sync, and replaying
//! the logs since the snapshot stores again what it lost; storing is idempotent (a
//! certificate already kept is skipped, so a payment never takes two arrival indexes).

use fastpay_node::{AppliedCertificate, CertificateReader, ReadError};
use fastpay_wire::codec::{decode_stored, encode_stored};
use fastpay_wire::{AccountId, CertifiedTransferOrder, SequenceNumber};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The page cache of one shard's store, in bytes: reads of recent certificates hit it, and
/// the store's memory stays this size however many certificates it holds (a million
/// certificates are about 600 MB on disk).
pub const CACHE_BYTES: usize = 8 << 20;

/// Longest time certificates stay stored but not synced while more arrive: bounds what a
/// crash makes recovery store again (the log has it all anyway) and lets redb reuse the pages
/// its unsynced commits freed. One sync a second costs nothing next to the log's syncs.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The store's file in a shard directory.
pub const FILE: &str = "certificates.redb";

const CERTIFICATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("certificates");
const RECEIVED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("received");

/// Why the certificate store failed.
#[derive(Debug, Error)]
#[error("{path}: certificate store: {source}")]
pub struct CertificateStoreError {
    /// The store's file.
    pub path: PathBuf,
    /// What redb reported.
    #[source]
    pub source: redb::Error,
}

/// A 40-byte key: an account and a big-endian number, so that an account's keys sort by
/// number.
fn key(account: &AccountId, number: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&account.0);
    key[32..].copy_from_slice(&number.to_be_bytes());
    key
}

/// A shard's certificate store, written by its log writer thread.
pub struct CertificateStore {
    db: Arc<Database>,
    path: PathBuf,
    stored: u64,
    unsynced: bool,
    last_sync: Instant,
    scratch: Vec<u8>,
}

impl CertificateStore {
    /// Opens (creating if needed) the store in shard directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, CertificateStoreError> {
        let path = dir.join(FILE);
        let fail = |source: redb::Error| CertificateStoreError {
            path: path.clone(),
            source,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| fail(e.into()))?;
        // Create the tables, so readers never meet a missing one.
        let txn = db.begin_write().map_err(|e| fail(e.into()))?;
        let stored = {
            let table = txn.open_table(CERTIFICATES).map_err(|e| fail(e.into()))?;
            txn.open_table(RECEIVED).map_err(|e| fail(e.into()))?;
            table.len().map_err(|e| fail(e.into()))?
        };
        txn.commit().map_err(|e| fail(e.into()))?;
        Ok(Self {
            db: Arc::new(db),
            path,
            stored,
            unsynced: false,
            last_sync: Instant::now(),
            scratch: Vec::new(),
        })
    }

    fn fail(&self, source: impl Into<redb::Error>) -> CertificateStoreError {
        CertificateStoreError {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    /// A reader for the shard thread (redb readers see the last commit, synced or not).
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            db: self.db.clone(),
        }
    }

    /// Stores `applied` (whose log records are durable) in one unsynced commit, skipping
    /// certificates already kept.
    pub fn store(&mut self, applied: &[AppliedCertificate]) -> Result<(), CertificateStoreError> {
        if applied.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| self.fail(e))?;
        let mut added = 0;
        {
            let mut certificates = txn.open_table(CERTIFICATES).map_err(|e| self.fail(e))?;
            let mut received = txn.open_table(RECEIVED).map_err(|e| self.fail(e))?;
            for item in applied {
                let (sender, sequence) = item.key();
                let cert_key = key(&sender, sequence.value());
                if certificates
                    .get(cert_key.as_slice())
                    .map_err(|e| self.fail(e))?
                    .is_some()
                {
                    continue;
                }
                self.scratch.clear();
                if encode_stored(&item.certificate, &mut self.scratch).is_err() {
                    continue;
                }
                certificates
                    .insert(cert_key.as_slice(), self.scratch.as_slice())
                    .map_err(|e| self.fail(e))?;
                added += 1;
                if item.credited_here {
                    let recipient = item.certificate.value.transfer.recipient;
                    let index = next_arrival(&received, &recipient).map_err(|e| self.fail(e))?;
                    received
                        .insert(key(&recipient, index).as_slice(), cert_key.as_slice())
                        .map_err(|e| self.fail(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.fail(e))?;
        self.stored += added;
        self.unsynced = true;
        Ok(())
    }

    /// Syncs what was stored since the last sync.
    pub fn sync(&mut self) -> Result<(), CertificateStoreError> {
        if !self.unsynced {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        txn.commit().map_err(|e| self.fail(e))?;
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if [`SYNC_INTERVAL`] passed since the last sync; returns whether it synced.
    pub fn sync_if_due(&mut self) -> Result<bool, CertificateStoreError> {
        if self.unsynced && self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Certificates kept.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Bytes of the store's file.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// The next arrival index of `recipient`: one past its last.
fn next_arrival(
    received: &impl ReadableTable<&'static [u8], &'static [u8]>,
    recipient: &AccountId,
) -> Result<u64, redb::StorageError> {
    let low = key(recipient, 0);
    let high = key(recipient, u64::MAX);
    let last = received
        .range(low.as_slice()..=high.as_slice())?
        .next_back();
    Ok(match last {
        Some(entry) => {
            let (k, _) = entry?;
            let bytes: [u8; 8] = k.value()[32..40].try_into().unwrap_or([0xff; 8]);
            u64::from_be_bytes(bytes).saturating_add(1)
        }
        None => 0,
    })
}

/// Reads a shard's certificate store (from the shard thread).
pub struct StoreReader {
    db: Arc<Database>,
}

impl StoreReader {
    fn get(
        table: &impl ReadableTable<&'static [u8], &'static [u8]>,
        key: &[u8],
    ) -> Result<Option<CertifiedTransferOrder>, ReadError> {
        let Some(value) = table.get(key).map_err(|_| ReadError)? else {
            return Ok(None);
        };
        decode_stored(value.value())
            .map(Some)
            .map_err(|_| ReadError)
    }
}

impl CertificateReader for StoreReader {
    fn certificate(
        &self,
        sender: &AccountId,
        sequence: SequenceNumber,
    ) -> Result<Option<CertifiedTransferOrder>, ReadError> {
        let txn = self.db.begin_read().map_err(|_| ReadError)?;
        let table = txn.open_table(CERTIFICATES).map_err(|_| ReadError)?;
        Self::get(&table, key(sender, sequence.value()).as_slice())
    }

    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<CertifiedTransferOrder>,
    ) -> Result<u64, ReadError> {
        let txn = self.db.begin_read().map_err(|_| ReadError)?;
        let received = txn.open_table(RECEIVED).map_err(|_| ReadError)?;
        let certificates = txn.open_table(CERTIFICATES).map_err(|_| ReadError)?;
        let end = next_arrival(&received, recipient).map_err(|_| ReadError)?;
        let low = key(recipient, from);
        let high = key(recipient, u64::MAX);
        for entry in received
            .range(low.as_slice()..=high.as_slice())
            .map_err(|_| ReadError)?
            .take(max)
        {
            let (_, cert_key) = entry.map_err(|_| ReadError)?;
            if let Some(certificate) = Self::get(&certificates, cert_key.value())? {
                out.push(certificate);
            }
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{Amount, CommitteeId, KeyPair, Transfer, TransferOrder};

    fn certificate(sender: u8, recipient: u8, sequence: u64) -> CertifiedTransferOrder {
        let key = KeyPair::from_seed([sender; 32]);
        let order = TransferOrder::new(
            Transfer {
                sender: key.account(),
                recipient: KeyPair::from_seed([recipient; 32]).account(),
                amount: Amount::new(1 + sequence),
                sequence_number: SequenceNumber::new(sequence),
                user_data: None,
            },
            &CommitteeId([0; 32]),
            &key,
        );
        CertifiedTransferOrder {
            value: order,
            signatures: Vec::new(),
        }
    }

    fn applied(sender: u8, recipient: u8, sequence: u64) -> AppliedCertificate {
        AppliedCertificate {
            certificate: certificate(sender, recipient, sequence),
            credited_here: true,
        }
    }

    #[test]
    fn certificates_are_kept_once_indexed_both_ways_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let bob = KeyPair::from_seed([2; 32]).account();
        let alice = KeyPair::from_seed([1; 32]).account();
        {
            let mut store = CertificateStore::open(dir.path()).unwrap();
            store
                .store(&[applied(1, 2, 0), applied(1, 2, 1), applied(3, 2, 0)])
                .unwrap();
            // Replayed after a restart: nothing is kept twice, no second arrival index.
            store.store(&[applied(1, 2, 1), applied(1, 2, 2)]).unwrap();
            assert_eq!(store.stored(), 4);
            store.sync().unwrap();
            assert!(store.file_bytes() > 0);
        }
        let store = CertificateStore::open(dir.path()).unwrap();
        assert_eq!(store.stored(), 4);
        let reader = store.reader();
        assert_eq!(
            reader
                .certificate(&alice, SequenceNumber::new(1))
                .unwrap()
                .unwrap(),
            certificate(1, 2, 1)
        );
        assert_eq!(
            reader.certificate(&alice, SequenceNumber::new(9)).unwrap(),
            None
        );
        let mut page = Vec::new();
        assert_eq!(reader.received(&bob, 1, 2, &mut page).unwrap(), 4);
        assert_eq!(page, vec![certificate(1, 2, 1), certificate(3, 2, 0)]);
        page.clear();
        assert_eq!(reader.received(&bob, 4, 16, &mut page).unwrap(), 4);
        assert!(page.is_empty());
        assert_eq!(reader.received(&alice, 0, 16, &mut page).unwrap(), 0);
    }

    #[test]
    fn an_unsynced_store_loses_only_what_replay_stores_again() {
        let dir = tempfile::tempdir().unwrap();
        let bob = KeyPair::from_seed([2; 32]).account();
        let mut store = CertificateStore::open(dir.path()).unwrap();
        store.store(&[applied(1, 2, 0)]).unwrap();
        store.sync().unwrap();
        store.store(&[applied(1, 2, 1)]).unwrap();
        // A crash: the unsynced commit may be lost (redb goes back to its last sync).
        drop(store);
        let mut store = CertificateStore::open(dir.path()).unwrap();
        store.store(&[applied(1, 2, 0), applied(1, 2, 1)]).unwrap();
        let mut page = Vec::new();
        assert_eq!(store.reader().received(&bob, 0, 16, &mut page).unwrap(), 2);
        assert_eq!(page, vec![certificate(1, 2, 0), certificate(1, 2, 1)]);
    }
}
