//! One shard of a FastPay authority as a sans-IO state machine.
//!
//! [`ShardNode`] owns everything a shard decides: the per-batch pipeline (decode, cheap checks,
//! batched signature verification, commit), the credit links to the authority's other shards
//! (one numbering, one outbox, one acknowledgement scheme, one de-duplication:
//! [`links`]), the records it logs ([`log`]) and recovery from them. It takes datagrams,
//! frames and the time as arguments and returns replies, frames and records as values; it
//! never touches a socket, a thread, a clock or a file. The engine's runtime moves its
//! effects to sockets, queues and disks; the simulation moves them through a faulty network
//! and simulated disks.
//!
//! It does not own the protocol rules themselves (those are `fastpay-authority`'s pure shard
//! state) nor the wire format (`fastpay-wire`).

#![forbid(unsafe_code)]

pub mod certs;
pub mod counters;
pub mod links;
pub mod log;
mod node;
pub mod redeem;

pub use certs::{AppliedCertificate, CertificateReader, MemoryCertificates, ReadError};
pub use links::{CreditLinks, LINK_RETRY, LINK_WINDOW, Transport};
pub use node::{
    CONFIRMATION_SHED_FACTOR, DEFAULT_SHED_AFTER, FORWARD_QUEUE, LogBatch, NodeConfig,
    SNAPSHOT_AFTER_BYTES, ShardNode,
};
pub use redeem::RedeemApprover;
