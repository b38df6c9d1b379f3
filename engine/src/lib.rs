//! The FastPay authority runtime.
//!
//! This crate will own every socket, thread, channel, clock and file of an authority: pinned
//! shard threads, each with its own `SO_REUSEPORT` UDP socket polled with mio, batched
//! `recvmmsg`/`sendmmsg`, batch signature verification and cross-shard queues. The protocol
//! logic it drives lives in `fastpay-authority` and stays pure.
//!
//! Not built yet: it is the subject of the engine issue.

#![forbid(unsafe_code)]
