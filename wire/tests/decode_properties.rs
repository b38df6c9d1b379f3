//! Untrusted bytes never panic the decoder, and what decodes re-encodes to the same bytes.

mod common;

use fastpay_wire::codec::{MAX_DATAGRAM_SIZE, peek_subject};
use fastpay_wire::{Message, SequenceNumber, ShardId, decode, encode, encode_padded};
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

/// Decoding is canonical: any accepted datagram is exactly the encoding of what it decoded to;
/// and what `peek_subject` reads without decoding agrees with what decoding gives.
fn assert_canonical(bytes: &[u8]) {
    let peeked = peek_subject(bytes);
    if let Ok((header, message)) = decode(bytes) {
        assert_eq!(
            encode_padded(&message, header.shard, header.padding).unwrap(),
            bytes
        );
        assert_eq!(peeked.map(|(_, a, s)| (a, s)), subject(&message));
        if let Some((kind, _, _)) = peeked {
            assert_eq!(kind, header.kind);
        }
    }
}

/// The account and sequence number a shard refuses an overloaded request with.
fn subject(message: &Message) -> Option<(fastpay_wire::AccountId, SequenceNumber)> {
    match message {
        Message::TransferOrder(order) => {
            Some((order.transfer.sender, order.transfer.sequence_number))
        }
        Message::ConfirmationOrder(order) => {
            let transfer = &order.certificate.value.transfer;
            Some((transfer.sender, transfer.sequence_number))
        }
        Message::AccountInfoRequest(request) => Some((request.account, SequenceNumber::ZERO)),
        _ => None,
    }
}

#[test]
fn peeked_subjects_agree_with_decoding_on_every_sample() {
    let mut peeked = 0;
    for bytes in encoded_samples() {
        assert_canonical(&bytes);
        peeked += usize::from(peek_subject(&bytes).is_some());
    }
    assert!(
        peeked >= 3,
        "orders, confirmations and queries are among the samples"
    );
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
