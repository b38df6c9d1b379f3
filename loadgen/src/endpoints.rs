//! The sockets a run sends from and the committee's addresses: requests are queued per
//! authority shard and leave in GSO batches; replies are read (GRO-coalesced where the kernel
//! allows) from every socket and named by the authority that sent them.

use crate::workload::Flood;
use anyhow::Result;
use fastpay_udp::SegmentBatch;
use fastpay_wire::{
    AccountId, AuthorityEntry, AuthorityName, Message, decode, encode_into, encode_request_into,
    shard_of,
};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The sockets and the committee's addresses.
pub struct Endpoints {
    sockets: Vec<UdpSocket>,
    shards: Vec<u32>,
    /// Padding of requests to each authority (see `VoteScheme::request_padding`).
    padding: Vec<u16>,
    by_address: HashMap<SocketAddr, usize>,
    names: Vec<AuthorityName>,
    buffer: Vec<u8>,
    /// Datagrams per authority and shard, sent in GSO batches at each [`flush`](Self::flush)
    /// (one batch reaches one socket of the authority's reuseport group, so it must hold one
    /// shard's datagrams).
    outgoing: Vec<Vec<SegmentBatch>>,
    /// Hostile datagrams for addresses other than the authorities' (`--flood-to`), batched
    /// like the rest so that flooding them costs loadgen no more than flooding an authority.
    flood_out: Vec<SegmentBatch>,
    /// Batches flushed so far: picks the socket of the next (spreading source ports).
    flushes: usize,
    /// The last message read (replies coalesced by the kernel when the authority sent them
    /// as one GSO batch), its sender, how long it waited in the socket before loadgen read
    /// it, and how far it has been handed out.
    incoming: Vec<u8>,
    incoming_len: usize,
    incoming_segment: usize,
    incoming_from: usize,
    incoming_waited: Duration,
    incoming_at: usize,
}

impl Endpoints {
    /// `count` nonblocking sockets (distinct source ports spread flow hashing) and the
    /// committee's addresses.
    pub fn new(authorities: &[AuthorityEntry], count: usize) -> Result<Self> {
        let mut sockets = Vec::new();
        for _ in 0..count.max(1) {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_nonblocking(true)?;
            // Best effort: without it every reply is read on its own.
            fastpay_udp::enable_gro(&socket);
            // Best effort too: without it replies are taken to have waited for nothing.
            let _ = fastpay_udp::enable_receive_timestamps(&socket);
            sockets.push(socket);
        }
        // Each shard's address (one per shard even when they are all the authority's).
        let addresses: Vec<Vec<SocketAddr>> = authorities
            .iter()
            .map(AuthorityEntry::shard_addresses)
            .collect::<Result<_, _>>()?;
        // A committee file has at least one shard per authority (it is refused otherwise).
        let outgoing = addresses
            .iter()
            .map(|shards| shards.iter().map(|a| SegmentBatch::new(*a)).collect())
            .collect();
        Ok(Self {
            sockets,
            // Replies come from the shard's address: each one names its authority.
            by_address: addresses
                .iter()
                .enumerate()
                .flat_map(|(i, shards)| shards.iter().map(move |a| (*a, i)))
                .collect(),
            shards: authorities.iter().map(|a| a.shards).collect(),
            padding: authorities
                .iter()
                .map(|a| a.votes.request_padding())
                .collect(),
            names: authorities.iter().map(|a| a.name).collect(),
            buffer: vec![0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE],
            outgoing,
            flood_out: Vec::new(),
            flushes: 0,
            incoming: vec![0u8; fastpay_udp::COALESCED_BYTES],
            incoming_len: 0,
            incoming_segment: 0,
            incoming_from: 0,
            incoming_waited: Duration::ZERO,
            incoming_at: 0,
        })
    }

    /// How many authorities the committee has.
    pub fn authorities(&self) -> usize {
        self.names.len()
    }

    /// The name of authority `authority` (its position in the committee file).
    pub fn name(&self, authority: usize) -> AuthorityName {
        self.names[authority]
    }

    /// Queues `message` for `authority` (sent at the next [`flush`](Self::flush)). A full
    /// socket buffer loses it: the request times out and is counted.
    pub fn send(&mut self, authority: usize, account: &AccountId, message: &Message) {
        let shard = shard_of(account, self.shards[authority]);
        let padding = self.padding[authority];
        if let Ok(len) = encode_request_into(message, shard, padding, &mut self.buffer) {
            self.queue(authority, shard.0, len);
        }
    }

    /// Queues the first `len` bytes of `buffer` for `shard` of `authority`. A batch that must
    /// go out early (another size, or full) leaves from the socket of the next flush.
    fn queue(&mut self, authority: usize, shard: u32, len: usize) {
        let socket = &self.sockets[self.flushes % self.sockets.len()];
        self.outgoing[authority][shard as usize].push(socket, &self.buffer[..len]);
    }

    /// Writes `n`-th datagram of random bytes behind a plausible header (so that it reaches
    /// the decoder) for shard `shard % shards`; returns its shard and length.
    fn garbage(&mut self, n: usize, shards: u32) -> (u32, usize) {
        let mut x = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let len = 150;
        for byte in self.buffer[..len].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        self.buffer[..4].copy_from_slice(&[fastpay_wire::codec::WIRE_VERSION, 1, 0, 0]);
        let shard = (x as u32) % shards.max(1);
        self.buffer[4..8].copy_from_slice(&shard.to_be_bytes());
        (shard, len)
    }

    /// Sends the `n`-th hostile datagram of `flood` to every target (or to its own
    /// addresses).
    pub fn send_flood(&mut self, flood: &Flood, n: usize, targets: &[usize]) {
        if !flood.to.is_empty() {
            if self.flood_out.is_empty() {
                self.flood_out = flood.to.iter().map(|a| SegmentBatch::new(*a)).collect();
            }
            let (_, len) = self.garbage(n, 1);
            let socket = &self.sockets[self.flushes % self.sockets.len()];
            for batch in &mut self.flood_out {
                batch.push(socket, &self.buffer[..len]);
            }
            return;
        }
        for &authority in targets {
            let (shard, len) = if flood.forged.is_empty() {
                self.garbage(n, self.shards[authority])
            } else {
                let message = &flood.forged[n % flood.forged.len()];
                let sender = match message {
                    Message::TransferOrder(order) => order.transfer.sender,
                    Message::ConfirmationOrder(c) => c.certificate.value.transfer.sender,
                    Message::AccountInfoRequest(query) => query.account,
                    _ => continue,
                };
                let shard = shard_of(&sender, self.shards[authority]);
                match encode_into(message, shard, &mut self.buffer) {
                    Ok(len) => (shard.0, len),
                    Err(_) => continue,
                }
            };
            self.queue(authority, shard, len);
        }
    }

    /// Sends everything queued: one GSO message per authority shard with datagrams waiting.
    pub fn flush(&mut self) {
        for batch in self
            .outgoing
            .iter_mut()
            .flatten()
            .chain(&mut self.flood_out)
        {
            if !batch.is_empty() {
                self.flushes += 1;
                batch.flush(&self.sockets[self.flushes % self.sockets.len()]);
            }
        }
    }

    /// How long the reply [`receive`](Self::receive) last returned had waited in loadgen's
    /// socket when loadgen read it (zero where the kernel does not stamp arrivals): loadgen's
    /// own delay, not the authority's.
    pub fn last_waited(&self) -> Duration {
        self.incoming_waited
    }

    /// One pending reply, from any socket.
    pub fn receive(&mut self) -> Option<(usize, Message)> {
        loop {
            while self.incoming_at < self.incoming_len {
                let end = (self.incoming_at + self.incoming_segment).min(self.incoming_len);
                let bytes = &self.incoming[self.incoming_at..end];
                self.incoming_at = end;
                if let Ok((_, message)) = decode(bytes) {
                    return Some((self.incoming_from, message));
                }
            }
            if !self.read_message() {
                return None;
            }
        }
    }

    /// Reads the next message from an authority into `incoming`; `false` when every socket
    /// is drained.
    fn read_message(&mut self) -> bool {
        for socket in &self.sockets {
            loop {
                match fastpay_udp::recv_coalesced(socket, &mut self.incoming) {
                    Ok(read) => {
                        let Some(&authority) = self.by_address.get(&read.from) else {
                            continue;
                        };
                        self.incoming_len = read.len;
                        self.incoming_segment = read.segment.max(1);
                        self.incoming_from = authority;
                        self.incoming_waited = read.waited;
                        self.incoming_at = 0;
                        return true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        false
    }
}
