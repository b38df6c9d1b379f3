//! A batch of datagrams with their peers, in buffers allocated once: what the I/O layer
//! (`fastpay-udp`) fills with one receive call and drains with one send call, and what the
//! protocol code between them reads requests from and writes replies into; and the size
//! limit that those buffers, the codec and padded queries share ([`MAX_DATAGRAM_SIZE`]).
//! No I/O here.

use std::net::SocketAddr;
use std::time::Duration;

/// The largest datagram fastpay sends or accepts, in bytes. Fits a certificate from a committee
/// of 80 authorities (96 bytes a vote) while staying far below the 64 KiB UDP limit; receive
/// buffers are sized to it.
pub const MAX_DATAGRAM_SIZE: usize = 8192;

/// Datagrams moved per system call. 64 amortises the call over many datagrams while keeping
/// the buffers (64 × 8 KiB each way) within a shard core's L2; larger batches did not raise
/// loopback throughput in our runs.
pub const BATCH: usize = 64;

/// A batch of up to [`BATCH`] datagrams with their peers: filled by a receive
/// (`fastpay_udp::recv_batch`), drained by a send (`fastpay_udp::send_batch`).
/// Allocated once per shard; the hot path reuses it.
pub struct Datagrams {
    buffers: Box<[[u8; MAX_DATAGRAM_SIZE]]>,
    lens: [usize; BATCH],
    peers: [SocketAddr; BATCH],
    truncated: [bool; BATCH],
    /// Microseconds each datagram waited in the kernel before it was read.
    waited_us: [u32; BATCH],
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
            waited_us: [0; BATCH],
            count: 0,
        }
    }

    /// Number of datagrams held.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether no more datagrams fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Datagram `i`: its peer, its bytes, and whether it was longer than the buffer.
    #[inline]
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8], bool) {
        (
            self.peers[i],
            &self.buffers[i][..self.lens[i]],
            self.truncated[i],
        )
    }

    /// How long datagram `i` waited in the kernel's receive queue before it was read, where
    /// the receive call knew (zero otherwise).
    #[inline]
    pub fn waited(&self, i: usize) -> Duration {
        Duration::from_micros(u64::from(self.waited_us[i]))
    }

    /// Records how long held datagram `i` waited before it was read (saturating at about an
    /// hour); ignored past the held datagrams.
    #[inline]
    pub fn set_waited(&mut self, i: usize, waited: Duration) {
        if i < self.count {
            self.waited_us[i] = u32::try_from(waited.as_micros()).unwrap_or(u32::MAX);
        }
    }

    /// Empties the batch.
    #[inline]
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Reserves the next slot for `peer`; returns its buffer, or `None` when full. Call
    /// [`commit`](Self::commit) with the length written.
    #[inline]
    pub fn next_buffer(&mut self, peer: SocketAddr) -> Option<&mut [u8; MAX_DATAGRAM_SIZE]> {
        if self.is_full() {
            return None;
        }
        self.peers[self.count] = peer;
        self.truncated[self.count] = false;
        self.waited_us[self.count] = 0;
        Some(&mut self.buffers[self.count])
    }

    /// Keeps the slot reserved by `next_buffer`, holding `len` bytes.
    #[inline]
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

    /// The buffers of the free slots (slot [`len`](Self::len) onwards), for a receive call
    /// to write several datagrams into in place; [`keep`](Self::keep) then adds each of them.
    #[inline]
    pub fn free_buffers_mut(&mut self) -> &mut [[u8; MAX_DATAGRAM_SIZE]] {
        &mut self.buffers[self.count..]
    }

    /// Adds as the next datagram the `len` bytes from `peer` written into free slot `slot`
    /// (counted from the start of the batch), moving them down when free slots before it were
    /// left out; `truncated` says the datagram was longer than the buffer. Does nothing when
    /// `slot` is not free.
    #[inline]
    pub fn keep(&mut self, slot: usize, peer: SocketAddr, len: usize, truncated: bool) {
        if slot < self.count || slot >= BATCH {
            return;
        }
        let to = self.count;
        if slot != to {
            self.buffers.copy_within(slot..slot + 1, to);
        }
        self.peers[to] = peer;
        self.lens[to] = len.min(MAX_DATAGRAM_SIZE);
        self.truncated[to] = truncated;
        self.waited_us[to] = 0;
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn push_fills_to_batch_and_clear_empties() {
        let mut batch = Datagrams::new();
        for i in 0..BATCH {
            assert!(batch.push(peer(i as u16), &[i as u8; 3]));
        }
        assert!(batch.is_full());
        assert!(!batch.push(peer(1), &[0]));
        assert_eq!(batch.get(5), (peer(5), &[5u8; 3][..], false));
        assert_eq!(batch.waited(5), Duration::ZERO);
        batch.set_waited(5, Duration::from_millis(250));
        assert_eq!(batch.waited(5), Duration::from_millis(250));
        batch.clear();
        assert!(batch.is_empty());
        batch.set_waited(0, Duration::from_secs(1)); // Not held: ignored.
        assert!(batch.push(peer(1), &[1]));
        assert_eq!(batch.waited(0), Duration::ZERO);
    }

    #[test]
    fn kept_slots_move_down_over_the_ones_left_out() {
        let mut batch = Datagrams::new();
        assert!(batch.push(peer(1), b"held"));
        let free = batch.free_buffers_mut();
        free[0][..4].copy_from_slice(b"skip");
        free[1][..4].copy_from_slice(b"kept");
        free[2][..5].copy_from_slice(b"extra");
        // Slot 1 (free slot 0) is left out, as a receive leaves a peer of an unknown family.
        batch.keep(2, peer(2), 4, false);
        batch.keep(3, peer(3), MAX_DATAGRAM_SIZE + 1, true);
        batch.keep(0, peer(9), 1, false); // Not free: ignored.
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.get(1), (peer(2), &b"kept"[..], false));
        let (from, bytes, truncated) = batch.get(2);
        assert_eq!(
            (from, &bytes[..5], bytes.len(), truncated),
            (peer(3), &b"extra"[..], MAX_DATAGRAM_SIZE, true)
        );
    }
}
