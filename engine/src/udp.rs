//! Batched UDP: `recvmmsg`/`sendmmsg` into preallocated buffers, `SO_REUSEPORT` sockets and
//! the classic BPF program that steers each datagram to the shard named in its header.
//!
//! This is the engine's only `unsafe` code: the two batch system calls and three `setsockopt`s.
//! We call libc directly rather than quinn-udp because quinn-udp's send path takes one
//! destination per call (built for QUIC's GSO), while an authority replies to many clients per
//! batch, which is exactly what `sendmmsg` does in one system call.

#![allow(unsafe_code)]

use fastpay_wire::codec::{MAX_DATAGRAM_SIZE, SHARD_OFFSET};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams moved per system call. 64 amortises the call over many datagrams while keeping
/// the buffers (64 × 8 KiB each way) within a shard core's L2; larger batches did not raise
/// loopback throughput in our runs.
pub const BATCH: usize = 64;

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
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
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
    // SAFETY: the option value is a c_int that lives across the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
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

/// A batch of datagrams with their peers: filled by [`recv_batch`], drained by [`send_batch`].
/// Allocated once per shard; the hot path reuses it.
pub struct Datagrams {
    buffers: Box<[[u8; MAX_DATAGRAM_SIZE]]>,
    lens: [usize; BATCH],
    peers: [SocketAddr; BATCH],
    truncated: [bool; BATCH],
    count: usize,
}

impl Default for Datagrams {
    fn default() -> Self {
        Self::new()
    }
}

impl Datagrams {
    /// An empty batch with its buffers.
    pub fn new() -> Self {
        Self {
            buffers: vec![[0u8; MAX_DATAGRAM_SIZE]; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            peers: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether no more datagrams fit.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Datagram `i`: its peer, its bytes, and whether it was longer than the buffer.
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8], bool) {
        (
            self.peers[i],
            &self.buffers[i][..self.lens[i]],
            self.truncated[i],
        )
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Reserves the next slot for `peer`; returns its buffer, or `None` when full. Call
    /// [`commit`](Self::commit) with the length written.
    pub fn next_buffer(&mut self, peer: SocketAddr) -> Option<&mut [u8; MAX_DATAGRAM_SIZE]> {
        if self.is_full() {
            return None;
        }
        self.peers[self.count] = peer;
        self.truncated[self.count] = false;
        Some(&mut self.buffers[self.count])
    }

    /// Keeps the slot reserved by `next_buffer`, holding `len` bytes.
    pub fn commit(&mut self, len: usize) {
        self.lens[self.count] = len.min(MAX_DATAGRAM_SIZE);
        self.count = self.count.saturating_add(1).min(BATCH);
    }

    /// Copies `bytes` for `peer` into the next slot; `false` when full.
    pub fn push(&mut self, peer: SocketAddr, bytes: &[u8]) -> bool {
        let len = bytes.len().min(MAX_DATAGRAM_SIZE);
        match self.next_buffer(peer) {
            Some(buffer) => {
                buffer[..len].copy_from_slice(&bytes[..len]);
                self.commit(len);
                true
            }
            None => false,
        }
    }
}

fn to_socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a `sockaddr_in` for AF_INET, and `sockaddr_storage` is
            // large and aligned enough for it.
            let addr =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for AF_INET6 and `sockaddr_in6`.
            let addr = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                addr.sin6_flowinfo,
                addr.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: `sockaddr_storage` is large and aligned enough for a `sockaddr_in`.
            let out = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for `sockaddr_in6`.
            let out = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_scope_id = v6.scope_id();
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Reads up to `max` datagrams (bounded by the free room of `batch`) in one `recvmmsg`,
/// appending to it. Returns how many arrived; `Ok(0)` when the socket is drained.
pub fn recv_batch(fd: RawFd, batch: &mut Datagrams, max: usize) -> io::Result<usize> {
    let start = batch.count;
    let room = BATCH.saturating_sub(start).min(max);
    if room == 0 {
        return Ok(0);
    }
    // SAFETY: zeroed iovecs, sockaddr_storages and mmsghdrs are valid values for these C
    // structs; every pointer is set below before the kernel reads it.
    let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for i in 0..room {
        iovecs[i] = libc::iovec {
            iov_base: batch.buffers[start + i].as_mut_ptr().cast(),
            iov_len: MAX_DATAGRAM_SIZE,
        };
        let header = &mut headers[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        header.msg_iov = &mut iovecs[i];
        header.msg_iovlen = 1;
    }
    // SAFETY: `headers[..room]` point at live buffers (`batch.buffers`, `iovecs`, `names`)
    // that outlive the call; MSG_DONTWAIT makes it nonblocking; no timeout pointer.
    let received = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            room as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if received < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Ok(0);
        }
        return Err(error);
    }
    let received = usize::try_from(received).unwrap_or(0).min(room);
    let mut kept = 0;
    for i in 0..received {
        let Some(peer) = to_socket_addr(&names[i]) else {
            continue;
        };
        let slot = start + kept;
        if slot != start + i {
            batch.buffers.copy_within(start + i..start + i + 1, slot);
        }
        batch.peers[slot] = peer;
        batch.lens[slot] = (headers[i].msg_len as usize).min(MAX_DATAGRAM_SIZE);
        batch.truncated[slot] = headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        kept += 1;
    }
    batch.count = start + kept;
    Ok(received)
}

/// Sends every datagram of `batch` with as few `sendmmsg` calls as the kernel allows, then
/// empties it. Returns how many were dropped because the socket buffer was full (UDP gives no
/// delivery promise; clients retry) or the peer was unreachable.
pub fn send_batch(fd: RawFd, batch: &mut Datagrams) -> usize {
    let count = batch.count;
    let mut sent = 0;
    let mut dropped = 0;
    while sent < count {
        // SAFETY: as in `recv_batch`: zeroed C structs, pointers set before use.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let todo = count - sent;
        for i in 0..todo {
            let slot = sent + i;
            iovecs[i] = libc::iovec {
                iov_base: batch.buffers[slot].as_mut_ptr().cast(),
                iov_len: batch.lens[slot],
            };
            let (storage, len) = to_storage(&batch.peers[slot]);
            names[i] = storage;
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = len;
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        // SAFETY: `headers[..todo]` point at live buffers that outlive the call.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                headers.as_mut_ptr(),
                todo as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc <= 0 {
            // The first datagram failed (full buffer, unreachable peer): drop it and go on.
            dropped += 1;
            sent += 1;
            continue;
        }
        sent += usize::try_from(rc).unwrap_or(1);
    }
    batch.clear();
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn batches_round_trip_over_loopback() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let server_addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = Datagrams::new();
        for i in 0..10u8 {
            assert!(out.push(server_addr, &[i; 20]));
        }
        assert_eq!(send_batch(client.as_raw_fd(), &mut out), 0);
        assert!(out.is_empty());

        let mut batch = Datagrams::new();
        let mut got = 0;
        for _ in 0..1000 {
            got += recv_batch(server.as_raw_fd(), &mut batch, BATCH).unwrap();
            if got == 10 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(batch.len(), 10);
        for i in 0..10 {
            let (peer, bytes, truncated) = batch.get(i);
            assert_eq!(peer, client.local_addr().unwrap());
            assert_eq!(bytes, &[i as u8; 20]);
            assert!(!truncated);
        }
        assert_eq!(
            recv_batch(server.as_raw_fd(), &mut batch, BATCH).unwrap(),
            0
        );
    }

    #[test]
    fn oversized_datagrams_are_marked_truncated() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(
                &vec![7u8; MAX_DATAGRAM_SIZE + 100],
                server.local_addr().unwrap(),
            )
            .unwrap();
        let mut batch = Datagrams::new();
        for _ in 0..1000 {
            if recv_batch(server.as_raw_fd(), &mut batch, BATCH).unwrap() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (_, bytes, truncated) = batch.get(0);
        assert!(truncated);
        assert_eq!(bytes.len(), MAX_DATAGRAM_SIZE);
    }
}
