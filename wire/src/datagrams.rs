//! A batch of datagrams with their peers, in buffers allocated once: what a shard reads from
//! its socket in one go and what it sends back.

use crate::codec::MAX_DATAGRAM_SIZE;
use std::net::SocketAddr;

/// Datagrams moved per system call. 64 amortises the call over many datagrams while keeping
/// the buffers (64 × 8 KiB each way) within a shard core's L2; larger batches did not raise
/// loopback throughput in our runs.
pub const BATCH: usize = 64;

/// A batch of datagrams with their peers: filled by a batched receive, drained by a batched send.
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
