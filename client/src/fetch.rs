//! Asking the committee: an account's state at every authority ([`Query`]), the certificate
//! of one transfer ([`FetchCertificate`]) and the lists of payments an account received
//! ([`FetchReceived`]). Each asks every authority, retries the silent ones every
//! [`RETRY_INTERVAL`], and stops once what a quorum said is enough, or at its deadline.

use crate::exchange::{Action, Exchange, Members, Outbox, Timing, earliest};
use crate::state::{ClientState, check_certificate};
use fastpay_wire::codec::MAX_DATAGRAM_SIZE;
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountInfoResponse, AccountQuery, AuthorityName,
    CERTIFICATE_QUERY_BYTES, CertificateAnswer, CertifiedTransferOrder, Committee, ErrorCode,
    Message, SequenceNumber,
};
use std::sync::Arc;
use std::time::Instant;

/// One authority's answer to an account query: its view, or its refusal.
pub type QueryAnswer = (AuthorityName, Result<AccountInfoResponse, ErrorCode>);

/// Certificates one sync takes from one authority's list of payments received: a list that
/// claims more ends there (the next sync goes on from where this one stopped).
pub const MAX_RECEIVED_PER_SYNC: usize = 4096;

/// Bytes of a certificate answer besides its certificates: header, account, query, the
/// answer's form, list length and indexes, rounded up.
const CERTIFICATE_ANSWER_OVERHEAD: usize = 96;

/// The size of a certificate query to `committee`: enough for the largest certificate the
/// committee forms as authorities keep it (trimmed to a quorum of the largest votes,
/// [`Committee::max_certificate_wire_size`]), so that every certificate can be fetched, and
/// never less than [`CERTIFICATE_QUERY_BYTES`] (a page of several in a small committee).
pub fn certificate_query_size(committee: &Committee) -> usize {
    CERTIFICATE_QUERY_BYTES
        .max(CERTIFICATE_ANSWER_OVERHEAD + committee.max_certificate_wire_size())
        .min(MAX_DATAGRAM_SIZE)
}

/// Asks every authority for an account's state; finishes with the answers (a state or a
/// refusal code) once a quorum answered, or at the deadline with what came.
#[derive(Debug)]
pub struct Query {
    timing: Timing,
    account: AccountId,
    members: Members,
    answers: Vec<Option<Result<AccountInfoResponse, ErrorCode>>>,
    next_send: Option<Instant>,
    deadline: Instant,
    outbox: Outbox,
}

impl Query {
    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A query of `account` to `committee`, giving up at `deadline`.
    pub fn new(committee: &Committee, account: AccountId, deadline: Instant) -> Self {
        let members = Members::of(committee);
        Self {
            account,
            answers: vec![None; members.len()],
            members,
            next_send: None,
            deadline,
            outbox: Outbox::default(),
            timing: Timing::default(),
        }
    }

    fn answered_weight(&self) -> u64 {
        self.members
            .weight_of(self.answers.iter().map(Option::is_some))
    }
}

impl Exchange for Query {
    type Output = Vec<QueryAnswer>;

    fn poll(&mut self, _: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if now >= self.deadline || self.answered_weight() >= self.members.quorum {
            let answers = std::mem::take(&mut self.answers);
            return Action::Done(self.members.named(answers));
        }
        if self.next_send.is_none_or(|t| now >= t) {
            let request = Message::AccountInfoRequest(AccountInfoRequest::new(self.account));
            for (a, name) in self.members.names.iter().enumerate() {
                if self.answers[a].is_none() {
                    self.outbox.push(*name, request.clone());
                }
            }
            self.next_send = Some(now + self.timing.retry);
            return self.poll(&mut [], now);
        }
        Action::Wait(earliest(self.next_send, self.deadline))
    }

    fn handle(&mut self, _: &mut [ClientState], _: Instant, from: AuthorityName, message: Message) {
        let Some(a) = self.members.index(&from) else {
            return;
        };
        match message {
            Message::AccountInfoResponse(info) if info.account == self.account => {
                self.answers[a] = Some(Ok(info));
            }
            Message::Error(error) if error.account == self.account => {
                self.answers[a] = Some(Err(error.code));
            }
            _ => {}
        }
    }
}

/// Asks the committee for the certificate of one transfer; finishes with the first valid one
/// (authorities may lie), or `None` once every authority said it has none, or a quorum did
/// and [`QUORUM_GRACE`] passed, or at the deadline.
#[derive(Debug)]
pub struct FetchCertificate {
    timing: Timing,
    account: AccountId,
    sequence: SequenceNumber,
    committee: Arc<Committee>,
    members: Members,
    size: usize,
    answered: Vec<bool>,
    quorum_at: Option<Instant>,
    next_send: Option<Instant>,
    deadline: Instant,
    found: Option<CertifiedTransferOrder>,
    outbox: Outbox,
}

impl FetchCertificate {
    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A search for the certificate of `account`'s transfer `sequence`, giving up at
    /// `deadline`.
    pub fn new(
        committee: Arc<Committee>,
        account: AccountId,
        sequence: SequenceNumber,
        deadline: Instant,
    ) -> Self {
        let members = Members::of(&committee);
        Self {
            account,
            sequence,
            size: certificate_query_size(&committee),
            committee,
            answered: vec![false; members.len()],
            members,
            quorum_at: None,
            next_send: None,
            deadline,
            found: None,
            outbox: Outbox::default(),
            timing: Timing::default(),
        }
    }

    /// The account whose transfer is sought.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The sequence number sought.
    pub fn sequence(&self) -> SequenceNumber {
        self.sequence
    }
}

impl Exchange for FetchCertificate {
    type Output = Option<CertifiedTransferOrder>;

    fn poll(&mut self, _: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        if self.found.is_some() {
            return Action::Done(self.found.take());
        }
        if self.quorum_at.is_none()
            && self.members.weight_of(self.answered.iter().copied()) >= self.members.quorum
        {
            self.quorum_at = Some(now);
        }
        let grace_over = self.quorum_at.map(|t| t + self.timing.quorum_grace);
        if self.answered.iter().all(|a| *a)
            || grace_over.is_some_and(|t| now >= t)
            || now >= self.deadline
        {
            return Action::Done(None);
        }
        if self.next_send.is_none_or(|t| now >= t) {
            let request = Message::AccountInfoRequest(AccountInfoRequest::certificate(
                self.account,
                self.sequence,
                self.size,
            ));
            for (a, name) in self.members.names.iter().enumerate() {
                if !self.answered[a] {
                    self.outbox.push(*name, request.clone());
                }
            }
            self.next_send = Some(now + self.timing.retry);
            return self.poll(&mut [], now);
        }
        let wake = earliest(self.next_send, self.deadline);
        Action::Wait(earliest(grace_over, wake))
    }

    fn handle(&mut self, _: &mut [ClientState], _: Instant, from: AuthorityName, message: Message) {
        let Some(a) = self.members.index(&from) else {
            return;
        };
        match message {
            Message::Certificates(response)
                if response.account == self.account
                    && response.query == AccountQuery::Certificate(self.sequence) =>
            {
                if let CertificateAnswer::Certificate(certificate) = response.answer
                    && certificate.value.transfer.sender == self.account
                    && certificate.value.transfer.sequence_number == self.sequence
                    && check_certificate(&self.committee, &certificate, None).is_ok()
                {
                    self.found = Some(certificate);
                }
                self.answered[a] = true;
            }
            Message::Error(error) if error.account == self.account => self.answered[a] = true,
            _ => {}
        }
    }
}

/// One authority's list of payments received by an account, as far as it was read.
#[derive(Debug, Clone)]
pub struct ReceivedList {
    /// The authority.
    pub authority: AuthorityName,
    /// The certificates it listed, in its arrival order (unverified).
    pub certificates: Vec<CertifiedTransferOrder>,
    /// Where to read its list from next time.
    pub next: u64,
    /// Whether the list was read to its end.
    pub complete: bool,
    /// Whether the list was read from its start (the cursor was zero, or the authority's
    /// list had become shorter than the cursor: its state was lost and rebuilt).
    pub from_start: bool,
}

#[derive(Debug)]
struct Reading {
    list: ReceivedList,
    answered: bool,
    /// Nothing more to ask: the list was read to its end, or the authority refused.
    done: bool,
    last_sent: Option<Instant>,
}

/// Reads every authority's list of payments received by an account, each from its cursor,
/// page by page, until the end of each list, or [`QUORUM_GRACE`] after a quorum's lists were
/// read (however the others go on: a liar sending small pages cannot stretch it), or the
/// deadline. Finishes with what each authority that answered listed (unverified: the caller
/// checks each certificate). A refusal (`Overloaded`, say) ends an authority's reading
/// without making its list complete: nothing is concluded from a list not read.
#[derive(Debug)]
pub struct FetchReceived {
    timing: Timing,
    account: AccountId,
    members: Members,
    size: usize,
    lists: Vec<Reading>,
    quorum_at: Option<Instant>,
    deadline: Instant,
    outbox: Outbox,
}

impl FetchReceived {
    /// The same with other timers (the default suits a LAN).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A read of `account`'s lists, each authority's from `from(name)`, giving up at
    /// `deadline`.
    pub fn new(
        committee: &Committee,
        account: AccountId,
        from: impl Fn(&AuthorityName) -> u64,
        deadline: Instant,
    ) -> Self {
        let members = Members::of(committee);
        let lists = members
            .names
            .iter()
            .map(|name| {
                let next = from(name);
                Reading {
                    list: ReceivedList {
                        authority: *name,
                        certificates: Vec::new(),
                        next,
                        complete: false,
                        from_start: next == 0,
                    },
                    answered: false,
                    done: false,
                    last_sent: None,
                }
            })
            .collect();
        Self {
            account,
            size: certificate_query_size(committee),
            members,
            lists,
            quorum_at: None,
            deadline,
            outbox: Outbox::default(),
            timing: Timing::default(),
        }
    }

    /// Takes one page of `authority`'s list.
    fn page(reading: &mut Reading, certificates: Vec<CertifiedTransferOrder>, next: u64, end: u64) {
        let list = &mut reading.list;
        if end < list.next && !list.from_start {
            // Fewer payments than we already read: the authority lost its state (a replaced
            // machine). Read it again from the start.
            list.next = 0;
            list.from_start = true;
            reading.last_sent = None;
            return;
        }
        let moved = next > list.next && !certificates.is_empty();
        // Nothing in the page though the list goes on: its next certificate did not fit the
        // query. The reading ends, but the list is not complete: nothing is concluded (or
        // pushed) from what was not read.
        let stuck = certificates.is_empty() && next < end;
        list.certificates.extend(certificates);
        list.next = next.max(list.next);
        // A list that does not move, or that grows past what one sync takes from one
        // authority, ends here (a liar's is endless).
        list.complete =
            !stuck && (next >= end || !moved || list.certificates.len() >= MAX_RECEIVED_PER_SYNC);
        reading.done = list.complete || stuck;
        reading.last_sent = None;
    }
}

impl Exchange for FetchReceived {
    type Output = Vec<ReceivedList>;

    fn poll(&mut self, _: &mut [ClientState], now: Instant) -> Action<Self::Output> {
        if let Some(transmit) = self.outbox.pop() {
            return Action::Send(transmit);
        }
        let complete = self.lists.iter().map(|r| r.list.complete);
        let quorum_done = self.members.weight_of(complete) >= self.members.quorum;
        if quorum_done && self.quorum_at.is_none() {
            self.quorum_at = Some(now);
        }
        let grace_over = self
            .quorum_at
            .is_some_and(|at| now >= at + self.timing.quorum_grace);
        if self.lists.iter().all(|r| r.done) || grace_over || now >= self.deadline {
            let lists = std::mem::take(&mut self.lists);
            return Action::Done(
                lists
                    .into_iter()
                    .filter(|r| r.answered)
                    .map(|r| r.list)
                    .collect(),
            );
        }
        let retry = self.timing.retry;
        let mut wake = self.deadline;
        for reading in &mut self.lists {
            if reading.done {
                continue;
            }
            match reading.last_sent {
                Some(t) if now < t + retry => wake = wake.min(t + retry),
                _ => {
                    let request =
                        AccountInfoRequest::received(self.account, reading.list.next, self.size);
                    self.outbox
                        .push(reading.list.authority, Message::AccountInfoRequest(request));
                    reading.last_sent = Some(now);
                    wake = wake.min(now + retry);
                }
            }
        }
        if !self.outbox.is_empty() {
            return self.poll(&mut [], now);
        }
        if let Some(at) = self.quorum_at {
            wake = wake.min(at + self.timing.quorum_grace);
        }
        Action::Wait(wake)
    }

    fn handle(&mut self, _: &mut [ClientState], _: Instant, from: AuthorityName, message: Message) {
        let Some(a) = self.members.index(&from) else {
            return;
        };
        let reading = &mut self.lists[a];
        if reading.done {
            return;
        }
        match message {
            Message::Certificates(response)
                if response.account == self.account
                    && response.query == AccountQuery::Received(reading.list.next) =>
            {
                reading.answered = true;
                match response.answer {
                    CertificateAnswer::Received {
                        certificates,
                        next,
                        end,
                    } => Self::page(reading, certificates, next, end),
                    // Pruned, or an answer to another question: not a list to conclude from.
                    _ => reading.done = true,
                }
            }
            Message::Error(error) if error.account == self.account => {
                reading.answered = true;
                reading.done = true;
                // An authority that does not know the account holds none of its payments:
                // its list is complete and empty (what it lacks is pushed to it, as a
                // recipient must for its vote). Any other refusal concludes nothing.
                if error.code == ErrorCode::UnknownAccount && reading.list.next == 0 {
                    reading.list.complete = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        Amount, CertificatesResponse, ErrorReply, KeyPair, Transfer, TransferOrder,
    };
    use std::time::Duration;

    fn committee() -> Committee {
        let keys = (0..4u8).map(|i| KeyPair::from_seed([90 + i; 32]).authority());
        Committee::equal_weights(keys, 1).unwrap()
    }

    /// A page of `authority`'s list of `account`'s payments, read from `from`.
    fn page(account: AccountId, from: u64, certificates: usize, end: u64) -> Message {
        let payer = KeyPair::from_seed([7; 32]);
        let certificates = (0..certificates)
            .map(|i| {
                let transfer = Transfer {
                    sender: payer.account(),
                    recipient: account,
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::new(from + i as u64),
                    user_data: None,
                };
                let order = TransferOrder::new(transfer, &committee().id(), &payer);
                CertifiedTransferOrder {
                    value: order,
                    signatures: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        let next = from + certificates.len() as u64;
        Message::Certificates(CertificatesResponse {
            account,
            query: AccountQuery::Received(from),
            answer: CertificateAnswer::Received {
                certificates,
                next,
                end,
            },
        })
    }

    /// Polls `machine` at `now` until it waits or ends.
    fn poll_at(machine: &mut FetchReceived, now: Instant) -> Option<Vec<ReceivedList>> {
        loop {
            match machine.poll(&mut [], now) {
                Action::Send(_) | Action::Save => {}
                Action::Wait(_) => return None,
                Action::Done(lists) => return Some(lists),
            }
        }
    }

    /// Reads an account's lists when three authorities list nothing and the last answers
    /// what `last` makes of the account; returns how many lists are complete, and the last
    /// authority's.
    fn read_with_last_answering(last: impl Fn(AccountId) -> Message) -> (usize, ReceivedList) {
        let committee = committee();
        let names: Vec<_> = committee.members().iter().map(|m| m.name).collect();
        let account = KeyPair::from_seed([8; 32]).account();
        let start = Instant::now();
        let mut fetch =
            FetchReceived::new(&committee, account, |_| 0, start + Duration::from_secs(5));
        assert!(poll_at(&mut fetch, start).is_none());
        for name in &names[..3] {
            fetch.handle(&mut [], start, *name, page(account, 0, 0, 0));
        }
        fetch.handle(&mut [], start, names[3], last(account));
        let lists = poll_at(&mut fetch, start).expect("every authority answered");
        let complete = lists.iter().filter(|l| l.complete).count();
        let last = lists.into_iter().find(|l| l.authority == names[3]).unwrap();
        (complete, last)
    }

    fn refusal(code: ErrorCode) -> impl Fn(AccountId) -> Message {
        move |account| {
            Message::Error(ErrorReply {
                code,
                account,
                sequence_number: SequenceNumber::ZERO,
            })
        }
    }

    #[test]
    fn a_page_that_fits_nothing_ends_the_reading_without_completing_the_list() {
        // Five payments listed, none in the page: the first did not fit the query.
        let (complete, stuck) = read_with_last_answering(|account| page(account, 0, 0, 5));
        assert!(
            !stuck.complete,
            "a list read no further than its start is not complete"
        );
        assert_eq!(complete, 3);
    }

    #[test]
    fn queries_hold_the_largest_certificate_of_40_members_of_either_scheme() {
        for scheme in [
            fastpay_wire::VoteScheme::Single,
            fastpay_wire::VoteScheme::Merkle,
        ] {
            let keys = (0..40u8).map(|i| KeyPair::from_seed([100 + i; 32]).authority());
            let committee = Committee::equal_weights(keys, 1)
                .unwrap()
                .with_vote_scheme(scheme);
            let size = certificate_query_size(&committee);
            assert!(
                size >= CERTIFICATE_ANSWER_OVERHEAD + committee.max_certificate_wire_size()
                    && size <= MAX_DATAGRAM_SIZE,
                "{scheme}: {size}"
            );
        }
    }

    #[test]
    fn a_refusal_ends_a_reading_without_completing_its_list() {
        // A complete list would make the sync push every payment to the overloaded authority.
        let (complete, refused) = read_with_last_answering(refusal(ErrorCode::Overloaded));
        assert!(!refused.complete);
        assert_eq!(complete, 3);
        // An authority that does not know the account lacks all its payments: complete.
        let (complete, lagging) = read_with_last_answering(refusal(ErrorCode::UnknownAccount));
        assert!(lagging.complete && lagging.certificates.is_empty());
        assert_eq!(complete, 4);
    }

    #[test]
    fn a_liar_paging_slowly_cannot_stretch_the_read_past_the_grace() {
        let committee = committee();
        let names: Vec<_> = committee.members().iter().map(|m| m.name).collect();
        let account = KeyPair::from_seed([8; 32]).account();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let mut fetch = FetchReceived::new(&committee, account, |_| 0, deadline);
        assert!(poll_at(&mut fetch, start).is_none());
        let ms = Duration::from_millis;
        for name in &names[..3] {
            fetch.handle(&mut [], start + ms(1), *name, page(account, 0, 0, 0));
        }
        assert!(
            poll_at(&mut fetch, start + ms(1)).is_none(),
            "the grace has not passed"
        );
        // The liar answers a one-certificate page every 40 ms, each claiming more to come.
        let mut from = 0;
        let mut at = start + ms(1);
        let finished = loop {
            at += ms(40);
            fetch.handle(&mut [], at, names[3], page(account, from, 1, u64::MAX));
            from += 1;
            if poll_at(&mut fetch, at).is_some() {
                break at;
            }
            assert!(at < deadline, "the liar held the read to its deadline");
        };
        let grace = crate::exchange::QUORUM_GRACE;
        assert!(
            finished <= start + ms(1) + grace + ms(40),
            "{:?}",
            finished - start
        );
    }
}
