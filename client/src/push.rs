//! Pushing confirmations to authorities that lag: each certificate goes to the authority named
//! with it until that authority acknowledges it. An authority that misses the sender's earlier
//! transfer gets that one too, found in the committee ([`FetchCertificate`]).

use crate::exchange::{Action, Exchange, Outbox, Timing};
use crate::fetch::FetchCertificate;
use crate::state::{ClientState, confirmation_message};
use fastpay_wire::{AuthorityName, CertifiedTransferOrder, Committee, ErrorCode, Message};
use fastpay_wire::{ErrorReply, SequenceNumber};
use std::sync::Arc;
use std::time::Instant;

/// Earlier transfers of a payer a push fetches and sends along when an authority misses them.
pub const MAX_PUSH_CHAIN: usize = 64;

#[derive(Debug)]
struct Target {
    authority: AuthorityName,
    certificate: CertifiedTransferOrder,
    last_sent: Option<Instant>,
    acked: bool,
}

/// Sends each certificate's confirmation to its authority until each acknowledges it, or the
/// deadline; finishes with how many were acknowledged.
#[derive(Debug)]
pub struct Push {
    timing: Timing,
    committee: Arc<Committee>,
    targets: Vec<Target>,
    /// Searches for earlier transfers an authority missed, with the authority to give them to.
    fetches: Vec<(AuthorityName, FetchCertificate)>,
    fetched: usize,
    deadline: Instant,
    outbox: Outbox,
}

impl Push {
    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A push of each `(authority, certificate)` in `targets` (authorities outside the
    /// committee are left out), giving up at `deadline`.
    pub fn new(
        committee: Arc<Committee>,
        targets: Vec<(AuthorityName, CertifiedTransferOrder)>,
        deadline: Instant,
    ) -> Self {
        let targets = targets
            .into_iter()
            .filter(|(name, _)| committee.weight(name) > 0)
            .map(|(authority, certificate)| Target {
                authority,
                certificate,
                last_sent: None,
                acked: false,
            })
            .collect();
        Self {
            committee,
            targets,
            fetches: Vec::new(),
            fetched: 0,
            deadline,
            outbox: Outbox::default(),
            timing: Timing::default(),
        }
    }

    /// `from` misses the confirmation before the one it refused: search the committee for it
    /// (each at most once, at most [`MAX_PUSH_CHAIN`] in all).
    fn fetch_earlier(&mut self, from: AuthorityName, error: &ErrorReply) {
        let Some(earlier) = error.sequence_number.value().checked_sub(1) else {
            return;
        };
        let earlier = SequenceNumber::new(earlier);
        let known = self.targets.iter().any(|t| {
            t.authority == from
                && t.certificate.value.transfer.sender == error.account
                && t.certificate.value.transfer.sequence_number == earlier
        });
        let searching = self
            .fetches
            .iter()
            .any(|(a, f)| *a == from && f.account() == error.account && f.sequence() == earlier);
        if known || searching || self.fetched >= MAX_PUSH_CHAIN {
            return;
        }
        self.fetched += 1;
        let fetch = FetchCertificate::new(
            self.committee.clone(),
            error.account,
            earlier,
            self.deadline,
        )
        .with_timing(self.timing);
        self.fetches.push((from, fetch));
    }
}

impl Exchange for Push {
    type Output = usize;

    fn poll(&mut self, clients: &mut [ClientState], now: Instant) -> Action<usize> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        let acked = self.targets.iter().filter(|t| t.acked).count();
        if now >= self.deadline || acked == self.targets.len() {
            return Action::Done(acked);
        }
        let mut wake = self.deadline;
        // The searches first: a finished one becomes a target.
        let mut i = 0;
        while i < self.fetches.len() {
            match self.fetches[i].1.poll(clients, now) {
                Action::Send(transmit) => return Action::Send(transmit),
                Action::Wait(t) => {
                    wake = wake.min(t);
                    i += 1;
                }
                Action::Done(found) => {
                    let (authority, _) = self.fetches.swap_remove(i);
                    if let Some(certificate) = found {
                        self.targets.push(Target {
                            authority,
                            certificate,
                            last_sent: None,
                            acked: false,
                        });
                    }
                }
                Action::Save => i += 1,
            }
        }
        let retry = self.timing.retry;
        for target in &mut self.targets {
            if target.acked {
                continue;
            }
            match target.last_sent {
                Some(t) if now < t + retry => wake = wake.min(t + retry),
                _ => {
                    let message = confirmation_message(&target.certificate);
                    self.outbox.push(target.authority, message);
                    target.last_sent = Some(now);
                    wake = wake.min(now + retry);
                }
            }
        }
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        Action::Wait(wake)
    }

    fn handle(
        &mut self,
        clients: &mut [ClientState],
        now: Instant,
        from: AuthorityName,
        message: Message,
    ) {
        match &message {
            Message::AccountInfoResponse(info) => {
                for target in self.targets.iter_mut().filter(|t| t.authority == from) {
                    let t = &target.certificate.value.transfer;
                    if t.sender == info.account && t.sequence_number < info.next_sequence_number {
                        target.acked = true;
                    }
                }
            }
            Message::Error(error) if error.code == ErrorCode::MissingEarlierConfirmations => {
                self.fetch_earlier(from, error);
            }
            Message::Error(error) => {
                // Refused for good (a forged certificate, say): stop pushing it there.
                for target in self.targets.iter_mut().filter(|t| t.authority == from) {
                    let t = &target.certificate.value.transfer;
                    if t.sender == error.account
                        && t.sequence_number == error.sequence_number
                        && error.code != ErrorCode::Overloaded
                    {
                        target.acked = true;
                    }
                }
            }
            Message::Certificates(_) => {
                for (_, fetch) in &mut self.fetches {
                    fetch.handle(clients, now, from, message.clone());
                }
            }
            _ => {}
        }
    }
}
