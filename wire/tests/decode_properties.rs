//! Untrusted bytes never panic the decoder, and what decodes re-encodes to the same bytes.

mod common;

use fastpay_wire::codec::MAX_DATAGRAM_SIZE;
use fastpay_wire::{ShardId, decode, encode, encode_padded};
use proptest::prelude::*;

fn encoded_samples() -> Vec<Vec<u8>> {
    common::sample_messages()
        .into_iter()
        .map(|(_, m)| encode(&m, ShardId(1)).unwrap())
        .chain(
            common::merkle_sample_messages()
                .into_iter()
                .map(|(_, m, padding)| encode_padded(&m, ShardId(1), padding).unwrap()),
        )
        .collect()
}

/// Decoding is canonical: any accepted datagram is exactly the encoding of what it decoded to.
fn assert_canonical(bytes: &[u8]) {
    if let Ok((header, message)) = decode(bytes) {
        assert_eq!(
            encode_padded(&message, header.shard, header.padding).unwrap(),
            bytes
        );
    }
}

#[test]
fn samples_round_trip() {
    for (name, message) in common::sample_messages() {
        let bytes = encode(&message, ShardId(5)).unwrap();
        let (header, decoded) = decode(&bytes).unwrap();
        assert_eq!(header.shard, ShardId(5), "{name}");
        assert_eq!(decoded, message, "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        assert_canonical(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        kind in 0u8..10,
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = vec![1, kind, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&body);
        assert_canonical(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        sample in 0usize..9,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encoded_samples().swap_remove(sample);
        for (position, value) in edits {
            let i = position.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        assert_canonical(&bytes);
    }

    #[test]
    fn oversized_datagrams_are_refused(extra in 1usize..64) {
        let bytes = vec![1u8; MAX_DATAGRAM_SIZE + extra];
        prop_assert!(decode(&bytes).is_err());
    }
}
