//! The clients: honest payers (through the real client state machine), and double spenders
//! that sign two orders for one sequence number behind it.

use crate::network::{Event, Node};
use crate::{RETRY_US, Role, SimFailure, World};
use fastpay_client::{ClientState, Learned, Phase};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountQuery, Amount, CertificateAnswer, CertifiedTransferOrder,
    ConfirmationOrder, ErrorCode, KeyPair, Message, SequenceNumber, Transfer, TransferOrder,
    decode,
};
use rand::RngExt;
use std::collections::BTreeMap;

impl World {
    pub(crate) fn authority_index(from: Node) -> Option<usize> {
        match from {
            Node::Authority(a) => Some(a),
            Node::Client(_) | Node::Injector => None,
        }
    }

    pub(crate) fn client_receives(
        &mut self,
        c: usize,
        from: Node,
        bytes: &[u8],
    ) -> Result<(), SimFailure> {
        let Ok((_, message)) = decode(bytes) else {
            self.report.undecodable += 1;
            return Ok(());
        };
        let Some(a) = Self::authority_index(from) else {
            return Ok(());
        };
        let name = self.authorities[a].name;
        if matches!(self.clients[c].role, Role::DoubleSpender { .. }) {
            return self.double_spender_receives(c, a, message);
        }
        match message {
            Message::Vote(reply) => match self.clients[c].state.handle_vote_reply(&reply) {
                Ok(Some(certificate)) => {
                    self.certificate_formed(certificate)?;
                    // The wallet saves the certificate before its confirmations leave; an old
                    // one sometimes did not, and a crash then loses it.
                    if !self.rng.random_bool(self.config.unsaved_certificate_rate) {
                        self.save(c);
                    }
                    self.send_pending(c);
                }
                Ok(None) => {}
                Err(_) => self.report.replies_refused += 1,
            },
            Message::AccountInfoResponse(info) => {
                match self.clients[c].state.handle_account_info(name, &info) {
                    Ok(true) => self.transfer_finished(c),
                    Ok(false) => {}
                    Err(_) => self.report.replies_refused += 1,
                }
            }
            Message::Error(error) => {
                // An order refused as stale: the committee applied this sequence number, so
                // its certificate exists (this client lost it in a crash): ask for it.
                if error.code == ErrorCode::StaleSequenceNumber
                    && let Some(Phase::Voting { order, .. }) = self.clients[c].state.pending()
                    && order.transfer.sequence_number == error.sequence_number
                {
                    let account = self.clients[c].state.account();
                    let query = AccountInfoRequest::certificate(account, error.sequence_number, 0);
                    self.client_send(c, a, &Message::AccountInfoRequest(query));
                }
                for request in self.clients[c].state.catch_up(&name, &error) {
                    self.client_send(c, a, &request);
                }
            }
            Message::Certificates(response)
                if response.account == self.clients[c].state.account() =>
            {
                self.certificates_received(c, a, response.query, response.answer)?;
            }
            _ => self.report.replies_refused += 1,
        }
        Ok(())
    }

    /// A certificate query's answer: this client's lost certificate, or a page of its
    /// payments received (each verified by the client state; a lie is refused).
    fn certificates_received(
        &mut self,
        c: usize,
        a: usize,
        query: AccountQuery,
        answer: CertificateAnswer,
    ) -> Result<(), SimFailure> {
        let name = self.authorities[a].name;
        match (query, answer) {
            (AccountQuery::Certificate(_), CertificateAnswer::Certificate(certificate)) => {
                match self.clients[c].state.learn_certificate(certificate.clone()) {
                    Ok(Learned::Sent) => {
                        self.report.certificates_recovered += 1;
                        self.certificate_formed(certificate)?;
                        self.save(c);
                        self.send_pending(c);
                    }
                    Ok(_) => {}
                    Err(_) => self.report.replies_refused += 1,
                }
            }
            (
                AccountQuery::Received(from),
                CertificateAnswer::Received {
                    certificates, next, ..
                },
            ) if from == self.clients[c].state.received_cursor(&name) => {
                for certificate in certificates {
                    match self.clients[c].state.learn_certificate(certificate) {
                        Ok(Learned::Received) => self.report.payments_downloaded += 1,
                        Ok(_) => {}
                        Err(_) => self.report.replies_refused += 1,
                    }
                }
                if next > from {
                    self.clients[c].state.set_received_cursor(name, next);
                }
                self.save(c);
            }
            _ => {}
        }
        Ok(())
    }

    /// The client's wallet file is written: a crash resumes from here.
    pub(crate) fn save(&mut self, c: usize) {
        self.clients[c].saved = self.clients[c].state.snapshot();
    }

    /// The client crashes and resumes from its wallet file.
    fn crash_client(&mut self, c: usize) {
        let key = self.client_key(c);
        let saved = self.clients[c].saved.clone();
        match ClientState::restore(Some(key), self.committee.clone(), saved) {
            Ok(state) => {
                self.clients[c].state = state;
                self.report.client_crashes += 1;
            }
            Err(e) => panic!("a simulated wallet does not restore: {e}"),
        }
    }

    /// Reads the next page of a random authority's list of this client's payments received.
    fn sync(&mut self, c: usize) {
        let a = self.rng.random_range(0..self.authorities.len());
        let name = self.authorities[a].name;
        let state = &self.clients[c].state;
        let query = AccountInfoRequest::received(state.account(), state.received_cursor(&name), 0);
        self.client_send(c, a, &Message::AccountInfoRequest(query));
    }

    /// An honest client's payment is confirmed by a quorum: hand the certificate to its
    /// recipient, as a payer hands over a receipt.
    pub(crate) fn transfer_finished(&mut self, c: usize) {
        self.save(c);
        let Some(certificate) = self.clients[c].state.sent_certificates().last().cloned() else {
            return;
        };
        // A transfer resumed after a crash finishes once more: count it once.
        if !self.clients[c]
            .finished
            .insert(certificate.value.transfer.sequence_number)
        {
            return;
        }
        self.report.transfers_completed += 1;
        if let Role::Honest { remaining } = &mut self.clients[c].role {
            *remaining = remaining.saturating_sub(1);
        }
        if self.rng.random_bool(self.config.handover_rate) {
            self.hand_over(certificate);
        }
        self.schedule(1, Event::Tick { client: c });
    }

    pub(crate) fn hand_over(&mut self, certificate: CertifiedTransferOrder) {
        let recipient = certificate.value.transfer.recipient;
        if let Some(r) = self
            .clients
            .iter()
            .position(|r| r.state.account() == recipient)
        {
            // An invalid certificate here would be caught by the final ledger check.
            let _ = self.clients[r].state.receive_certificate(certificate);
            self.save(r);
        }
    }

    /// Sends the request of the transfer in progress to every authority still owing a reply.
    pub(crate) fn send_pending(&mut self, c: usize) {
        for a in 0..self.authorities.len() {
            let name = self.authorities[a].name;
            if let Some(request) = self.clients[c].state.request_for(&name) {
                self.client_send(c, a, &request);
            }
        }
    }

    pub(crate) fn tick(&mut self, c: usize) {
        let next = RETRY_US + self.rng.random_range(0..RETRY_US);
        self.schedule(next, Event::Tick { client: c });
        if matches!(self.clients[c].role, Role::DoubleSpender { .. }) {
            self.double_spender_tick(c);
            return;
        }
        // Between any two steps of a transfer, the client process may die.
        if self.rng.random_bool(self.config.client_crash_rate) {
            self.crash_client(c);
        }
        if self.clients[c].state.pending().is_none() && self.rng.random_bool(self.config.sync_rate)
        {
            self.sync(c);
        }
        // Keep lagging authorities in sync: resend one authority what it has not acknowledged.
        let a = self.rng.random_range(0..self.authorities.len());
        let name = self.authorities[a].name;
        for request in self.clients[c]
            .state
            .confirmations_missing_at(&name)
            .into_iter()
            .take(2)
        {
            self.client_send(c, a, &request);
        }
        if self.clients[c].state.pending().is_some() {
            self.send_pending(c);
            return;
        }
        let Role::Honest { remaining, .. } = self.clients[c].role else {
            return;
        };
        if remaining == 0 {
            return;
        }
        let roll = self.rng.random_range(0..100u8);
        if roll < 10 {
            self.overdraft(c);
        } else if roll < 20 {
            self.replay_last(c);
        } else {
            self.pay(c);
        }
    }

    pub(crate) fn pay(&mut self, c: usize) {
        let balance = self.clients[c].state.balance().units();
        let cap = u64::try_from(balance.clamp(0, 100)).unwrap_or(0);
        if cap == 0 {
            // Nothing to spend: this client's remaining payments cannot be valid.
            if let Role::Honest { remaining, .. } = &mut self.clients[c].role {
                *remaining = 0;
            }
            return;
        }
        let recipient = if self.rng.random_bool(0.1) {
            // Someone the committee has never seen.
            AccountId(self.rng.random())
        } else {
            let r = self.rng.random_range(0..self.clients.len());
            self.clients[r].state.account()
        };
        let amount = Amount::new(self.rng.random_range(1..=cap));
        match self.clients[c].state.transfer(recipient, amount, None) {
            // The order is saved before it leaves.
            Ok(_) => {
                self.save(c);
                self.send_pending(c)
            }
            Err(e) => panic!("simulated honest client refused a valid transfer: {e}"),
        }
    }

    /// An order for more than the whole money supply, sent behind the client state's back.
    pub(crate) fn overdraft(&mut self, c: usize) {
        self.report.overdrafts_attempted += 1;
        let supply = u64::try_from(self.genesis.total().units()).unwrap_or(u64::MAX);
        let state = &self.clients[c].state;
        let key = self.client_key(c);
        let order = TransferOrder::new(
            Transfer {
                sender: state.account(),
                recipient: state.account(),
                amount: Amount::new(supply.saturating_add(1)),
                sequence_number: state.next_sequence_number(),
                user_data: None,
            },
            &self.committee.id(),
            &key,
        );
        for a in 0..self.authorities.len() {
            self.client_send(c, a, &Message::TransferOrder(order));
        }
    }

    /// Replays the last certificate and its order: both must be harmless.
    pub(crate) fn replay_last(&mut self, c: usize) {
        let Some(certificate) = self.clients[c].state.sent_certificates().last().cloned() else {
            return self.pay(c);
        };
        let a = self.rng.random_range(0..self.authorities.len());
        self.client_send(c, a, &Message::TransferOrder(certificate.value));
        self.client_send(
            c,
            a,
            &Message::ConfirmationOrder(ConfirmationOrder { certificate }),
        );
    }

    pub(crate) fn client_key(&self, c: usize) -> KeyPair {
        KeyPair::from_seed(self.clients[c].key_seed)
    }

    // ---- double spenders -------------------------------------------------------------------

    pub(crate) fn double_spender_tick(&mut self, c: usize) {
        if self.clients[c].state.pending().is_some() {
            // A certificate formed: confirm it like anyone else (and keep racing the other
            // order below, hoping for a second certificate).
            self.send_pending(c);
        }
        let Role::DoubleSpender { orders, halves, .. } = &self.clients[c].role else {
            return;
        };
        let (orders, halves) = match orders {
            Some(o) => (*o, halves.clone()),
            None => {
                self.report.double_spends_attempted += 1;
                let key = self.client_key(c);
                let committee = self.committee.id();
                let state = &self.clients[c].state;
                let amount = Amount::new(self.config.initial_balance);
                let make = |recipient: AccountId| {
                    TransferOrder::new(
                        Transfer {
                            sender: state.account(),
                            recipient,
                            amount,
                            sequence_number: SequenceNumber::ZERO,
                            user_data: None,
                        },
                        &committee,
                        &key,
                    )
                };
                let r1 = self.clients[self.rng.random_range(0..self.clients.len())]
                    .state
                    .account();
                let orders = [make(r1), make(AccountId(self.rng.random()))];
                // Split the committee in two; the Byzantine authority sees both orders.
                let mut all: Vec<usize> = (0..self.authorities.len()).collect();
                for i in (1..all.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    all.swap(i, j);
                }
                let mid = all.len() / 2;
                let mut halves = [all[..mid].to_vec(), all[mid..].to_vec()];
                if self.config.byzantine {
                    let byz = self.authorities.len() - 1;
                    for half in &mut halves {
                        if !half.contains(&byz) {
                            half.push(byz);
                        }
                    }
                }
                if let Role::DoubleSpender {
                    orders: o,
                    halves: h,
                    ..
                } = &mut self.clients[c].role
                {
                    *o = Some(orders);
                    *h = halves.clone();
                }
                (orders, halves)
            }
        };
        // The first round goes to opposite halves; later rounds race both orders to everyone,
        // so every authority sees the conflict.
        let first_round = matches!(&self.clients[c].role, Role::DoubleSpender { votes, .. }
            if votes.iter().all(BTreeMap::is_empty));
        for (i, order) in orders.iter().enumerate() {
            for a in 0..self.authorities.len() {
                if halves[i].contains(&a) || !first_round {
                    self.client_send(c, a, &Message::TransferOrder(*order));
                }
            }
        }
    }

    pub(crate) fn double_spender_receives(
        &mut self,
        c: usize,
        a: usize,
        message: Message,
    ) -> Result<(), SimFailure> {
        let name = self.authorities[a].name;
        match message {
            Message::Vote(vote) => {
                let Role::DoubleSpender { orders, votes, .. } = &mut self.clients[c].role else {
                    return Ok(());
                };
                let Some(orders) = orders else {
                    return Ok(());
                };
                if self.committee.public_key(&vote.authority).is_none() {
                    self.report.replies_refused += 1;
                    return Ok(());
                }
                // The reply names the sequence number both orders share: the signature tells
                // which order it is for.
                let Some(i) = orders.iter().position(|o| {
                    vote.for_order(o).is_some()
                        && self
                            .committee
                            .verify_vote(
                                &vote.authority,
                                &o.vote_bytes(&self.committee.id()),
                                &vote.signature,
                                None,
                            )
                            .is_ok()
                }) else {
                    self.report.replies_refused += 1;
                    return Ok(());
                };
                votes[i].insert(vote.authority, vote.signature);
                let weight: u64 = votes[i].keys().map(|n| self.committee.weight(n)).sum();
                if weight < self.committee.quorum_threshold() {
                    return Ok(());
                }
                let certificate = CertifiedTransferOrder {
                    value: orders[i],
                    signatures: votes[i].iter().map(|(n, s)| (*n, *s)).collect(),
                };
                let transfer = certificate.value.transfer;
                if self
                    .certificates
                    .contains_key(&(transfer.sender, transfer.sequence_number))
                {
                    // Already certified: a second certificate is only news if it conflicts,
                    // which `certificate_formed` reports.
                    if self
                        .decided
                        .get(&(transfer.sender, transfer.sequence_number))
                        != Some(&transfer)
                    {
                        self.certificate_formed(certificate)?;
                    }
                    return Ok(());
                }
                self.report.double_spends_certified += 1;
                self.certificate_formed(certificate.clone())?;
                if let Err(e) = self.clients[c].state.adopt_certificate(certificate) {
                    return Err(self.fail(format!("double spender could not adopt: {e}")));
                }
                self.send_pending(c);
            }
            Message::AccountInfoResponse(info) => {
                if let Ok(true) = self.clients[c].state.handle_account_info(name, &info)
                    && let Some(certificate) = self.clients[c].state.sent_certificates().last()
                {
                    let certificate = certificate.clone();
                    self.hand_over(certificate);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
