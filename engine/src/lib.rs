//! The FastPay authority runtime.
//!
//! This crate owns every socket, thread, channel and file of an authority. Each shard runs on
//! its own pinned thread with its own `SO_REUSEPORT` UDP socket on the authority's one port,
//! polled with mio; a classic BPF program steers each datagram to the socket of the shard named
//! in its header, and the rare misrouted one is handed over in process. Datagrams move in
//! batches (`recvmmsg`/`sendmmsg`), and cross-shard frames travel over bounded crossbeam
//! queues (or a link socket to shards in other processes). It decides nothing: each shard's
//! decisions (batch verification, the credit links, what to log) are a
//! `fastpay_node::ShardNode`'s, which the runtime only feeds and drains.
//! The system calls behind the sockets (the batches, GSO/GRO, the reuseport bind, the
//! steering program) live in `fastpay-udp`.
//!
//! Binaries: `server` (generate keys, run an authority) and `bench` (one authority in process,
//! fed pre-signed orders). The wallet and its `client` binary are `fastpay-wallet`'s.

#![forbid(unsafe_code)]

pub mod certificates;
pub mod check;
pub mod config;
pub use fastpay_node::counters;
pub mod deposits;
#[cfg(feature = "primary")]
pub mod follower;
pub mod link;
mod log_writer;
pub mod logging;
pub mod metrics;
pub mod metrics_http;
pub mod network_record;
pub mod runtime;
mod shard_loop;
mod snapshot_buffer;
pub mod store;
