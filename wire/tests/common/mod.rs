//! Deterministic sample messages shared by the wire tests.

use fastpay_wire::*;

pub fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed([seed; 32])
}

pub fn transfer(sequence: u64, amount: u64, memo: bool) -> Transfer {
    Transfer {
        sender: key(1).account(),
        recipient: key(2).account(),
        amount: Amount::new(amount),
        sequence_number: SequenceNumber::new(sequence),
        user_data: memo.then_some(UserData([0xab; 32])),
    }
}

/// The committee the samples are signed for: authorities 10 to 13, one vote each.
pub fn committee() -> Committee {
    Committee::equal_weights((10..=13).map(|seed| key(seed).authority()), 1).unwrap()
}

pub fn certificate(order: TransferOrder, voters: &[u8]) -> CertifiedTransferOrder {
    let committee = committee().id();
    CertifiedTransferOrder {
        value: order,
        signatures: voters
            .iter()
            .map(|&seed| {
                let vote = SignedTransferOrder::new(order, &committee, &key(seed));
                (vote.authority, vote.signature)
            })
            .collect(),
    }
}

/// The committee of [`committee`] with every member signing batches of votes.
pub fn merkle_committee() -> Committee {
    committee().with_vote_scheme(VoteScheme::Merkle)
}

/// Authority `seed`'s batched vote for `order`, as leaf `index` of a batch of `size` votes
/// whose other leaves are orders of other sequence numbers.
pub fn batched_vote(
    order: TransferOrder,
    seed: u8,
    size: usize,
    index: usize,
) -> SignedTransferOrder {
    let committee = committee().id();
    let leaves: Vec<[u8; 32]> = (0..size)
        .map(|i| {
            let other = if i == index {
                order
            } else {
                TransferOrder::new(transfer(1000 + i as u64, 1, false), &committee, &key(1))
            };
            fastpay_wire::merkle::leaf_hash(&other.vote_bytes(&committee))
        })
        .collect();
    let mut tree = TreeBuilder::new();
    let signature = tree.sign(&leaves, &committee, &key(seed)).unwrap();
    SignedTransferOrder::batched(
        order,
        key(seed).authority(),
        tree.proof(index, signature).unwrap(),
    )
}

/// A certificate of batched votes by `voters`, each from a batch of `size` votes.
pub fn batched_certificate(
    order: TransferOrder,
    voters: &[u8],
    size: usize,
) -> CertifiedTransferOrder {
    CertifiedTransferOrder {
        value: order,
        signatures: voters
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                let vote = batched_vote(order, seed, size, i % size);
                (vote.authority, vote.signature)
            })
            .collect(),
    }
}

/// The messages whose encoding the batched scheme changes: votes, certificates and pending
/// votes carrying proofs, and requests padded for them.
pub fn merkle_sample_messages() -> Vec<(&'static str, Message, u16)> {
    let committee = committee().id();
    let padding = merkle_committee().request_padding();
    let order = TransferOrder::new(transfer(7, 1_000, true), &committee, &key(1));
    let certificate = batched_certificate(order, &[10, 11, 12], 5);
    vec![
        (
            "transfer_order_padded",
            Message::TransferOrder(order),
            padding,
        ),
        (
            "account_info_request_padded",
            Message::AccountInfoRequest(AccountInfoRequest::new(key(1).account())),
            padding,
        ),
        (
            "confirmation_order",
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certificate.clone(),
            }),
            0,
        ),
        (
            "vote",
            Message::Vote(VoteReply::of(&batched_vote(order, 10, 64, 37))),
            0,
        ),
        (
            "account_info_response",
            Message::AccountInfoResponse(AccountInfoResponse {
                account: key(1).account(),
                balance: Balance::new(-5),
                next_sequence_number: SequenceNumber::new(7),
                pending: Some(batched_vote(order, 11, 3, 2)),
                deposited: Balance::ZERO,
            }),
            0,
        ),
    ]
}

/// One message of every kind, with fields that exercise every encoding path.
pub fn sample_messages() -> Vec<(&'static str, Message)> {
    let committee = committee().id();
    let order = TransferOrder::new(transfer(7, 1_000, true), &committee, &key(1));
    let plain = TransferOrder::new(transfer(0, 1, false), &committee, &key(1));
    let certificate = certificate(order, &[10, 11, 12]);
    vec![
        ("transfer_order", Message::TransferOrder(order)),
        ("transfer_order_no_memo", Message::TransferOrder(plain)),
        (
            "confirmation_order",
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certificate.clone(),
            }),
        ),
        (
            "account_info_request",
            Message::AccountInfoRequest(AccountInfoRequest::new(key(1).account())),
        ),
        (
            "account_info_request_certificate",
            // Padding trimmed to keep the listing short; real queries pad to their answer.
            Message::AccountInfoRequest(AccountInfoRequest {
                account: key(1).account(),
                query: AccountQuery::Certificate(SequenceNumber::new(7)),
                padding: vec![0; 4],
            }),
        ),
        (
            "account_info_request_received",
            Message::AccountInfoRequest(AccountInfoRequest {
                account: key(1).account(),
                query: AccountQuery::Received(3),
                padding: vec![0; 4],
            }),
        ),
        (
            "certificates_certificate",
            Message::Certificates(CertificatesResponse {
                account: key(1).account(),
                query: AccountQuery::Certificate(SequenceNumber::new(7)),
                answer: CertificateAnswer::Certificate(certificate.clone()),
            }),
        ),
        (
            "certificates_received",
            Message::Certificates(CertificatesResponse {
                account: key(1).account(),
                query: AccountQuery::Received(3),
                answer: CertificateAnswer::Received {
                    certificates: vec![certificate.clone()],
                    next: 4,
                    end: 9,
                },
            }),
        ),
        (
            "certificates_not_applied",
            Message::Certificates(CertificatesResponse {
                account: key(1).account(),
                query: AccountQuery::Certificate(SequenceNumber::new(9)),
                answer: CertificateAnswer::NotApplied {
                    next_sequence_number: SequenceNumber::new(8),
                },
            }),
        ),
        (
            "certificates_pruned",
            Message::Certificates(CertificatesResponse {
                account: key(1).account(),
                query: AccountQuery::Certificate(SequenceNumber::new(2)),
                answer: CertificateAnswer::Pruned,
            }),
        ),
        (
            "cross_shard_update",
            Message::CrossShardUpdate(CrossShardUpdate {
                recipient_shard: ShardId(3),
                certificate,
            }),
        ),
        (
            "vote",
            Message::Vote(VoteReply::of(&SignedTransferOrder::new(
                order,
                &committee,
                &key(10),
            ))),
        ),
        (
            "account_info_response",
            Message::AccountInfoResponse(AccountInfoResponse {
                account: key(1).account(),
                balance: Balance::new(-5),
                next_sequence_number: SequenceNumber::new(7),
                pending: Some(SignedTransferOrder::new(order, &committee, &key(11))),
                deposited: Balance::ZERO,
            }),
        ),
        (
            "shard_link_forward",
            Message::ShardLink(ShardLink {
                frame: LinkFrame {
                    from: ShardId(1),
                    to: ShardId(2),
                    ack: 41,
                    payload: LinkPayload::Forward {
                        peer: PeerAddress::V4([127, 0, 0, 1], 4000),
                        datagram: vec![1, 2, 3],
                    },
                },
                tag: [0x5a; 32],
            }),
        ),
        (
            "error",
            Message::Error(ErrorReply {
                code: ErrorCode::InsufficientFunds,
                account: key(1).account(),
                sequence_number: SequenceNumber::new(7),
            }),
        ),
    ]
}
