//! The certificates a shard keeps: what the node hands the runtime's certificate store to
//! keep ([`AppliedCertificate`]), and how the node reads them back to answer certificate
//! queries ([`CertificateReader`]).
//!
//! The node decides nothing about storage: it emits every certificate it applies (a
//! confirmation of one of its accounts' transfers, or a payment credited to one of its
//! accounts), and the runtime stores each one once its log record is durable. A payment
//! credited here carries its arrival index: the node numbers them in the order it applies
//! them, a number that is part of its state (snapshotted, and given again by replaying the
//! log), so storing is a blind, idempotent write: replaying a log after a restart writes the
//! same keys with the same values, and the store reads nothing to write. The store must keep
//! everything whose records a snapshot lets go of. [`MemoryCertificates`] is the in-memory store the simulation and tests use; the engine
//! keeps them on disk.

use fastpay_wire::{AccountId, CertifiedTransferOrder, SequenceNumber};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A certificate this shard applied, for its certificate store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCertificate {
    /// The certificate.
    pub certificate: CertifiedTransferOrder,
    /// When its recipient (another account than its sender) was credited on this shard:
    /// the payment's arrival index here (the shard's count of payments credited before it).
    pub arrival: Option<u64>,
}

impl AppliedCertificate {
    /// The key the certificate is kept under: its sender and sequence number.
    pub fn key(&self) -> (AccountId, SequenceNumber) {
        let t = &self.certificate.value.transfer;
        (t.sender, t.sequence_number)
    }
}

/// The store could not be read (a disk error): the query goes unanswered, the client asks
/// again or asks another authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the certificate store could not be read")]
pub struct ReadError;

/// Reads a shard's certificate store.
pub trait CertificateReader: Send {
    /// The certificate of `sender`'s transfer number `sequence`, if kept.
    fn certificate(
        &self,
        sender: &AccountId,
        sequence: SequenceNumber,
    ) -> Result<Option<CertifiedTransferOrder>, ReadError>;

    /// Appends to `out` at most `max` payments to `recipient` with their arrival indexes,
    /// from index `from` on, in arrival order; returns the store's end: every payment with a
    /// lower index (to any account) is stored.
    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, CertifiedTransferOrder)>,
    ) -> Result<u64, ReadError>;
}

#[derive(Debug, Default)]
struct Memory {
    by_key: HashMap<(AccountId, SequenceNumber), CertifiedTransferOrder>,
    received: HashMap<AccountId, BTreeMap<u64, (AccountId, SequenceNumber)>>,
    end: u64,
}

/// A certificate store in memory, shared between the node (reads) and whoever stores (the
/// simulation, tests). Unbounded: not for the engine.
#[derive(Debug, Clone, Default)]
pub struct MemoryCertificates(Arc<Mutex<Memory>>);

impl MemoryCertificates {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `applied` (writing a key again with its value changes nothing).
    pub fn store(&self, applied: &[AppliedCertificate]) {
        let Ok(mut memory) = self.0.lock() else {
            return;
        };
        for item in applied {
            let key = item.key();
            memory.by_key.insert(key, item.certificate.clone());
            if let Some(arrival) = item.arrival {
                let recipient = item.certificate.value.transfer.recipient;
                memory
                    .received
                    .entry(recipient)
                    .or_default()
                    .insert(arrival, key);
                memory.end = memory.end.max(arrival + 1);
            }
        }
    }

    /// How many certificates are kept.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.by_key.len())
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every certificate kept, by key (for checks).
    pub fn all(&self) -> BTreeMap<(AccountId, SequenceNumber), CertifiedTransferOrder> {
        self.0.lock().map_or_else(
            |_| BTreeMap::new(),
            |m| m.by_key.iter().map(|(k, v)| (*k, v.clone())).collect(),
        )
    }
}

impl CertificateReader for MemoryCertificates {
    fn certificate(
        &self,
        sender: &AccountId,
        sequence: SequenceNumber,
    ) -> Result<Option<CertifiedTransferOrder>, ReadError> {
        let memory = self.0.lock().map_err(|_| ReadError)?;
        Ok(memory.by_key.get(&(*sender, sequence)).cloned())
    }

    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, CertifiedTransferOrder)>,
    ) -> Result<u64, ReadError> {
        let memory = self.0.lock().map_err(|_| ReadError)?;
        if let Some(keys) = memory.received.get(recipient) {
            for (arrival, key) in keys.range(from..).take(max) {
                if let Some(certificate) = memory.by_key.get(key) {
                    out.push((*arrival, certificate.clone()));
                }
            }
        }
        Ok(memory.end)
    }
}
