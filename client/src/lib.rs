//! A FastPay account holder as a pure state machine.
//!
//! [`ClientState`] builds and signs transfer orders, checks the votes that come back and
//! forms a certificate once a quorum agrees, then collects confirmation acknowledgements from
//! a quorum. It survives up to f silent or lying authorities: a vote with a bad signature, from
//! a stranger, or for another order is refused without disturbing the votes already held.
//! It also tracks its balance, sequence number and the certificates it sent and received, and
//! says which certificates an authority that lags behind needs.
//!
//! On top of it, the client's protocols are state machines too ([`Exchange`]): driving
//! transfers to their certificates and confirmations ([`Transfers`]), asking the committee
//! ([`Query`], [`FetchCertificate`], [`FetchReceived`]), pushing confirmations to lagging
//! authorities ([`Push`]), bringing an account up to date ([`SyncAccount`]), collecting the
//! committee's approvals of a redeem on the primary chain ([`CollectApprovals`]), and
//! counting every shard's money for the supply audit ([`CountSupply`]). Each takes replies and
//! `now`, and returns what to send, when to save the wallet, and when to wake it next; the
//! wallet's socket loop and the simulator drive the same machines.
//!
//! Nothing here sends, sleeps or reads a clock.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod exchange;
mod fetch;
mod push;
mod redeem;
mod state;
mod supply;
mod sync;
mod transfers;

pub use exchange::{Action, Exchange, QUORUM_GRACE, RETRY_INTERVAL, Timing, Transmit};
pub use fetch::{
    FetchCertificate, FetchReceived, MAX_RECEIVED_PER_SYNC, Query, QueryAnswer, ReceivedList,
    certificate_query_size,
};
pub use push::{MAX_PUSH_CHAIN, Push};
pub use redeem::{ApprovalAnswer, CollectApprovals};
pub use state::{
    ClientError, ClientSnapshot, ClientState, Learned, Phase, Route, credited_deposits, route,
};
pub use supply::{AuthoritySupply, CountSupply, SupplyReports, audit_supply};
pub use sync::{SyncAccount, SyncError, SyncReport};
pub use transfers::{
    DriveError, DriveStats, Goal, SAVE_BATCH, SAVE_DELAY, Transfers, WINDOW, hand_over,
};
