//! Socket set-up: the `SO_REUSEPORT` bind of a shard socket, buffer sizes past the sysctl
//! limit, `UDP_GRO`, and the BPF program that steers datagrams to shards.

use crate::cmsg::UDP_GRO;
use fastpay_wire::codec::SHARD_OFFSET;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Socket buffer size asked for, in bytes: room for bursts of a few thousand datagrams while a
/// shard is busy verifying a batch. The kernel caps it at `net.core.{r,w}mem_max`.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// Receive buffer an authority's shard sockets ask for: room for tens of thousands of
/// datagrams, so a flood that arrives while a shard waits for its log's fsync does not push
/// honest requests out. Granted in full to a privileged process (`SO_RCVBUFFORCE`);
/// otherwise capped at `net.core.rmem_max`.
pub const SHARD_RECEIVE_BUFFER_BYTES: usize = 16 << 20;

/// `SO_ATTACH_REUSEPORT_CBPF` from `asm-generic/socket.h` (libc does not export it for glibc).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// A nonblocking UDP socket bound to `addr` with `SO_REUSEPORT`, so that every shard of an
/// authority can bind the same port and join one reuseport group.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    bind_sized(addr, true)
}

/// A nonblocking UDP socket bound to `addr` alone (no `SO_REUSEPORT`: a second bind fails),
/// with buffers sized like a shard's public socket: for the links between shard processes,
/// where a burst of junk must not push real frames out of a default-sized buffer.
pub fn bind_exclusive(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    bind_sized(addr, false)
}

fn bind_sized(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    // Best effort: an unprivileged process gets at most the sysctl maximum.
    if force_buffer(&socket, libc::SO_RCVBUFFORCE, SHARD_RECEIVE_BUFFER_BYTES).is_err() {
        let _ = socket.set_recv_buffer_size(SHARD_RECEIVE_BUFFER_BYTES);
    }
    if force_buffer(&socket, libc::SO_SNDBUFFORCE, SOCKET_BUFFER_BYTES).is_err() {
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Sets a socket buffer size past the sysctl maximum (`SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`);
/// fails without `CAP_NET_ADMIN`.
fn force_buffer(socket: &impl AsRawFd, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, option, value)
}

/// Sets a socket option whose value is an `int`.
pub(crate) fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to deliver a sender's GSO batch to `socket` as one message (`UDP_GRO`),
/// which [`Receiver`](crate::Receiver) and [`recv_coalesced`](crate::recv_coalesced) split;
/// `false` where it refuses (then every message is one datagram).
pub fn enable_gro(socket: &impl AsRawFd) -> bool {
    set_int_option(socket, libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Asks the kernel to stamp each datagram `socket` receives with its arrival time
/// (`SO_TIMESTAMPNS`), which the batch receives turn into [`Datagrams::waited`](fastpay_wire::Datagrams::waited).
pub fn enable_receive_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Attaches to `socket`'s reuseport group a classic BPF program that returns the big-endian
/// shard number at [`SHARD_OFFSET`] of the UDP payload: the kernel then hands the datagram to
/// the group's socket with that index (sockets are indexed in binding order, so shard `j`'s
/// socket must be the `j`-th bound). An index past the group, or a datagram too short to hold
/// a header, falls back to the kernel's flow hash.
pub fn attach_shard_steering(socket: &impl AsRawFd) -> io::Result<()> {
    let mut program = [
        libc::sock_filter {
            // Load the 32-bit word at the shard offset; BPF word loads are big-endian.
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: SHARD_OFFSET as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies the
    // program during setsockopt and keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
