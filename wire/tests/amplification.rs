//! Every reply an authority sends fits within the request that asked for it, so forged source
//! addresses cannot turn an authority into an amplifier. The engine enforces the rule; these
//! sizes make sure honest requests always get their answer.

#[allow(dead_code)]
mod common;

use fastpay_wire::*;

fn size(message: &Message) -> usize {
    encode(message, ShardId(0)).unwrap().len()
}

#[test]
fn replies_fit_their_requests() {
    let committee = common::committee().id();
    let bare = TransferOrder::new(common::transfer(1, 1, false), &committee, &common::key(1));
    let memo = TransferOrder::new(common::transfer(1, 1, true), &committee, &common::key(1));
    let vote = SignedTransferOrder::new(memo, &committee, &common::key(10));
    let account = common::key(1).account();

    // The smallest order still gets its vote.
    let vote_reply = size(&Message::Vote(VoteReply::of(&vote)));
    assert!(
        vote_reply <= size(&Message::TransferOrder(bare)),
        "{vote_reply}"
    );

    // A padded query gets even the largest answer: a pending vote on an order with a memo.
    let query = size(&Message::AccountInfoRequest(AccountInfoRequest::new(
        account,
    )));
    let largest = size(&Message::AccountInfoResponse(AccountInfoResponse {
        account,
        balance: Balance::new(i128::MIN),
        next_sequence_number: SequenceNumber::new(u64::MAX),
        pending: Some(vote),
        deposited: Balance::new(i128::MIN),
    }));
    assert!(largest <= query, "answer {largest} > query {query}");

    // Refusals fit every request; a confirmation's acknowledgement (which carries no pending
    // vote) fits the smallest confirmation, from a committee of one.
    let refusal = size(&Message::Error(ErrorReply {
        code: ErrorCode::InsufficientFunds,
        account,
        sequence_number: SequenceNumber::new(u64::MAX),
    }));
    assert!(refusal <= size(&Message::TransferOrder(bare)));
    assert!(refusal <= query);
    let confirmation = size(&Message::ConfirmationOrder(ConfirmationOrder {
        certificate: common::certificate(bare, &[10]),
    }));
    let ack = size(&Message::AccountInfoResponse(AccountInfoResponse {
        account,
        balance: Balance::new(i128::MIN),
        next_sequence_number: SequenceNumber::new(u64::MAX),
        pending: None,
        deposited: Balance::new(i128::MIN),
    }));
    assert!(ack <= confirmation, "{ack} > {confirmation}");

    // An unpadded query is no larger than a refusal: the node answers no query shorter than
    // a padded state query (`MIN_QUERY_BYTES`), so it gets nothing at all.
    assert_eq!(query, MIN_QUERY_BYTES);
    let unpadded = size(&Message::AccountInfoRequest(AccountInfoRequest {
        account,
        query: AccountQuery::State,
        padding: Vec::new(),
    }));
    assert!(unpadded <= refusal && unpadded < MIN_QUERY_BYTES);
}

#[test]
fn certificate_queries_are_their_own_budget() {
    let committee = common::committee().id();
    let memo = TransferOrder::new(common::transfer(1, 1, true), &committee, &common::key(1));
    let account = common::key(1).account();
    let sequence = SequenceNumber::new(u64::MAX);
    // Sizes are what the constructors say, whatever was asked, and at most one datagram.
    for (asked, expected) in [
        (0, CERTIFICATE_QUERY_BYTES),
        (5000, 5000),
        (1 << 20, codec::MAX_DATAGRAM_SIZE),
    ] {
        let query = AccountInfoRequest::certificate(account, sequence, asked);
        assert_eq!(size(&Message::AccountInfoRequest(query)), expected);
        let page = AccountInfoRequest::received(account, u64::MAX, asked);
        assert_eq!(size(&Message::AccountInfoRequest(page)), expected);
    }
    // The default budget holds a certificate of 27 votes (a committee of 40) and a page of
    // several certificates of a committee of four; the typed refusals fit any query.
    let signers: Vec<u8> = (10..37).collect();
    let large = common::certificate(memo, &signers);
    let answer = |answer| {
        size(&Message::Certificates(CertificatesResponse {
            account,
            query: AccountQuery::Received(u64::MAX),
            answer,
        }))
    };
    assert!(answer(CertificateAnswer::Certificate(large)) <= CERTIFICATE_QUERY_BYTES);
    let small = common::certificate(memo, &[10, 11, 12]);
    let page = answer(CertificateAnswer::Received {
        certificates: vec![small; 8],
        next: u64::MAX,
        end: u64::MAX,
    });
    assert!(page <= CERTIFICATE_QUERY_BYTES, "{page}");
    let state_query = size(&Message::AccountInfoRequest(AccountInfoRequest::new(
        account,
    )));
    assert!(answer(CertificateAnswer::Pruned) <= state_query);
    assert!(
        answer(CertificateAnswer::NotApplied {
            next_sequence_number: sequence
        }) <= state_query
    );
}

/// With batched votes, requests carry the committee's padding and every reply still fits:
/// the largest vote (a path of the greatest depth) within the smallest padded order, and the
/// largest account state within a padded query.
#[test]
fn batched_votes_fit_padded_requests() {
    let committee = common::merkle_committee();
    let padding = committee.request_padding();
    let id = committee.id();
    let bare = TransferOrder::new(common::transfer(1, 1, false), &id, &common::key(1));
    let memo = TransferOrder::new(common::transfer(1, 1, true), &id, &common::key(1));
    let deepest = common::batched_vote(memo, 10, fastpay_wire::merkle::MAX_LEAVES, 5);
    let padded = |m: &Message| encode_padded(m, ShardId(0), padding).unwrap().len();
    let vote_reply = size(&Message::Vote(VoteReply::of(&deepest)));
    let order = padded(&Message::TransferOrder(bare));
    assert!(vote_reply <= order, "{vote_reply} > {order}");
    // Without the padding it would not fit: the padding is needed, not decoration.
    assert!(vote_reply > size(&Message::TransferOrder(bare)));
    let account = common::key(1).account();
    let largest = size(&Message::AccountInfoResponse(AccountInfoResponse {
        account,
        balance: Balance::new(i128::MIN),
        next_sequence_number: SequenceNumber::new(u64::MAX),
        pending: Some(deepest),
        deposited: Balance::new(i128::MIN),
    }));
    // A state query as clients send it (`encode_request`) carries the committee's padding.
    let request = Message::AccountInfoRequest(AccountInfoRequest::new(account));
    let query = encode_request(&request, ShardId(0), padding).unwrap().len();
    assert_eq!(query, padded(&request));
    assert!(largest <= query, "answer {largest} > query {query}");
    assert_eq!(common::committee().request_padding(), 0);
}
