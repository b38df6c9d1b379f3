//! The certificates a shard keeps: what the node hands the runtime's certificate store to
//! keep ([`AppliedCertificate`]), and how the node reads them back to answer certificate
//! queries ([`CertificateReader`]).
//!
//! The node decides nothing about storage: it emits every certificate it applies (a
//! confirmation of one of its accounts' transfers, or a payment credited to one of its
//! accounts), and the runtime stores each one once its log record is durable. Storing is
//! idempotent (a certificate already kept is skipped, so replaying a log after a restart
//! stores nothing twice), and the store must keep everything whose records a snapshot lets go
//! of. [`MemoryCertificates`] is the in-memory store the simulation and tests use; the engine
//! keeps them on disk.

use fastpay_wire::{AccountId, CertifiedTransferOrder, SequenceNumber};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A certificate this shard applied, for its certificate store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCertificate {
    /// The certificate.
    pub certificate: CertifiedTransferOrder,
    /// Whether its recipient (another account than its sender) was credited on this shard:
    /// the payment then takes the recipient's next arrival index here.
    pub credited_here: bool,
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

    /// Appends to `out` at most `max` certificates of payments to `recipient`, from arrival
    /// index `from` on, in arrival order; returns how many payments to `recipient` are kept.
    fn received(
        &self,
        recipient: &AccountId,
        from: u64,
        max: usize,
        out: &mut Vec<CertifiedTransferOrder>,
    ) -> Result<u64, ReadError>;
}

#[derive(Debug, Default)]
struct Memory {
    by_key: HashMap<(AccountId, SequenceNumber), CertifiedTransferOrder>,
    received: HashMap<AccountId, Vec<(AccountId, SequenceNumber)>>,
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

    /// Stores `applied`, skipping certificates already kept.
    pub fn store(&self, applied: &[AppliedCertificate]) {
        let Ok(mut memory) = self.0.lock() else {
            return;
        };
        for item in applied {
            let key = item.key();
            if memory.by_key.contains_key(&key) {
                continue;
            }
            memory.by_key.insert(key, item.certificate.clone());
            if item.credited_here {
                let recipient = item.certificate.value.transfer.recipient;
                memory.received.entry(recipient).or_default().push(key);
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
        out: &mut Vec<CertifiedTransferOrder>,
    ) -> Result<u64, ReadError> {
        let memory = self.0.lock().map_err(|_| ReadError)?;
        let Some(keys) = memory.received.get(recipient) else {
            return Ok(0);
        };
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        for key in keys.iter().skip(start).take(max) {
            if let Some(certificate) = memory.by_key.get(key) {
                out.push(certificate.clone());
            }
        }
        Ok(keys.len() as u64)
    }
}
