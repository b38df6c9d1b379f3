//! The batch system calls: `recvmmsg` into a [`Datagrams`] (plain, or through a [`Receiver`]
//! that splits `UDP_GRO` messages) and `sendmmsg` out of one, with runs of datagrams to one
//! peer sent as one `UDP_SEGMENT` message.

use crate::addr::{to_socket_addr, to_storage};
use crate::cmsg::{Control, GSO_MAX_SEGMENTS, received, segment_control};
use crate::socket::{enable_gro, enable_receive_timestamps};
use fastpay_wire::codec::MAX_DATAGRAM_SIZE;
use fastpay_wire::{BATCH, Datagrams};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The arrays one batch call hands the kernel: an iovec, a peer address and a message header
/// per datagram.
type MessageArrays = (
    [libc::iovec; BATCH],
    [libc::sockaddr_storage; BATCH],
    [libc::mmsghdr; BATCH],
);

/// Zeroed [`MessageArrays`]; the caller sets every pointer it hands to the kernel.
#[inline]
fn zeroed_messages() -> MessageArrays {
    // SAFETY: all-zero bytes are valid values of these C structs (null pointers, zero
    // lengths); nothing reads through a pointer until the caller has set it.
    unsafe { (zeroed(), zeroed(), zeroed()) }
}

/// Reads up to `max` datagrams (bounded by the free room of `batch`) in one `recvmmsg`,
/// appending to it. Returns how many arrived; `Ok(0)` when the socket is drained. Where the
/// socket reports arrival times ([`enable_receive_timestamps`]), each datagram's
/// [`waited`](Datagrams::waited) says how long it sat in the kernel's queue.
pub fn recv_batch(fd: RawFd, batch: &mut Datagrams, max: usize) -> io::Result<usize> {
    let start = batch.len();
    let room = BATCH.saturating_sub(start).min(max);
    if room == 0 {
        return Ok(0);
    }
    // Every pointer is set below before the kernel reads it.
    let (mut iovecs, mut names, mut headers) = zeroed_messages();
    let mut controls = [Control::new(); BATCH];
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
        header.msg_control = controls[i].0.as_mut_ptr().cast();
        header.msg_controllen = size_of::<Control>() as _;
    }
    // SAFETY: `headers[..room]` point at live buffers (the batch's free buffers, `iovecs`,
    // `names`, `controls`) that outlive the call; MSG_DONTWAIT makes it nonblocking; no
    // timeout pointer.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            room as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Ok(0);
        }
        return Err(error);
    }
    let count = usize::try_from(rc).unwrap_or(0).min(room);
    let now = wall_clock();
    for i in 0..count {
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
        // SAFETY: recvmmsg filled the header; its control buffer (`controls[i]`) is live.
        let arrived = unsafe { received(&headers[i].msg_hdr) }.arrived;
        batch.set_waited(batch.len() - 1, waited(now, arrived));
    }
    Ok(count)
}

/// Bytes one coalesced read may carry: the largest UDP payload, so a coalesced message is
/// never cut short (which would lose every datagram past the cut).
pub const COALESCED_BYTES: usize = 65_536;

/// The time now on the clock the kernel stamps arrivals with (`CLOCK_REALTIME`).
pub(crate) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long a message that arrived at `arrived` has waited by `now`: zero when the kernel did
/// not say, or when the clock stepped back since.
pub(crate) fn waited(now: Duration, arrived: Option<Duration>) -> Duration {
    arrived.map_or(Duration::ZERO, |arrived| now.saturating_sub(arrived))
}

/// One coalesced message read and not yet split into a batch.
#[derive(Clone, Copy)]
struct Coalesced {
    peer: SocketAddr,
    len: usize,
    /// Bytes per datagram in it (all but the last are this long).
    segment: usize,
    truncated: bool,
    /// How long it had waited in the kernel's queue when it was read.
    waited: Duration,
}

/// Reads a shard's socket with UDP generic receive offload: a client that sends its requests
/// in GSO batches costs the kernel one delivery (and us one message) per batch instead of
/// one per datagram. Coalesced messages are split into the caller's [`Datagrams`]; what does
/// not fit stays here for the next call ([`has_staged`](Self::has_staged)). Where the
/// kernel refuses `UDP_GRO`, reads are plain [`recv_batch`]es. It also asks for arrival
/// times (`SO_TIMESTAMPNS`), so that each datagram's [`waited`](Datagrams::waited) says how
/// long it sat in the kernel's queue before this read: what an overloaded shard sheds by.
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
        let gro = enable_gro(socket);
        // Best effort: without arrival times every datagram reads as fresh.
        let _ = enable_receive_timestamps(socket);
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
                waited: Duration::ZERO,
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
        // Every pointer is set below, into `self.area` and locals that outlive the call.
        let (mut iovecs, mut names, mut headers) = zeroed_messages();
        let mut controls = [Control::new(); BATCH];
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
            header.msg_controllen = size_of::<Control>() as _;
        }
        // SAFETY: `headers[..messages]` point at live buffers; MSG_DONTWAIT, no timeout.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Ok(());
            }
            return Err(error);
        }
        let count = usize::try_from(rc).unwrap_or(0).min(messages);
        let now = wall_clock();
        for i in 0..count {
            let header = &headers[i].msg_hdr;
            let len = (headers[i].msg_len as usize).min(COALESCED_BYTES);
            // Staged in place: message `i`'s bytes stay in area `i`. A peer of an unknown
            // address family leaves an empty message, skipped when split.
            let (peer, len) = match to_socket_addr(&names[i]) {
                Some(peer) => (peer, len),
                None => (SocketAddr::from(([0, 0, 0, 0], 0)), 0),
            };
            // SAFETY: recvmmsg filled `header`; its control buffer (`controls[i]`) is live.
            let control = unsafe { received(header) };
            self.staged[i] = Coalesced {
                peer,
                len,
                segment: control.segment.filter(|&s| s > 0).unwrap_or(len),
                truncated: header.msg_flags & libc::MSG_TRUNC != 0,
                waited: waited(now, control.arrived),
            };
        }
        self.staged_count = count;
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
            batch.set_waited(slot, message.waited);
            added += 1;
            self.offset += piece;
        }
        added
    }
}

/// Whether the kernel takes `UDP_SEGMENT` (generic segmentation offload); cleared the first
/// time it refuses, after which every datagram goes out on its own.
static GSO: AtomicBool = AtomicBool::new(true);

/// Most bytes one GSO send may carry (a UDP datagram's limit, with room to spare).
const GSO_MAX_BYTES: usize = 60_000;

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

    // Every pointer is set before use and points into locals or `batch`, which outlive the
    // calls (the kernel only reads the datagrams).
    let (mut iovecs, mut names, mut headers) = zeroed_messages();
    let mut controls = [Control::new(); BATCH];
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
    use crate::bind_reuseport;
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
    fn datagrams_say_how_long_they_waited_in_the_kernel() {
        // Through a GRO receiver and through plain batch receives: a datagram read 80 ms
        // after it arrived says it waited at least that long; one read at once, far less.
        for gro in [true, false] {
            let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut receiver = Receiver::new(&server);
            if !gro {
                enable_receive_timestamps(&server).unwrap();
            }
            // The kernel turns its receive stamping on asynchronously (a static key): until
            // then it stamps datagrams when they are read.
            std::thread::sleep(Duration::from_millis(50));
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .send_to(b"old", server.local_addr().unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_millis(80));
            let mut batch = Datagrams::new();
            for _ in 0..1000 {
                let got = if gro {
                    receiver
                        .recv(server.as_raw_fd(), &mut batch, BATCH)
                        .unwrap()
                } else {
                    recv_batch(server.as_raw_fd(), &mut batch, BATCH).unwrap()
                };
                if got > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(batch.get(0).1, b"old");
            assert!(
                batch.waited(0) >= Duration::from_millis(80),
                "gro {gro}: {:?}",
                batch.waited(0)
            );
            assert!(batch.waited(0) < Duration::from_secs(60));
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
