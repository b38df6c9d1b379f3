//! One decoded message in, replies and credits out: the single-message path, without the
//! node's batching, that the simulation's Byzantine authority and tests use (the runtime
//! goes through `fastpay_node::ShardNode`).

use crate::error::AuthorityError;
use crate::shard::AuthorityShard;
use fastpay_wire::{AccountId, CrossShardUpdate, Message, SequenceNumber, VoteReply};

/// What handling one message produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handled {
    /// The reply for the sender of the message, if it gets one.
    pub reply: Option<Message>,
    /// A credit for another shard of this authority.
    pub cross_shard: Option<CrossShardUpdate>,
    /// The refusal, for counting; also encoded in `reply`.
    pub error: Option<AuthorityError>,
}

impl Handled {
    fn refused(error: AuthorityError, account: AccountId, sequence_number: SequenceNumber) -> Self {
        Self {
            reply: Some(Message::Error(error.reply(account, sequence_number))),
            cross_shard: None,
            error: Some(error),
        }
    }
}

impl AuthorityShard {
    /// Handles one message addressed to this shard. Replies (votes, account states, refusals)
    /// are for the message's sender; `cross_shard` is for another shard. Messages that
    /// authorities send rather than receive, and credits (which only travel over the
    /// runtime's ordered links between shards), are ignored.
    pub fn handle_message(&mut self, message: &Message) -> Handled {
        match message {
            Message::TransferOrder(order) => {
                let t = &order.transfer;
                match self.handle_transfer_order(order) {
                    Ok(vote) => Handled {
                        reply: Some(Message::Vote(VoteReply::of(&vote))),
                        ..Handled::default()
                    },
                    Err(e) => Handled::refused(e, t.sender, t.sequence_number),
                }
            }
            Message::ConfirmationOrder(order) => {
                let t = &order.certificate.value.transfer;
                match self.handle_confirmation_order(order) {
                    Ok(confirmed) => Handled {
                        reply: Some(Message::AccountInfoResponse(confirmed.response)),
                        cross_shard: confirmed.cross_shard,
                        error: None,
                    },
                    Err(e) => Handled::refused(e, t.sender, t.sequence_number),
                }
            }
            Message::AccountInfoRequest(request) => {
                match self.handle_account_info_request(request) {
                    Ok(info) => Handled {
                        reply: Some(Message::AccountInfoResponse(info)),
                        ..Handled::default()
                    },
                    Err(e) => Handled::refused(e, request.account, SequenceNumber::ZERO),
                }
            }
            Message::SupplyRequest(_) => Handled {
                reply: Some(Message::Supply(self.supply())),
                ..Handled::default()
            },
            // Credits travel only over the runtime's ordered links between shards (see
            // `AuthorityShard`), never through the public request path.
            Message::CrossShardUpdate(_)
            | Message::Vote(_)
            | Message::AccountInfoResponse(_)
            | Message::Error(_)
            | Message::ShardLink(_)
            | Message::Certificates(_)
            | Message::RedeemRequest(_)
            | Message::RedeemApproval(_)
            | Message::Supply(_) => Handled::default(),
        }
    }
}
