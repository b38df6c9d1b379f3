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
    }));
    assert!(ack <= confirmation, "{ack} > {confirmation}");

    // An unpadded query is smaller than any answer: the engine will not reply to it.
    let unpadded = size(&Message::AccountInfoRequest(AccountInfoRequest {
        account,
        padding: Vec::new(),
    }));
    assert!(unpadded < refusal);
}
