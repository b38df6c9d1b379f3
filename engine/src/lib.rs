//! The FastPay authority runtime.
//!
//! This crate owns every socket, thread, channel and file of an authority. Each shard runs on
//! its own pinned thread with its own `SO_REUSEPORT` UDP socket on the authority's one port,
//! polled with mio; a classic BPF program steers each datagram to the socket of the shard named
//! in its header, and the rare misrouted one is handed over in process. Datagrams move in
//! batches (`recvmmsg`/`sendmmsg`), signatures of a batch are verified together, and
//! cross-shard credits travel over bounded crossbeam queues. The protocol logic it drives lives
//! in `fastpay-authority` and stays pure; the system calls behind the sockets (the batches,
//! GSO/GRO, the reuseport bind, the steering program) live in `fastpay-udp`.
//!
//! Binaries: `server` (generate keys, run an authority) and `client` (the wallet).

#![forbid(unsafe_code)]

pub mod config;
pub mod counters;
pub mod link;
/// Talking to the committee from a client.
pub mod net_client;
pub mod pipeline;
pub mod runtime;
pub mod store;
pub mod wallet;
