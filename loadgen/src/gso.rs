//! Equal-sized datagrams to one destination sent as one `sendmsg` with Linux's UDP generic
//! segmentation offload (`UDP_SEGMENT`): the kernel splits the buffer into datagrams, so a
//! flood costs the generator one system call per batch instead of one per datagram, and its
//! cost lands on the authority under test rather than on the machine they share.

#![allow(unsafe_code)]

use socket2::{MsgHdr, SockAddr, SockRef};
use std::io::{self, IoSlice};
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};

/// Most segments per send (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
pub const MAX_SEGMENTS: usize = 64;

/// Room for one control message carrying a `u16`, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 32]);

/// Datagrams of one size for one destination, waiting to be sent together.
pub struct SegmentBatch {
    to: SockAddr,
    segment: usize,
    buffer: Vec<u8>,
    /// Cleared after the kernel refuses GSO once; then datagrams go one by one.
    gso: bool,
}

impl SegmentBatch {
    /// An empty batch for `to`.
    pub fn new(to: SocketAddr) -> Self {
        Self {
            to: SockAddr::from(to),
            segment: 0,
            buffer: Vec::with_capacity(MAX_SEGMENTS * 256),
            gso: true,
        }
    }

    /// Adds `datagram`, sending what is queued first if it has another size or the batch is
    /// full.
    pub fn push(&mut self, socket: &UdpSocket, datagram: &[u8]) {
        if !self.buffer.is_empty()
            && (datagram.len() != self.segment || self.buffer.len() / self.segment >= MAX_SEGMENTS)
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

    /// Sends what is queued. Losses (a full socket buffer) are the flood's problem, not ours.
    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.buffer.is_empty() || self.segment == 0 {
            self.buffer.clear();
            return;
        }
        if self.gso && send_segments(socket, &self.to, &self.buffer, self.segment).is_err() {
            self.gso = false;
        }
        if !self.gso {
            for datagram in self.buffer.chunks(self.segment) {
                let _ = SockRef::from(socket).send_to(datagram, &self.to);
            }
        }
        self.buffer.clear();
    }
}

/// One `sendmsg` of `payload` cut into `segment`-byte datagrams for `to`. A full socket
/// buffer (`WouldBlock`) drops the batch and counts as sent; other errors mean no GSO here.
fn send_segments(
    socket: &UdpSocket,
    to: &SockAddr,
    payload: &[u8],
    segment: usize,
) -> io::Result<()> {
    let size = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut control = Control([0; 32]);
    // SAFETY: `control` is aligned for `cmsghdr` and larger than CMSG_SPACE(2); the header
    // pointer comes from CMSG_FIRSTHDR over exactly that buffer and is written before use.
    let control_len = unsafe {
        let space = libc::CMSG_SPACE(2) as usize;
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
        space
    };
    let buffers = [IoSlice::new(payload)];
    let message = MsgHdr::new()
        .with_addr(to)
        .with_buffers(&buffers)
        .with_control(&control.0[..control_len]);
    match SockRef::from(socket).sendmsg(&message, 0) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// `UDP_GRO` from `linux/udp.h` (libc does not export it for glibc).
const UDP_GRO: libc::c_int = 104;

/// Bytes one coalesced read may carry: the largest UDP payload.
pub const COALESCED_BYTES: usize = 65_536;

/// Asks the kernel to deliver a sender's GSO batch as one message ([`recv_coalesced`]);
/// `false` where it refuses (then every read is one datagram).
pub fn enable_gro(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives across the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// One message read from `socket` into `buffer` (at least [`COALESCED_BYTES`] long): its
/// length, the size of each datagram in it (the whole length unless coalesced), and the
/// sender. Nonblocking sockets give `WouldBlock` when empty.
pub fn recv_coalesced(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> io::Result<(usize, usize, SocketAddr)> {
    use std::os::fd::AsRawFd;
    let mut control = Control([0; 32]);
    let mut iovec = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: `try_init` hands a zeroed address storage and its length; the msghdr's
    // pointers go into it, `iovec` (over `buffer`) and `control`, which outlive the call, and
    // the kernel writes the sender's address and its length back before `try_init` reads them.
    let ((len, header_control_len), from) = unsafe {
        SockAddr::try_init(|storage, name_len| {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_name = storage.cast();
            header.msg_namelen = *name_len;
            header.msg_iov = &mut iovec;
            header.msg_iovlen = 1;
            header.msg_control = control.0.as_mut_ptr().cast();
            header.msg_controllen = control.0.len() as _;
            let len = libc::recvmsg(socket.as_raw_fd(), &mut header, 0);
            if len < 0 {
                return Err(io::Error::last_os_error());
            }
            *name_len = header.msg_namelen;
            Ok((len as usize, header.msg_controllen as usize))
        })?
    };
    let len = len.min(buffer.len());
    let segment = gro_segment(&mut control, header_control_len)
        .filter(|&s| s > 0)
        .unwrap_or(len);
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((len, segment, from))
}

/// The segment size in a `UDP_GRO` control message among the first `len` bytes of
/// `control`, as the kernel wrote them.
fn gro_segment(control: &mut Control, len: usize) -> Option<usize> {
    // SAFETY: a msghdr describing only `control`'s first `len` bytes (at most its size), so
    // CMSG_* walk only within control messages the kernel wrote.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = len.min(control.0.len()) as _;
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            let (len, segment, from) = recv_coalesced(&receiver, &mut buffer).unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            if gro {
                assert_eq!((len, segment), (1500, 150), "one message for the batch");
            }
            got.extend(buffer[..len].chunks(segment).map(<[u8]>::to_vec));
        }
        let expected: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 150]).collect();
        assert_eq!(got, expected);
    }
}
