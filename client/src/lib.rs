//! A FastPay account holder as a pure state machine.
//!
//! [`ClientState`] builds and signs transfer orders, checks the votes that come back and
//! forms a certificate once a quorum agrees, then collects confirmation acknowledgements from
//! a quorum. It survives up to f silent or lying authorities: a vote with a bad signature, from
//! a stranger, or for another order is refused without disturbing the votes already held.
//! It also tracks its balance, sequence number and the certificates it sent and received, and
//! says which certificates an authority that lags behind needs.
//!
//! It sends nothing and keeps no clock: the caller delivers messages, decides when to retry,
//! and sends what the state machine returns.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod state;

pub use state::{ClientError, ClientSnapshot, ClientState, Learned, Phase, route};
