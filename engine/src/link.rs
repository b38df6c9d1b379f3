//! The link between shard processes of one authority (when shards run as separate processes
//! with `run --shard J`): credits travel as sequenced frames, retransmitted until
//! acknowledged and delivered in order exactly once; misrouted client datagrams are passed on
//! unsequenced. Every frame carries a keyed BLAKE3 tag with a key derived from the authority's
//! secret, so nobody outside the authority can inject, reorder or forge link traffic; the
//! receiving shard still checks each credit's certificate, so a credit also proves itself.
//!
//! This module keeps the link's state and builds frames; the runtime moves the bytes and
//! supplies the time.

use fastpay_wire::codec::{HEADER_LEN, MAX_DATAGRAM_SIZE};
use fastpay_wire::{
    CrossShardUpdate, LinkPayload, Message, PeerAddress, ShardId, ShardLink, decode, encode_into,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a sender waits for an acknowledgement before resending its window. Loopback
/// round trips are tens of microseconds; a busy receiver drains its socket within a few ms.
pub const LINK_RETRY: Duration = Duration::from_millis(20);

/// Unacknowledged credits sent (or resent) at once per destination: go-back-N's window.
pub const LINK_WINDOW: usize = 256;

/// Credits a shard keeps for one destination before refusing more: bounds memory while the
/// destination is away (the runtime then stops reading its socket).
pub const LINK_OUTBOX_LIMIT: usize = 65_536;

const TAG_LEN: usize = 32;
const KEY_CONTEXT: &str = "fastpay 2026-11 shard link v1";

/// The link key shared by the shard processes of one authority.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    /// Derives the link key from the authority's secret seed.
    pub fn derive(authority_seed: &[u8; 32]) -> Self {
        Self(blake3::derive_key(KEY_CONTEXT, authority_seed))
    }

    fn tag(&self, datagram_without_tag: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.0, datagram_without_tag)
    }

    /// Fills in the tag of an encoded frame (its last 32 bytes, written as zeros).
    fn seal(&self, datagram: &mut [u8]) {
        let body = datagram.len().saturating_sub(TAG_LEN);
        let tag = self.tag(&datagram[..body]);
        // The tag is zeroed in what it covers; it is the frame's last field.
        datagram[body..].copy_from_slice(tag.as_bytes());
    }

    /// Whether `datagram`'s tag is right (constant-time comparison).
    fn verify(&self, datagram: &[u8]) -> bool {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return false;
        }
        let body = datagram.len() - TAG_LEN;
        let mut received = [0u8; TAG_LEN];
        received.copy_from_slice(&datagram[body..]);
        blake3::Hash::from(received) == self.tag(&datagram[..body])
    }
}

/// What an accepted frame delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing new (an acknowledgement, a duplicate, or an out-of-order credit).
    Nothing,
    /// The next credit from the sending shard, in order: its incarnation, its position.
    Credit(CrossShardUpdate, u64, u64),
    /// A client datagram to process as if received, answering `peer`.
    Forward(SocketAddr, Vec<u8>),
}

/// Why a link datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Wrong or missing tag: not from this authority.
    BadTag,
    /// Not a link frame, or not for this shard.
    Malformed,
    /// From an older incarnation of the sender (a replay).
    StaleEpoch,
}

#[derive(Default)]
struct Peer {
    next_sequence: u64,
    acked: u64,
    unacked: VecDeque<(u64, CrossShardUpdate)>,
    last_transmit: Option<Instant>,
    their_epoch: u64,
    next_expected: u64,
    ack_due: bool,
}

/// One shard's end of its links to every other shard of the authority.
pub struct Link {
    me: ShardId,
    epoch: u64,
    key: LinkKey,
    peers: Vec<Peer>,
    scratch: Vec<u8>,
}

impl Link {
    /// Shard `me` of `num_shards`, in incarnation `epoch` (larger than any earlier one: the
    /// runtime uses the start time).
    pub fn new(me: ShardId, num_shards: u32, key: LinkKey, epoch: u64) -> Self {
        Self {
            me,
            epoch,
            key,
            peers: (0..num_shards)
                .map(|_| Peer {
                    next_sequence: 1,
                    next_expected: 1,
                    ..Peer::default()
                })
                .collect(),
            scratch: vec![0u8; MAX_DATAGRAM_SIZE],
        }
    }

    /// How many credits queued for `to` in this incarnation it has acknowledged.
    pub fn acked(&self, to: ShardId) -> u64 {
        self.peers.get(to.0 as usize).map_or(0, |p| p.acked)
    }

    /// After a restart: credits from `from` up to `applied` in its incarnation `epoch` were
    /// applied (durably) before the crash; expect the next one.
    pub fn restore_inbound(&mut self, from: ShardId, epoch: u64, applied: u64) {
        if let Some(peer) = self.peers.get_mut(from.0 as usize) {
            if epoch >= peer.their_epoch {
                peer.their_epoch = epoch;
                peer.next_expected = applied.saturating_add(1);
            }
        }
    }

    /// Credits waiting for acknowledgement, over all destinations.
    pub fn unacked(&self) -> usize {
        self.peers.iter().map(|p| p.unacked.len()).sum()
    }

    /// Whether `to`'s outbox is full.
    pub fn is_full(&self, to: ShardId) -> bool {
        self.peers
            .get(to.0 as usize)
            .is_some_and(|p| p.unacked.len() >= LINK_OUTBOX_LIMIT)
    }

    /// Queues a credit for `to`; it goes out with the next [`transmit`](Self::transmit).
    pub fn queue_credit(&mut self, to: ShardId, update: CrossShardUpdate) {
        if let Some(peer) = self.peers.get_mut(to.0 as usize) {
            let sequence = peer.next_sequence;
            peer.next_sequence = sequence.saturating_add(1);
            peer.unacked.push_back((sequence, update));
            // Send the new credit promptly rather than at the next retry.
            if peer.unacked.len() <= LINK_WINDOW {
                peer.last_transmit = None;
            }
        }
    }

    /// Builds a sealed frame passing a client datagram to `to`; `None` if it would not fit.
    pub fn forward(&mut self, to: ShardId, peer: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        let payload = LinkPayload::Forward {
            peer: PeerAddress::from(peer),
            datagram: datagram.to_vec(),
        };
        self.frame(to, 0, payload)
    }

    fn frame(&mut self, to: ShardId, sequence: u64, payload: LinkPayload) -> Option<Vec<u8>> {
        let peer = self.peers.get_mut(to.0 as usize)?;
        peer.ack_due = false;
        let frame = Message::ShardLink(ShardLink {
            from: self.me,
            to,
            epoch: self.epoch,
            sequence,
            ack_epoch: peer.their_epoch,
            ack: peer.next_expected.saturating_sub(1),
            payload,
            tag: [0; TAG_LEN],
        });
        let len = encode_into(&frame, to, &mut self.scratch).ok()?;
        let datagram = &mut self.scratch[..len];
        self.key.seal(datagram);
        Some(datagram.to_vec())
    }

    /// Frames due now: new and timed-out credits (the whole window, in order) and pending
    /// acknowledgements, each with its destination shard.
    pub fn transmit(&mut self, now: Instant) -> Vec<(ShardId, Vec<u8>)> {
        let mut out = Vec::new();
        for index in 0..self.peers.len() {
            let to = ShardId(index as u32);
            let peer = &mut self.peers[index];
            let due = !peer.unacked.is_empty()
                && peer
                    .last_transmit
                    .is_none_or(|t| now.duration_since(t) >= LINK_RETRY);
            if due {
                peer.last_transmit = Some(now);
                let window: Vec<(u64, CrossShardUpdate)> =
                    peer.unacked.iter().take(LINK_WINDOW).cloned().collect();
                for (sequence, update) in window {
                    if let Some(frame) = self.frame(to, sequence, LinkPayload::Credit(update)) {
                        out.push((to, frame));
                    }
                }
            } else if peer.ack_due {
                if let Some(frame) = self.frame(to, 0, LinkPayload::Ack) {
                    out.push((to, frame));
                }
            }
        }
        out
    }

    /// When the next retransmission is due, if any credit waits for acknowledgement.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter(|p| !p.unacked.is_empty())
            .filter_map(|p| p.last_transmit.map(|t| t + LINK_RETRY))
            .min()
    }

    /// Takes one datagram from the link socket.
    pub fn receive(&mut self, datagram: &[u8]) -> Result<Delivery, LinkError> {
        if !self.key.verify(datagram) {
            return Err(LinkError::BadTag);
        }
        let Ok((_, Message::ShardLink(frame))) = decode(datagram) else {
            return Err(LinkError::Malformed);
        };
        if frame.to != self.me || frame.from == self.me {
            return Err(LinkError::Malformed);
        }
        let epoch = self.epoch;
        let Some(peer) = self.peers.get_mut(frame.from.0 as usize) else {
            return Err(LinkError::Malformed);
        };
        if frame.epoch < peer.their_epoch {
            return Err(LinkError::StaleEpoch);
        }
        if frame.epoch > peer.their_epoch {
            // A new incarnation of the sender starts its sequence afresh.
            peer.their_epoch = frame.epoch;
            peer.next_expected = 1;
        }
        if frame.ack_epoch == epoch {
            while peer.unacked.front().is_some_and(|(s, _)| *s <= frame.ack) {
                peer.unacked.pop_front();
            }
            peer.acked = peer.acked.max(frame.ack);
        }
        match frame.payload {
            LinkPayload::Ack => Ok(Delivery::Nothing),
            LinkPayload::Forward {
                peer: client,
                datagram,
            } => Ok(Delivery::Forward(client.into(), datagram)),
            LinkPayload::Credit(update) => {
                peer.ack_due = true;
                if frame.sequence == peer.next_expected {
                    peer.next_expected = peer.next_expected.saturating_add(1);
                    Ok(Delivery::Credit(update, frame.epoch, frame.sequence))
                } else {
                    // A duplicate, or ahead of a gap that go-back-N will fill.
                    Ok(Delivery::Nothing)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        AccountId, Amount, CertifiedTransferOrder, KeyPair, SequenceNumber, Transfer, TransferOrder,
    };

    fn credit(n: u64) -> CrossShardUpdate {
        let key = KeyPair::from_seed([3; 32]);
        CrossShardUpdate {
            recipient_shard: ShardId(1),
            certificate: CertifiedTransferOrder {
                value: TransferOrder::new(
                    Transfer {
                        sender: key.account(),
                        recipient: AccountId([4; 32]),
                        amount: Amount::new(1),
                        sequence_number: SequenceNumber::new(n),
                        user_data: None,
                    },
                    &key,
                ),
                signatures: Vec::new(),
            },
        }
    }

    fn pair() -> (Link, Link) {
        let key = LinkKey::derive(&[1; 32]);
        (
            Link::new(ShardId(0), 2, key.clone(), 10),
            Link::new(ShardId(1), 2, key, 20),
        )
    }

    #[test]
    fn credits_arrive_once_in_order_despite_loss_and_duplicates() {
        let (mut a, mut b) = pair();
        let t0 = Instant::now();
        for n in 0..5 {
            a.queue_credit(ShardId(1), credit(n));
        }
        let frames = a.transmit(t0);
        assert_eq!(frames.len(), 5);
        // Lose the second frame; duplicate the fourth.
        let mut delivered = Vec::new();
        for (i, (_, frame)) in frames.iter().enumerate() {
            if i == 1 {
                continue;
            }
            for _ in 0..(1 + usize::from(i == 3)) {
                if let Delivery::Credit(u, _, _) = b.receive(frame).unwrap() {
                    delivered.push(u.certificate.value.transfer.sequence_number.value());
                }
            }
        }
        assert_eq!(delivered, vec![0]);
        // B acknowledges what it has; A resends the rest after the retry interval.
        for (_, ack) in b.transmit(t0) {
            assert_eq!(a.receive(&ack).unwrap(), Delivery::Nothing);
        }
        assert_eq!(a.unacked(), 4);
        assert!(
            a.transmit(t0).is_empty(),
            "nothing is due before the retry interval"
        );
        for (_, frame) in a.transmit(t0 + LINK_RETRY) {
            if let Delivery::Credit(u, _, _) = b.receive(&frame).unwrap() {
                delivered.push(u.certificate.value.transfer.sequence_number.value());
            }
        }
        assert_eq!(delivered, vec![0, 1, 2, 3, 4]);
        for (_, ack) in b.transmit(t0) {
            a.receive(&ack).unwrap();
        }
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn forged_tampered_and_stale_frames_are_refused() {
        let (mut a, mut b) = pair();
        a.queue_credit(ShardId(1), credit(0));
        let (_, frame) = a.transmit(Instant::now()).pop().unwrap();
        let mut tampered = frame.clone();
        let i = tampered.len() / 2;
        tampered[i] ^= 1;
        assert_eq!(b.receive(&tampered), Err(LinkError::BadTag));
        let mut outsider = Link::new(ShardId(0), 2, LinkKey::derive(&[2; 32]), 10);
        outsider.queue_credit(ShardId(1), credit(0));
        let (_, forged) = outsider.transmit(Instant::now()).pop().unwrap();
        assert_eq!(b.receive(&forged), Err(LinkError::BadTag));
        assert!(matches!(b.receive(&frame), Ok(Delivery::Credit(..))));

        // A restarted sender (newer epoch) starts afresh; the old incarnation's frames are
        // refused from then on.
        let key = LinkKey::derive(&[1; 32]);
        let mut restarted = Link::new(ShardId(0), 2, key, 11);
        restarted.queue_credit(ShardId(1), credit(1));
        let (_, fresh) = restarted.transmit(Instant::now()).pop().unwrap();
        assert!(matches!(b.receive(&fresh), Ok(Delivery::Credit(..))));
        assert_eq!(b.receive(&frame), Err(LinkError::StaleEpoch));
    }

    #[test]
    fn forwarded_datagrams_keep_their_client() {
        let (mut a, mut b) = pair();
        let client: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let frame = a.forward(ShardId(1), client, &[1, 2, 3]).unwrap();
        assert_eq!(
            b.receive(&frame).unwrap(),
            Delivery::Forward(client, vec![1, 2, 3])
        );
    }
}
