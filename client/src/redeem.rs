//! Asking the committee to approve a redeem on the primary chain ([`CollectApprovals`]): the
//! certificate of a transfer to the exit account goes to every authority, each answers with
//! its secp256k1 approval or a refusal. The machine does not check approvals (that needs the
//! primary chain's signature scheme, which the wallet has): it keeps one answer per authority
//! and the wallet picks the valid ones.

use crate::exchange::{Action, Exchange, Members, Outbox, Timing, earliest};
use crate::state::ClientState;
use fastpay_wire::{
    AuthorityName, CertifiedTransferOrder, Committee, ErrorCode, Message, RedeemApproval,
    RedeemRequest,
};
use std::time::Instant;

/// One authority's answer: its approval or its refusal.
pub type ApprovalAnswer = (AuthorityName, Result<RedeemApproval, ErrorCode>);

/// Asks every authority to approve the redeem of `certificate`'s transfer; finishes with the
/// answers once every authority answered, or once approvals of a quorum's weight came and the
/// quorum grace passed (a late honest approval may replace a forged one), or at the deadline.
#[derive(Debug)]
pub struct CollectApprovals {
    timing: Timing,
    request: Message,
    certificate: CertifiedTransferOrder,
    members: Members,
    answers: Vec<Option<Result<RedeemApproval, ErrorCode>>>,
    quorum_at: Option<Instant>,
    next_send: Option<Instant>,
    deadline: Instant,
    outbox: Outbox,
}

impl CollectApprovals {
    /// Approvals for `certificate` from `committee`, giving up at `deadline`.
    pub fn new(
        committee: &Committee,
        certificate: CertifiedTransferOrder,
        deadline: Instant,
    ) -> Self {
        let members = Members::of(committee);
        Self {
            timing: Timing::default(),
            request: Message::RedeemRequest(RedeemRequest {
                certificate: certificate.clone(),
            }),
            certificate,
            answers: vec![None; members.len()],
            members,
            quorum_at: None,
            next_send: None,
            deadline,
            outbox: Outbox::default(),
        }
    }

    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    fn finished(&self, now: Instant) -> bool {
        now >= self.deadline
            || self.answers.iter().all(Option::is_some)
            || self
                .quorum_at
                .is_some_and(|t| now >= t + self.timing.quorum_grace)
    }
}

impl Exchange for CollectApprovals {
    type Output = Vec<ApprovalAnswer>;

    fn poll(&mut self, _: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if self.finished(now) {
            let answers = std::mem::take(&mut self.answers);
            return Action::Done(self.members.named(answers));
        }
        if self.next_send.is_none_or(|t| now >= t) {
            for (a, name) in self.members.names.iter().enumerate() {
                // Refusals are asked again too: an authority that has not reached the chain
                // yet (`PrimaryUnavailable`) may approve on the next try.
                if !matches!(self.answers[a], Some(Ok(_))) {
                    self.outbox.push(*name, self.request.clone());
                }
            }
            self.next_send = Some(now + self.timing.retry);
            return self.poll(&mut [], now);
        }
        let grace = self.quorum_at.map(|t| t + self.timing.quorum_grace);
        Action::Wait(earliest(self.next_send, earliest(grace, self.deadline)))
    }

    fn handle(
        &mut self,
        _: &mut [ClientState],
        now: Instant,
        from: AuthorityName,
        message: Message,
    ) {
        let Some(a) = self.members.index(&from) else {
            return;
        };
        let t = self.certificate.value.transfer;
        match message {
            Message::RedeemApproval(approval)
                if approval.sender == t.sender && approval.sequence_number == t.sequence_number =>
            {
                self.answers[a] = Some(Ok(approval));
            }
            Message::Error(error)
                if error.account == t.sender && error.sequence_number == t.sequence_number =>
            {
                if !matches!(self.answers[a], Some(Ok(_))) {
                    self.answers[a] = Some(Err(error.code));
                }
            }
            _ => return,
        }
        let approved = self
            .members
            .weight_of(self.answers.iter().map(|a| matches!(a, Some(Ok(_)))));
        if approved >= self.members.quorum && self.quorum_at.is_none() {
            self.quorum_at = Some(now);
        }
    }
}
