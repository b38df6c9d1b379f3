//! The one encoder of the `UDP_SEGMENT` (GSO) control message and the one decoder of the
//! control messages a receive gets (`UDP_GRO`'s segment size, `SO_TIMESTAMPNS`'s arrival
//! time): every send and receive path of the crate goes through these.

use std::mem::{size_of, zeroed};
use std::time::Duration;

/// `UDP_GRO` from `linux/udp.h` (libc does not export it for glibc): deliver a sender's GSO
/// batch (and, on real NICs, datagrams the driver coalesced) as one message carrying its
/// segment size.
pub(crate) const UDP_GRO: libc::c_int = 104;

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;

/// Room for the control messages of one send (`UDP_SEGMENT`, a `u16`) or one receive
/// (`UDP_GRO`, an `int`, and `SCM_TIMESTAMPNS`, a `timespec`), aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Control(pub(crate) [u8; 64]);

impl Control {
    /// An empty control buffer.
    pub(crate) const fn new() -> Self {
        Self([0; 64])
    }
}

/// What a received message's control messages say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// The `UDP_GRO` segment size: every datagram of the message but the last is this long.
    pub(crate) segment: Option<usize>,
    /// When the kernel took the message in (`SO_TIMESTAMPNS`: `CLOCK_REALTIME`, since the
    /// Unix epoch).
    pub(crate) arrived: Option<Duration>,
}

/// Fills `control` with a `UDP_SEGMENT` message of `size`; returns its length.
pub(crate) fn segment_control(control: &mut Control, size: u16) -> usize {
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

/// Reads the control messages the kernel wrote for a received message.
///
/// # Safety
/// `header` must have been filled by `recvmsg` or `recvmmsg`, so that its control pointer and
/// length describe control messages the kernel wrote into a buffer that is still live.
pub(crate) unsafe fn received(header: &libc::msghdr) -> Received {
    let mut found = Received::default();
    // SAFETY: by the caller's promise the control pointer and length describe control
    // messages in a live buffer; CMSG_* walk only within them, and each payload read is of
    // the type the kernel documents for its level and type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, UDP_GRO) => {
                    let size = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    found.segment = usize::try_from(size).ok();
                }
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let time = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                    if let (Ok(secs), Ok(nanos)) =
                        (u64::try_from(time.tv_sec), u32::try_from(time.tv_nsec))
                    {
                        found.arrived = Some(Duration::new(secs, nanos));
                    }
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    found
}
