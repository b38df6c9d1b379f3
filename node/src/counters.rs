//! Per-shard counters by named outcome. Shard threads bump them with relaxed atomics (one
//! writer each); the server prints them on a cadence and at exit.

use fastpay_authority::AuthorityError;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident => $label:literal,)*) => {
        /// What happened to an input.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $($(#[doc = $doc])* $name,)*
        }

        impl Counter {
            /// Every counter, in display order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];

            /// The counter's name in reports.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Counter::$name => $label,)*
                }
            }

            /// What the counter counts (its doc comment), for metrics' help text.
            pub const fn help(self) -> &'static str {
                match self {
                    $(Counter::$name => concat!($($doc),*),)*
                }
            }
        }
    };
}

counters! {
    /// Datagrams read from the socket.
    Received => "received",
    /// Votes sent (new or replayed).
    Voted => "voted",
    /// Confirmations applied or acknowledged again.
    Confirmed => "confirmed",
    /// Cross-shard credits applied.
    Credited => "credited",
    /// Duplicate credits ignored.
    DuplicateCredit => "duplicate_credit",
    /// Account queries answered.
    Queried => "queried",
    /// Certificate queries answered (a certificate, a page, or a typed "not here").
    CertificateQueries => "certificate_queries",
    /// Certificates sent in answers to certificate queries.
    CertificatesServed => "certificates_served",
    /// Datagrams that did not decode.
    DecodeError => "decode_error",
    /// Datagrams for another shard, handed over in process.
    WrongShard => "wrong_shard_hop",
    /// Datagrams naming a shard this authority does not have.
    NoSuchShard => "no_such_shard",
    /// Signatures or keys that did not verify.
    BadSignature => "bad_signature",
    /// Orders for an already confirmed sequence number.
    StaleSequence => "stale_sequence",
    /// Orders or certificates ahead of this authority's view.
    FutureSequence => "future_sequence",
    /// Orders the balance does not cover.
    InsufficientFunds => "insufficient_funds",
    /// Orders conflicting with a pending vote.
    ConflictingOrder => "conflicting_order",
    /// Requests about unknown accounts.
    UnknownAccount => "unknown_account",
    /// Certificates without a valid quorum.
    InvalidCertificate => "invalid_certificate",
    /// Other refusals (zero amount, overflow).
    OtherRefusal => "other_refusal",
    /// Messages an authority does not take (votes, replies).
    Unexpected => "unexpected",
    /// Credits parked in a backlog because a cross-shard queue was full.
    Backlog => "backlog",
    /// Handovers dropped because the destination's queue was full.
    HandoverDropped => "handover_dropped",
    /// Link frames refused (bad tag, malformed, not for this shard).
    LinkRefused => "link_refused",
    /// Datagrams on the link port from addresses that are not this authority's shards,
    /// dropped before any hashing.
    LinkStranger => "link_stranger",
    /// Credits sent to another shard process.
    LinkCredits => "link_credits_sent",
    /// Replies not sent because they were larger than their request (anti-amplification).
    AmplificationRefused => "amplification_refused",
    /// Replies dropped by the socket (full send buffer).
    SendDropped => "send_dropped",
    /// Orders refused as `Overloaded` because they waited in the kernel longer than the
    /// shedding budget.
    ShedOrders => "shed_orders",
    /// Account queries refused as `Overloaded` (same budget as orders).
    ShedQueries => "shed_queries",
    /// Confirmations refused as `Overloaded` (a budget four times the orders').
    ShedConfirmations => "shed_confirmations",
    /// Signatures verified.
    SignaturesChecked => "signatures_checked",
    /// Log commits made durable (one fdatasync each).
    Fsyncs => "fsyncs",
    /// Bytes of log and snapshot on disk (a gauge).
    DiskBytes => "disk_bytes",
    /// Certificates in the shard's certificate store (a gauge; an estimate: the store's count
    /// when it opened plus those written since, a replay's rewrites included).
    CertificatesStored => "certificates_stored",
    /// Bytes of the shard's certificate store on disk (a gauge, updated when it syncs).
    CertificateStoreBytes => "certificate_store_bytes",
    /// Certificates durable in the log and not yet written to the certificate store: how far
    /// the store is behind (a gauge, set at each log commit; queries read them from memory).
    CertificatesUnstored => "certificates_unstored",
    /// Credits sent and not yet known to be applied by their recipient (a gauge).
    Outbox => "outbox",
    /// Frames waiting in the queues from the process's other shards (a gauge, set about once
    /// a second).
    QueuedFrames => "queued_frames",
    /// Frames parked because the queue to another shard was full (a gauge, set about once a
    /// second).
    BacklogFrames => "backlog_frames",
    /// Log appends handed to the writer and not yet durable (a gauge, set about once a
    /// second).
    LogAppendsInFlight => "log_appends_in_flight",
    /// Accounts the shard holds (a gauge, set about once a second).
    Accounts => "accounts",
    /// Batches processed.
    Batches => "batches",
    /// Redeems on the primary chain approved (signed with the authority's secp256k1 key).
    RedeemsApproved => "redeems_approved",
    /// Deposits from the primary chain credited to this shard's accounts.
    DepositsCredited => "deposits_credited",
    /// Deposit batches refused (not continuing from the shard's cursor): a follower bug.
    DepositBatchesRefused => "deposit_batches_refused",
    /// Units credited from deposits over the shard's life, from its durable state (a gauge,
    /// for the supply audit).
    DepositedUnits => "deposited_units",
    /// The index of the next deposit this shard looks at (a gauge).
    DepositNextIndex => "deposit_next_index",
    /// Confirmed primary-chain blocks not yet scanned for deposits (a gauge, set by the
    /// follower).
    PrimaryBlocksBehind => "primary_blocks_behind",
    /// Requests to the primary chain's endpoint that failed or returned what the follower
    /// refused.
    PrimaryRpcErrors => "primary_rpc_errors",
    /// CPU time the shard's thread used, in milliseconds (a gauge, set about once a second
    /// and when the shard stops).
    CpuMillis => "cpu_ms",
}

/// Whether a [`Counter`] only goes up or is a level set from time to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// Only ever added to.
    Total,
    /// Set to the current level ([`ShardCounters::set`]).
    Gauge,
}

impl Counter {
    /// Whether the counter only goes up or is a level.
    pub const fn kind(self) -> CounterKind {
        match self {
            Counter::DiskBytes
            | Counter::CertificatesStored
            | Counter::CertificateStoreBytes
            | Counter::CertificatesUnstored
            | Counter::Outbox
            | Counter::QueuedFrames
            | Counter::BacklogFrames
            | Counter::LogAppendsInFlight
            | Counter::Accounts
            | Counter::DepositedUnits
            | Counter::DepositNextIndex
            | Counter::PrimaryBlocksBehind
            | Counter::CpuMillis => CounterKind::Gauge,
            _ => CounterKind::Total,
        }
    }

    /// The counter for a refusal.
    pub fn for_error(error: &AuthorityError) -> Counter {
        match error {
            AuthorityError::WrongShard { .. } => Counter::WrongShard,
            AuthorityError::UnknownAccount(_) => Counter::UnknownAccount,
            AuthorityError::InvalidKey(_) | AuthorityError::InvalidSignature => {
                Counter::BadSignature
            }
            AuthorityError::StaleSequenceNumber { .. } => Counter::StaleSequence,
            AuthorityError::MissingEarlierConfirmations { .. } => Counter::FutureSequence,
            AuthorityError::InsufficientFunds { .. } => Counter::InsufficientFunds,
            AuthorityError::ConflictingOrder(_) => Counter::ConflictingOrder,
            AuthorityError::InvalidCertificate(_) | AuthorityError::NotCrossShard => {
                Counter::InvalidCertificate
            }
            AuthorityError::ZeroAmount
            | AuthorityError::Arithmetic(_)
            | AuthorityError::NotAnExit => Counter::OtherRefusal,
        }
    }
}

const COUNTERS: usize = Counter::ALL.len();

/// One shard's counters.
#[derive(Debug)]
pub struct ShardCounters {
    values: [AtomicU64; COUNTERS],
}

impl Default for ShardCounters {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ShardCounters {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(&self, counter: Counter, value: u64) {
        self.values[counter as usize].store(value, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }
}

/// A one-line report of the non-zero counters of each shard, as `shard N: name=value ...`.
pub fn report(shards: &[impl AsRef<ShardCounters>]) -> String {
    let mut out = String::new();
    for (i, shard) in shards.iter().enumerate() {
        let _ = write!(out, "shard {i}:");
        for counter in Counter::ALL {
            let value = shard.as_ref().get(*counter);
            if value != 0 {
                let _ = write!(out, " {}={value}", counter.label());
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reports_non_zero_counters_by_name() {
        let shards = [
            Arc::new(ShardCounters::default()),
            Arc::new(ShardCounters::default()),
        ];
        shards[0].bump(Counter::Voted);
        shards[1].add(Counter::DecodeError, 3);
        assert_eq!(
            report(&shards),
            "shard 0: voted=1\nshard 1: decode_error=3\n"
        );
    }

    #[test]
    fn help_is_the_doc_comment() {
        assert_eq!(
            Counter::Received.help().trim(),
            "Datagrams read from the socket."
        );
        assert!(
            Counter::ALL
                .iter()
                .all(|counter| !counter.help().trim().is_empty())
        );
        assert_eq!(Counter::DiskBytes.kind(), CounterKind::Gauge);
        assert_eq!(Counter::Voted.kind(), CounterKind::Total);
    }
}
