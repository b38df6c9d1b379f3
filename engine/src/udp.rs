//! Batched UDP: `recvmmsg`/`sendmmsg` into preallocated buffers, `SO_REUSEPORT` sockets and
//! the classic BPF program that steers each datagram to the shard named in its header.
//!
//! Almost all of the engine's `unsafe` code is here: the batch system calls, their GSO and GRO
//! control messages, and two `setsockopt`s (the other is one `setpriority` in `store`).
//! We call libc directly rather than quinn-udp because quinn-udp's send path takes one
//! destination per call (built for QUIC's GSO), while an authority replies to many clients per
//! batch, which is exactly what `sendmmsg` does in one system call.

#![allow(unsafe_code)]

use fastpay_wire::codec::{MAX_DATAGRAM_SIZE, SHARD_OFFSET};
use fastpay_wire::{BATCH, Datagrams};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

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
    set_int_option(socket, libc::SOL_SOCKET, option, value)
}

/// Sets a socket option whose value is an `int`.
fn set_int_option(
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
    let start = batch.len();
    let room = BATCH.saturating_sub(start).min(max);
    if room == 0 {
        return Ok(0);
    }
    // SAFETY: zeroed iovecs, sockaddr_storages and mmsghdrs are valid values for these C
    // structs; every pointer is set below before the kernel reads it.
    let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, buffer) in batch.free_buffers_mut().iter_mut().take(room).enumerate() {
        iovecs[i] = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: MAX_DATAGRAM_SIZE,
        };
        let header = &mut headers[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        header.msg_iov = &mut iovecs[i];
        header.msg_iovlen = 1;
    }
    // SAFETY: `headers[..room]` point at live buffers (the batch's free buffers, `iovecs`,
    // `names`) that outlive the call; MSG_DONTWAIT makes it nonblocking; no timeout pointer.
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
    for i in 0..received {
        // A peer of an unknown address family is left out (its slot is filled by the next).
        let Some(peer) = to_socket_addr(&names[i]) else {
            continue;
        };
        batch.keep(
            start + i,
            peer,
            headers[i].msg_len as usize,
            headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        );
    }
    Ok(received)
}

/// Bytes one coalesced read may carry: the largest UDP payload, so a coalesced message is
/// never cut short (which would lose every datagram past the cut).
const COALESCED_BYTES: usize = 65_536;

/// `UDP_GRO` from `linux/udp.h`: deliver a sender's GSO batch (and, on real NICs, datagrams
/// the driver coalesced) as one message carrying its segment size.
const UDP_GRO: libc::c_int = 104;

/// Room for one control message carrying an `int`, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct GroControl([u8; 32]);

/// One coalesced message read and not yet split into a batch.
#[derive(Clone, Copy)]
struct Coalesced {
    peer: SocketAddr,
    len: usize,
    /// Bytes per datagram in it (all but the last are this long).
    segment: usize,
    truncated: bool,
}

/// Reads a shard's socket with UDP generic receive offload: a client that sends its requests
/// in GSO batches costs the kernel one delivery (and us one message) per batch instead of
/// one per datagram. Coalesced messages are split into the caller's [`Datagrams`]; what does
/// not fit stays here for the next call ([`has_staged`](Self::has_staged)). Where the
/// kernel refuses `UDP_GRO`, reads are plain [`recv_batch`]es.
pub struct Receiver {
    gro: bool,
    /// `BATCH` areas of `COALESCED_BYTES`, touched (and so resident) only as far as written.
    area: Box<[u8]>,
    staged: [Coalesced; BATCH],
    staged_count: usize,
    /// The staged message being split, and how far.
    next: usize,
    offset: usize,
}

impl Receiver {
    /// A receiver for `socket`, which it switches to `UDP_GRO` when the kernel allows.
    pub fn new(socket: &impl AsRawFd) -> Self {
        let gro = set_int_option(socket, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        Self {
            gro,
            area: if gro {
                vec![0u8; BATCH * COALESCED_BYTES].into_boxed_slice()
            } else {
                Box::default()
            },
            staged: [Coalesced {
                peer: SocketAddr::from(([0, 0, 0, 0], 0)),
                len: 0,
                segment: 0,
                truncated: false,
            }; BATCH],
            staged_count: 0,
            next: 0,
            offset: 0,
        }
    }

    /// Whether datagrams already read from the socket wait here for room in a batch (the
    /// socket's readiness will not say so).
    pub fn has_staged(&self) -> bool {
        self.next < self.staged_count
    }

    /// Appends up to `max` datagrams (bounded by the free room of `batch`): those staged
    /// first, then from one `recvmmsg`. Returns how many were added; `Ok(0)` when there is
    /// nothing to read.
    pub fn recv(&mut self, fd: RawFd, batch: &mut Datagrams, max: usize) -> io::Result<usize> {
        if !self.gro {
            return recv_batch(fd, batch, max);
        }
        let max = max.min(BATCH - batch.len());
        let mut added = self.split_into(batch, max);
        if added < max && !self.has_staged() {
            self.read(fd, max - added)?;
            added += self.split_into(batch, max - added);
        }
        Ok(added)
    }

    /// Reads up to `messages` coalesced messages into the (empty) staging area.
    fn read(&mut self, fd: RawFd, messages: usize) -> io::Result<()> {
        self.staged_count = 0;
        self.next = 0;
        self.offset = 0;
        let messages = messages.min(BATCH);
        // SAFETY: zeroed C structs are valid values; every pointer is set below, into
        // `self.area` and locals that outlive the call.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut controls = [GroControl([0; 32]); BATCH];
        for (i, area) in self
            .area
            .chunks_exact_mut(COALESCED_BYTES)
            .take(messages)
            .enumerate()
        {
            iovecs[i] = libc::iovec {
                iov_base: area.as_mut_ptr().cast(),
                iov_len: COALESCED_BYTES,
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = controls[i].0.as_mut_ptr().cast();
            header.msg_controllen = size_of::<GroControl>() as _;
        }
        // SAFETY: `headers[..messages]` point at live buffers; MSG_DONTWAIT, no timeout.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Ok(());
            }
            return Err(error);
        }
        let received = usize::try_from(received).unwrap_or(0).min(messages);
        for i in 0..received {
            let header = &headers[i].msg_hdr;
            let len = (headers[i].msg_len as usize).min(COALESCED_BYTES);
            // Staged in place: message `i`'s bytes stay in area `i`. A peer of an unknown
            // address family leaves an empty message, skipped when split.
            let (peer, len) = match to_socket_addr(&names[i]) {
                Some(peer) => (peer, len),
                None => (SocketAddr::from(([0, 0, 0, 0], 0)), 0),
            };
            self.staged[i] = Coalesced {
                peer,
                len,
                segment: gro_segment(header).filter(|&s| s > 0).unwrap_or(len),
                truncated: header.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.staged_count = received;
        Ok(())
    }

    /// Moves up to `max` staged datagrams into `batch`; returns how many.
    fn split_into(&mut self, batch: &mut Datagrams, max: usize) -> usize {
        let mut added = 0;
        while added < max && self.has_staged() && !batch.is_full() {
            let message = self.staged[self.next];
            if self.offset >= message.len {
                self.next += 1;
                self.offset = 0;
                continue;
            }
            let start = self.next * COALESCED_BYTES + self.offset;
            let piece = message.segment.min(message.len - self.offset);
            let kept = piece.min(MAX_DATAGRAM_SIZE);
            let slot = batch.len();
            let Some(buffer) = batch.free_buffers_mut().first_mut() else {
                break;
            };
            buffer[..kept].copy_from_slice(&self.area[start..start + kept]);
            let last = self.offset + piece >= message.len;
            let truncated = piece > MAX_DATAGRAM_SIZE || (last && message.truncated);
            batch.keep(slot, message.peer, kept, truncated);
            added += 1;
            self.offset += piece;
        }
        added
    }
}

/// The segment size in a message's `UDP_GRO` control message, if it has one.
fn gro_segment(header: &libc::msghdr) -> Option<usize> {
    // SAFETY: `header` was filled by recvmmsg, so its control pointer and length describe
    // control messages the kernel wrote into a live buffer; CMSG_* walk only within them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// Whether the kernel takes `UDP_SEGMENT` (generic segmentation offload); cleared the first
/// time it refuses, after which every datagram goes out on its own.
static GSO: AtomicBool = AtomicBool::new(true);

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes one GSO send may carry (a UDP datagram's limit, with room to spare).
const GSO_MAX_BYTES: usize = 60_000;

/// Room for one control message carrying a `u16`, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SegmentControl([u8; 32]);

/// Fills `control` with a `UDP_SEGMENT` message of `size`; returns its length.
fn segment_control(control: &mut SegmentControl, size: u16) -> usize {
    // SAFETY: `control` is aligned for `cmsghdr` and larger than CMSG_SPACE(2); the header
    // pointer comes from CMSG_FIRSTHDR over exactly that buffer and is written before use.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        let mut header: libc::msghdr = zeroed();
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
        space
    }
}

/// Sends every datagram of `batch` with as few `sendmmsg` calls as the kernel allows, then
/// clears it. Datagrams for the same peer of the same size go out together as one message
/// with UDP generic segmentation offload (the kernel cuts it into datagrams), which costs
/// far less per datagram than sending each; their order within a peer is kept. Returns how
/// many datagrams were dropped (a full socket buffer, an unreachable peer): UDP may lose
/// datagrams, and the clients resend.
pub fn send_batch(fd: RawFd, batch: &mut Datagrams) -> usize {
    let count = batch.len();
    if count == 0 {
        return 0;
    }
    // Group by peer, keeping each peer's order (a stable sort of at most 64); runs of one
    // size within a peer become one message.
    let mut order: [usize; BATCH] = std::array::from_fn(|i| i);
    let order = &mut order[..count];
    let gso = GSO.load(Ordering::Relaxed);
    if gso {
        order.sort_by_key(|&i| batch.get(i).0);
    }
    // Messages: (first position in `order`, datagrams in it).
    let mut messages: [(usize, usize); BATCH] = [(0, 0); BATCH];
    let mut message_count = 0;
    let mut at = 0;
    while at < count {
        let (peer, bytes, _) = batch.get(order[at]);
        let mut k = 1;
        while gso
            && at + k < count
            && k < GSO_MAX_SEGMENTS
            && (k + 1) * bytes.len() <= GSO_MAX_BYTES
            && batch.get(order[at + k]).0 == peer
            && batch.get(order[at + k]).1.len() == bytes.len()
        {
            k += 1;
        }
        messages[message_count] = (at, k);
        message_count += 1;
        at += k;
    }

    // SAFETY: zeroed C structs are valid; every pointer is set before use and points into
    // locals or `batch`, which outlive the calls (the kernel only reads the datagrams).
    let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut controls = [SegmentControl([0; 32]); BATCH];
    for (position, &slot) in order.iter().enumerate() {
        let bytes = batch.get(slot).1;
        iovecs[position] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
    }
    for (m, &(first, k)) in messages[..message_count].iter().enumerate() {
        let (peer, bytes, _) = batch.get(order[first]);
        let (storage, len) = to_storage(&peer);
        names[m] = storage;
        let header = &mut headers[m].msg_hdr;
        header.msg_name = (&mut names[m] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = len;
        header.msg_iov = &mut iovecs[first];
        header.msg_iovlen = k as _;
        if k > 1 {
            let size = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            let control_len = segment_control(&mut controls[m], size);
            header.msg_control = controls[m].0.as_mut_ptr().cast();
            header.msg_controllen = control_len as _;
        }
    }

    let mut sent = 0;
    let mut dropped = 0;
    while sent < message_count {
        // SAFETY: `headers[sent..message_count]` point at live buffers that outlive the call.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                headers[sent..].as_mut_ptr(),
                (message_count - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc <= 0 {
            let error = io::Error::last_os_error().raw_os_error();
            let (_, k) = messages[sent];
            if k > 1 && matches!(error, Some(libc::EINVAL | libc::EIO | libc::EOPNOTSUPP)) {
                // No GSO here: send the rest one datagram a message.
                GSO.store(false, Ordering::Relaxed);
                let mut rest = Datagrams::new();
                for &(first, k) in &messages[sent..message_count] {
                    for &slot in &order[first..first + k] {
                        let (peer, bytes, _) = batch.get(slot);
                        rest.push(peer, bytes);
                    }
                }
                batch.clear();
                return dropped + send_batch(fd, &mut rest);
            }
            // The first message failed (full buffer, unreachable peer): drop it and go on.
            dropped += k;
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
    fn mixed_peers_and_sizes_arrive_whole_and_in_order_per_peer() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = Datagrams::new();
        // Interleaved peers; a run of equal sizes to each (sent as one GSO message), a
        // different size in between, and one datagram alone.
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        for i in 0..40u8 {
            let (to, expected, len) = if i % 2 == 0 {
                (&a, &mut expected_a, if i == 20 { 77 } else { 152 })
            } else {
                (&b, &mut expected_b, 338)
            };
            let datagram = vec![i; len];
            assert!(out.push(to.local_addr().unwrap(), &datagram));
            expected.push(datagram);
        }
        assert_eq!(send_batch(sender.as_raw_fd(), &mut out), 0);
        for (socket, expected) in [(&a, expected_a), (&b, expected_b)] {
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 2048];
            for datagram in expected {
                let len = socket.recv(&mut buf).unwrap();
                assert_eq!(&buf[..len], &datagram[..]);
            }
        }
    }

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

    /// Reads from `receiver` until `want` datagrams arrived (or two seconds passed), taking
    /// at most `max` per call into a fresh batch each time.
    fn receive_all(
        receiver: &mut Receiver,
        socket: &std::net::UdpSocket,
        want: usize,
        max: usize,
    ) -> Vec<(SocketAddr, Vec<u8>, bool)> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < want && std::time::Instant::now() < deadline {
            let mut batch = Datagrams::new();
            let n = receiver.recv(socket.as_raw_fd(), &mut batch, max).unwrap();
            assert!(n <= max && n == batch.len());
            got.extend((0..n).map(|i| {
                let (peer, bytes, truncated) = batch.get(i);
                (peer, bytes.to_vec(), truncated)
            }));
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        got
    }

    #[test]
    fn coalesced_batches_split_into_datagrams_in_order() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut receiver = Receiver::new(&server);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut expected = Vec::new();
        // Two GSO messages of 64 equal datagrams, each followed by a shorter one (sent as
        // the message's short last segment or alone), then a lone datagram.
        for round in 0..2u8 {
            let mut out = Datagrams::new();
            for i in 0..63u8 {
                let datagram = vec![round * 64 + i; 150];
                assert!(out.push(server.local_addr().unwrap(), &datagram));
                expected.push(datagram);
            }
            let short = vec![200 + round; 40];
            assert!(out.push(server.local_addr().unwrap(), &short));
            expected.push(short);
            assert_eq!(send_batch(client.as_raw_fd(), &mut out), 0);
        }
        client
            .send_to(&[9; 33], server.local_addr().unwrap())
            .unwrap();
        expected.push(vec![9; 33]);

        let mut first = Datagrams::new();
        for _ in 0..2000 {
            if receiver.recv(server.as_raw_fd(), &mut first, 50).unwrap() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(first.len(), 50);
        if receiver.gro {
            // The first message held 64 datagrams: 14 wait for the next call.
            assert!(receiver.has_staged());
        }
        let mut got: Vec<Vec<u8>> = (0..50).map(|i| first.get(i).1.to_vec()).collect();
        for (peer, bytes, truncated) in receive_all(&mut receiver, &server, expected.len() - 50, 50)
        {
            assert_eq!(peer, client.local_addr().unwrap());
            assert!(!truncated);
            got.push(bytes);
        }
        assert_eq!(got, expected);
        assert!(!receiver.has_staged());
        let mut empty = Datagrams::new();
        assert_eq!(
            receiver
                .recv(server.as_raw_fd(), &mut empty, BATCH)
                .unwrap(),
            0
        );
    }

    #[test]
    fn the_receiver_marks_oversized_datagrams_truncated() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut receiver = Receiver::new(&server);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        client
            .send_to(&vec![7u8; MAX_DATAGRAM_SIZE + 100], to)
            .unwrap();
        client.send_to(&[8u8; 10], to).unwrap();
        let got = receive_all(&mut receiver, &server, 2, BATCH);
        assert_eq!(got.len(), 2);
        assert!(got[0].2);
        assert_eq!(got[0].1, vec![7u8; MAX_DATAGRAM_SIZE]);
        assert!(!got[1].2);
        assert_eq!(got[1].1, vec![8u8; 10]);
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
