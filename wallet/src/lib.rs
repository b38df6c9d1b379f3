//! The FastPay wallet: what a `client` process owns.
//!
//! The wallet file ([`Wallet`]: keys and client states, locked for one process, written
//! atomically) and the client's socket driver ([`Network`]: one UDP socket, requests routed
//! to the shard that owns their account, replies matched by sender address). The protocol
//! itself, what to send, when to retry, what a reply means, is `fastpay_client`'s state
//! machines; the driver only moves their bytes and keeps their clock.
//!
//! The wallet as an HTTP service for applications ([`service`]: `client serve`).
//!
//! Binary: `client`.

#![forbid(unsafe_code)]

pub mod file;
pub mod net;
pub mod service;

pub use file::{Wallet, WalletError, WalletSaver, lock_path, parse_secret};
pub use net::{NetError, Network};
