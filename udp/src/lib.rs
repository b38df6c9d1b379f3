//! Batched UDP I/O and the few OS calls fastpay needs: the only crate with unsafe code.
//!
//! What it does:
//! - moves a [`Datagrams`](fastpay_wire::Datagrams) batch through a socket with one system
//!   call each way: [`recv_batch`] (`recvmmsg`), a [`Receiver`] that turns on `UDP_GRO` and
//!   splits coalesced messages into the batch (staging what does not fit), and [`send_batch`]
//!   (`sendmmsg`, each run of same-sized datagrams to one peer as one `UDP_SEGMENT` message);
//! - sends one destination's equal-sized datagrams as one GSO message ([`SegmentBatch`],
//!   [`send_segments`]) and reads one message whole with its GRO segment size
//!   ([`recv_coalesced`]), for a client such as the load generator that talks to a few peers
//!   from several sockets;
//! - sets sockets up: [`bind_reuseport`] with buffer sizes past the sysctl limit where
//!   allowed, [`enable_gro`], and [`attach_shard_steering`], the classic BPF program that
//!   hands each datagram to the reuseport socket of the shard named in its header;
//! - and the process calls: a thread's scheduling ([`lower_thread_priority`],
//!   [`shorten_time_slice`]) and CPU time ([`process_cpu_time`] and its kin).
//!
//! What it does not do: decode, decide or keep state beyond a call, except the kernel's
//! answer to whether GSO works and a [`Receiver`]'s staged messages. It knows of the
//! protocol only the datagram size limit and the shard number's offset in the header. A
//! datagram that cannot be sent is dropped and counted for the caller; UDP may lose it, and
//! clients resend. The batch calls never block (`MSG_DONTWAIT`); the others follow the
//! socket's mode. Linux only.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment (enforced by
//! `clippy::undocumented_unsafe_blocks`), and every other crate of the workspace forbids
//! `unsafe_code`. We call libc directly rather than use quinn-udp because quinn-udp's send
//! path takes one destination per call (built for QUIC's GSO), while an authority replies
//! to many clients per batch, which is exactly what `sendmmsg` does in one system call.

#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod addr;
mod cmsg;
mod mmsg;
mod process;
mod segments;
mod socket;

pub use mmsg::{COALESCED_BYTES, Receiver, recv_batch, send_batch};
pub use process::{
    lower_thread_priority, named_threads_cpu_time, process_cpu_time, shorten_time_slice,
    thread_cpu_time,
};
pub use segments::{CoalescedRead, SegmentBatch, recv_coalesced, send_segments};
pub use socket::{
    SHARD_RECEIVE_BUFFER_BYTES, SOCKET_BUFFER_BYTES, attach_shard_steering, bind_exclusive,
    bind_reuseport, enable_gro, enable_receive_timestamps,
};
