//! One destination at a time: equal-sized datagrams sent as one `sendmsg` with Linux's UDP
//! generic segmentation offload (`UDP_SEGMENT`), and one message read whole, with its
//! `UDP_GRO` segment size. The kernel splits the buffer into datagrams, so a flood costs the
//! load generator one system call per batch instead of one per datagram, and its cost lands
//! on the authority under test rather than on the machine they share.

use crate::addr::{to_socket_addr, to_storage};
use crate::cmsg::{Control, GSO_MAX_SEGMENTS, received, segment_control};
use crate::mmsg::{waited, wall_clock};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Datagrams of one size for one destination, waiting to be sent together.
pub struct SegmentBatch {
    to: SocketAddr,
    segment: usize,
    buffer: Vec<u8>,
    /// Cleared after the kernel refuses GSO once; then datagrams go one by one.
    gso: bool,
}

impl SegmentBatch {
    /// An empty batch for `to`.
    pub fn new(to: SocketAddr) -> Self {
        Self {
            to,
            segment: 0,
            buffer: Vec::with_capacity(GSO_MAX_SEGMENTS * 256),
            gso: true,
        }
    }

    /// Adds `datagram`, sending what is queued first if it has another size or the batch is
    /// full.
    pub fn push(&mut self, socket: &UdpSocket, datagram: &[u8]) {
        if !self.buffer.is_empty()
            && (datagram.len() != self.segment
                || self.buffer.len() / self.segment >= GSO_MAX_SEGMENTS)
        {
            self.flush(socket);
        }
        self.segment = datagram.len();
        self.buffer.extend_from_slice(datagram);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Sends what is queued. Losses (a full socket buffer) are the sender's problem, not ours.
    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.buffer.is_empty() || self.segment == 0 {
            self.buffer.clear();
            return;
        }
        if self.gso && send_segments(socket, self.to, &self.buffer, self.segment).is_err() {
            self.gso = false;
        }
        if !self.gso {
            for datagram in self.buffer.chunks(self.segment) {
                let _ = socket.send_to(datagram, self.to);
            }
        }
        self.buffer.clear();
    }
}

/// One `sendmsg` of `payload` cut into `segment`-byte datagrams for `to` (the last may be
/// shorter). A full socket buffer (`WouldBlock`) drops the batch and counts as sent; other
/// errors mean no GSO here (or a segment size past `u16`), and nothing was sent.
pub fn send_segments(
    socket: &impl AsRawFd,
    to: SocketAddr,
    payload: &[u8],
    segment: usize,
) -> io::Result<()> {
    let size = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut control = Control::new();
    let control_len = segment_control(&mut control, size);
    let (mut name, name_len) = to_storage(&to);
    let mut iovec = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero `msghdr` is a valid value; the pointers the kernel reads are set
    // below.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = name_len;
    header.msg_iov = &mut iovec;
    header.msg_iovlen = 1;
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = control_len as _;
    // SAFETY: `header` points at `name`, `iovec` (over `payload`, which the kernel only
    // reads) and `control`, all live across the call.
    let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, 0) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        return Err(error);
    }
    Ok(())
}

/// What [`recv_coalesced`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescedRead {
    /// The message's length in the buffer.
    pub len: usize,
    /// The size of each datagram in it (the whole length unless the kernel coalesced it, see
    /// [`enable_gro`](crate::enable_gro)).
    pub segment: usize,
    /// The sender.
    pub from: SocketAddr,
    /// How long the message sat in the kernel's queue before this read: zero unless
    /// [`enable_receive_timestamps`](crate::enable_receive_timestamps) was called on the
    /// socket.
    pub waited: Duration,
}

/// One message read from `socket` into `buffer` (at least
/// [`COALESCED_BYTES`](crate::COALESCED_BYTES) long, so that a coalesced message is not cut
/// short). Nonblocking sockets give `WouldBlock` when empty; a sender of an unknown address
/// family gives `InvalidData`.
pub fn recv_coalesced(socket: &impl AsRawFd, buffer: &mut [u8]) -> io::Result<CoalescedRead> {
    let mut control = Control::new();
    // SAFETY: an all-zero `sockaddr_storage` is a valid value; the kernel writes into it.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iovec = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: an all-zero `msghdr` is a valid value; the pointers the kernel uses are set
    // below.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &mut iovec;
    header.msg_iovlen = 1;
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = size_of::<Control>() as _;
    // SAFETY: `header` points at `name`, `iovec` (over `buffer`) and `control`, all live
    // across the call, with their true lengths.
    let len = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, 0) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (len as usize).min(buffer.len());
    // SAFETY: recvmsg filled `header`; its control buffer (`control`) is live.
    let received = unsafe { received(&header) };
    let segment = received.segment.filter(|&s| s > 0).unwrap_or(len);
    let from = to_socket_addr(&name).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(CoalescedRead {
        len,
        segment,
        from,
        waited: waited(wall_clock(), received.arrived),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{COALESCED_BYTES, enable_gro, enable_receive_timestamps};

    #[test]
    fn a_batch_arrives_as_separate_datagrams() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SegmentBatch::new(receiver.local_addr().unwrap());
        for i in 0..10u8 {
            batch.push(&sender, &[i; 150]);
        }
        batch.push(&sender, &[99; 40]); // Another size: the ten go out first.
        batch.flush(&sender);
        let mut buf = [0u8; 2048];
        for i in 0..10u8 {
            let len = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], &[i; 150][..]);
        }
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], &[99; 40][..]);
    }

    #[test]
    fn a_batch_is_read_back_as_one_coalesced_message() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let gro = enable_gro(&receiver);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SegmentBatch::new(receiver.local_addr().unwrap());
        for i in 0..10u8 {
            batch.push(&sender, &[i; 150]);
        }
        batch.flush(&sender);
        let mut buffer = vec![0u8; COALESCED_BYTES];
        let mut got = Vec::new();
        while got.len() < 10 {
            let CoalescedRead {
                len, segment, from, ..
            } = recv_coalesced(&receiver, &mut buffer).unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            if gro {
                assert_eq!((len, segment), (1500, 150), "one message for the batch");
            }
            got.extend(buffer[..len].chunks(segment).map(<[u8]>::to_vec));
        }
        let expected: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 150]).collect();
        assert_eq!(got, expected);
    }

    /// A read says how long its message sat in the queue, once timestamps are asked for.
    #[test]
    fn a_read_says_how_long_its_message_waited() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let mut buffer = vec![0u8; COALESCED_BYTES];
        // Loopback queues the datagram at the receiver before `send_to` returns.
        sender.send_to(&[1; 10], to).unwrap();
        let read = recv_coalesced(&receiver, &mut buffer).unwrap();
        assert_eq!(
            (read.len, read.waited),
            (10, Duration::ZERO),
            "not asked for"
        );

        enable_receive_timestamps(&receiver).unwrap();
        sender.send_to(&[2; 10], to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let read = recv_coalesced(&receiver, &mut buffer).unwrap();
        assert_eq!(read.len, 10);
        assert!(
            read.waited >= Duration::from_millis(20),
            "waited {:?}",
            read.waited
        );
    }
}
