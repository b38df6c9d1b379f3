//! The one encoder of the `UDP_SEGMENT` (GSO) control message and the one decoder of the
//! `UDP_GRO` control message: every send and receive path of the crate goes through these.

use std::mem::{size_of, zeroed};

/// `UDP_GRO` from `linux/udp.h` (libc does not export it for glibc): deliver a sender's GSO
/// batch (and, on real NICs, datagrams the driver coalesced) as one message carrying its
/// segment size.
pub(crate) const UDP_GRO: libc::c_int = 104;

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;

/// Room for one control message carrying a `u16` (`UDP_SEGMENT`) or an `int` (`UDP_GRO`),
/// aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Control(pub(crate) [u8; 32]);

impl Control {
    /// An empty control buffer.
    pub(crate) const fn new() -> Self {
        Self([0; 32])
    }
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

/// The segment size in a received message's `UDP_GRO` control message, if it has one.
///
/// # Safety
/// `header` must have been filled by `recvmsg` or `recvmmsg`, so that its control pointer and
/// length describe control messages the kernel wrote into a buffer that is still live.
pub(crate) unsafe fn gro_segment(header: &libc::msghdr) -> Option<usize> {
    // SAFETY: by the caller's promise the control pointer and length describe control
    // messages in a live buffer; CMSG_* walk only within them.
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
