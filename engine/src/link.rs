//! The datagram form of a frame between shard processes of one authority (when shards run as
//! separate processes with `run --shard J`). The protocol (numbering, acknowledgements,
//! retransmission) is the node's (`fastpay_node::links`), the same as between threads; this
//! module only seals frames into datagrams and opens them. Every datagram carries a keyed
//! BLAKE3 tag with a key derived from the authority's secret and the committee id, so nobody
//! outside the authority can inject or forge link traffic, and frames captured in an earlier
//! network of the same keys (whose link numbering started at 1 too) do not open in a new
//! one; the receiving shard still checks each credit's certificate, so a credit also proves
//! itself.

use fastpay_wire::codec::HEADER_LEN;
use fastpay_wire::{CommitteeId, LinkFrame, Message, ShardLink, decode, encode_into};

const TAG_LEN: usize = 32;
const KEY_CONTEXT: &str = "fastpay 2026-12 shard link v3";

/// The link key shared by the shard processes of one authority.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    /// Derives the link key from the authority's secret seed and the committee's id.
    pub fn derive(authority_seed: &[u8; 32], committee: &CommitteeId) -> Self {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(authority_seed);
        material[32..].copy_from_slice(committee.as_bytes());
        Self(blake3::derive_key(KEY_CONTEXT, &material))
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

/// Why a link datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Wrong or missing tag: not from this authority.
    BadTag,
    /// Not a link frame.
    Malformed,
}

impl LinkKey {
    /// Encodes `frame` as a sealed datagram into `out`; returns its length, or `None` if it
    /// does not fit.
    pub fn seal_frame(&self, frame: LinkFrame, out: &mut [u8]) -> Option<usize> {
        let to = frame.to;
        let message = Message::ShardLink(ShardLink {
            frame,
            tag: [0; TAG_LEN],
        });
        let len = encode_into(&message, to, out).ok()?;
        self.seal(&mut out[..len]);
        Some(len)
    }

    /// Checks a datagram's tag and decodes its frame.
    pub fn open_frame(&self, datagram: &[u8]) -> Result<LinkFrame, LinkError> {
        if !self.verify(datagram) {
            return Err(LinkError::BadTag);
        }
        match decode(datagram) {
            Ok((_, Message::ShardLink(link))) => Ok(link.frame),
            _ => Err(LinkError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::codec::MAX_DATAGRAM_SIZE;
    use fastpay_wire::{LinkPayload, PeerAddress, ShardId};

    fn frame() -> LinkFrame {
        LinkFrame {
            from: ShardId(0),
            to: ShardId(1),
            ack: 7,
            payload: LinkPayload::Forward {
                peer: PeerAddress::V4([127, 0, 0, 1], 4567),
                datagram: vec![1, 2, 3],
            },
        }
    }

    #[test]
    fn frames_round_trip_and_forged_or_tampered_ones_are_refused() {
        let network = CommitteeId([7; 32]);
        let key = LinkKey::derive(&[1; 32], &network);
        let mut buffer = vec![0; MAX_DATAGRAM_SIZE];
        let len = key.seal_frame(frame(), &mut buffer).unwrap();
        let datagram = buffer[..len].to_vec();
        assert_eq!(key.open_frame(&datagram), Ok(frame()));

        let mut tampered = datagram.clone();
        tampered[len / 2] ^= 1;
        assert_eq!(key.open_frame(&tampered), Err(LinkError::BadTag));
        let outsider = LinkKey::derive(&[2; 32], &network);
        let len = outsider.seal_frame(frame(), &mut buffer).unwrap();
        assert_eq!(key.open_frame(&buffer[..len]), Err(LinkError::BadTag));
        // The same authority in an earlier network of the same keys.
        let old_network = LinkKey::derive(&[1; 32], &CommitteeId([8; 32]));
        let len = old_network.seal_frame(frame(), &mut buffer).unwrap();
        assert_eq!(key.open_frame(&buffer[..len]), Err(LinkError::BadTag));
        assert_eq!(key.open_frame(&[0; 4]), Err(LinkError::BadTag));
    }
}
