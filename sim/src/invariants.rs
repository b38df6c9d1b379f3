//! What must hold, checked after every event, after every restart, and once the network heals.
//!
//! - **conservation**: at every honest authority whose shards all run, the balances of its
//!   shards plus the credits numbered and not yet taken by their recipients equal the genesis
//!   supply (a credit applied twice, or lost, breaks it), and its shards' supply reports (what
//!   `client audit` reads) balance and show the same in flight;
//! - **agreement**: no two different transfers are certified for one sender and sequence
//!   number, and no honest authority ever sends votes for two different orders of one sender
//!   and sequence number, across any number of restarts;
//! - **redeems**: the simulated contract paid only certified exits, each once, for exactly
//!   their amount and address; at the end, every honest client's exit is paid, and no more
//!   than the exit account holds at any honest authority;
//! - **durability**: every confirmation an honest shard acknowledged is still applied after
//!   it restarts;
//! - at the end, after healing: every outbox drains, every honest ledger equals genesis plus
//!   the certified transfers, and every client's view of its balance matches it.

use crate::{Role, SimFailure, World};
use fastpay_node::CertificateReader;
use fastpay_wire::{
    AccountId, CertifiedTransferOrder, Message, SequenceNumber, ShardId, Transfer, decode,
};
use std::collections::BTreeMap;

impl World {
    /// The invariants checked after every event.
    pub(crate) fn check_after_event(&self) -> Result<(), SimFailure> {
        self.check_conservation()?;
        self.check_deposits()?;
        self.check_redeems()
    }

    /// After settling: the contract paid no more than the exit account holds at any honest
    /// authority (everything that left FastPay).
    pub(crate) fn check_redeems_settled(&self) -> Result<(), SimFailure> {
        self.check_redeems()?;
        let paid = i128::try_from(self.contract.paid).unwrap_or(i128::MAX);
        let owner = fastpay_wire::shard_of(&fastpay_wire::PRIMARY_EXIT, self.config.shards);
        for (a, authority) in self.authorities.iter().enumerate() {
            if authority.is_byzantine() {
                continue;
            }
            let exited = authority.shards[owner.0 as usize]
                .node
                .as_ref()
                .and_then(|node| node.shard().accounts().get(&fastpay_wire::PRIMARY_EXIT))
                .map_or(0, |state| state.balance.units());
            if exited < paid {
                return Err(self.fail(format!(
                    "redeem: the contract paid {paid}, authority {a}'s exit account holds {exited}"
                )));
            }
        }
        Ok(())
    }

    /// The simulated contract paid only certified exits, each once, for their amount and
    /// address.
    fn check_redeems(&self) -> Result<(), SimFailure> {
        let mut paid = 0u128;
        for (key, (address, units)) in self.contract.redeemed() {
            let Some(transfer) = self.decided.get(key) else {
                return Err(self.fail(format!("redeem: {key:?} was paid but never certified")));
            };
            let certified_address =
                fastpay_wire::exit_address(&transfer.recipient, transfer.user_data.as_ref());
            if certified_address != Some(*address) || transfer.amount.units() != *units {
                return Err(self.fail(format!(
                    "redeem: {key:?} paid {units} to {address:?}; its certificate says {transfer:?}"
                )));
            }
            paid += u128::from(*units);
        }
        if paid != self.contract.paid {
            return Err(self.fail(format!(
                "redeem: the contract counts {} paid, its redeems add up to {paid}",
                self.contract.paid
            )));
        }
        Ok(())
    }

    fn check_conservation(&self) -> Result<(), SimFailure> {
        let supply = self.genesis.total().units();
        for (i, authority) in self.authorities.iter().enumerate() {
            if authority.is_byzantine() || !authority.all_up() {
                continue;
            }
            let nodes: Vec<_> = authority
                .shards
                .iter()
                .filter_map(|s| s.node.as_ref())
                .collect();
            // The shards' supply reports (what `client audit` reads): balances counted account
            // by account, with the deposits credited.
            let reports: Vec<_> = nodes.iter().map(|n| Some(n.shard().supply())).collect();
            let audited = fastpay_client::AuthoritySupply::of(authority.name, &reports);
            let total = audited.held;
            let deposited = i128::try_from(audited.deposited).unwrap_or(i128::MAX);
            let mut in_flight = 0i128;
            for (s, node) in nodes.iter().enumerate() {
                for (d, recipient) in nodes.iter().enumerate() {
                    let taken = recipient.links().taken_from(ShardId(s as u32));
                    for (sequence, update) in node.links().outbox(ShardId(d as u32)) {
                        if *sequence > taken {
                            in_flight +=
                                i128::from(update.certificate.value.transfer.amount.units());
                        }
                    }
                }
            }
            if total + in_flight != supply + deposited {
                return Err(self.fail(format!(
                    "conservation: authority {i} holds {total} with {in_flight} in flight, \
                     genesis is {supply} and it credited {deposited} from deposits"
                )));
            }
            // The reports balance too, and their `sent - received` is what the links hold
            // untaken.
            if !audited.balanced()
                || audited.in_flight != in_flight
                || audited.genesis != supply as u128
            {
                return Err(self.fail(format!(
                    "supply audit: authority {i} reports {audited:?}; the links hold \
                     {in_flight} untaken and the genesis is {supply}"
                )));
            }
        }
        Ok(())
    }

    /// Records that `transfer` was certified; two different transfers for one sender and
    /// sequence number break agreement.
    pub(crate) fn decide(&mut self, transfer: Transfer, source: &str) -> Result<(), SimFailure> {
        let key = (transfer.sender, transfer.sequence_number);
        match self.decided.get(&key) {
            Some(existing) if *existing != transfer => Err(self.fail(format!(
                "agreement: {source} decided {transfer:?} but {existing:?} was decided for the \
                 same sender and sequence number"
            ))),
            Some(_) => Ok(()),
            None => {
                self.decided.insert(key, transfer);
                Ok(())
            }
        }
    }

    pub(crate) fn certificate_formed(
        &mut self,
        certificate: CertifiedTransferOrder,
    ) -> Result<(), SimFailure> {
        let transfer = certificate.value.transfer;
        self.decide(transfer, "a client's certificate")?;
        self.certificates
            .entry((transfer.sender, transfer.sequence_number))
            .or_insert(certificate);
        Ok(())
    }

    /// Watches a reply leaving honest authority `a`: votes must never conflict (signatures
    /// are deterministic, so one order gives one signature), and acknowledged sequence
    /// numbers are remembered for the restart check.
    pub(crate) fn observe_reply(&mut self, a: usize, bytes: &[u8]) -> Result<(), SimFailure> {
        let Ok((_, message)) = decode(bytes) else {
            return Err(self.fail(format!("authority {a} sent an undecodable reply")));
        };
        match message {
            Message::Vote(vote) => {
                let key = (a, vote.sender, vote.sequence_number);
                match self.votes_sent.get(&key) {
                    Some(signature) if *signature != vote.signature => Err(self.fail(format!(
                        "safety: authority {a} voted for two different orders of {} at \
                         sequence number {}",
                        vote.sender, vote.sequence_number
                    ))),
                    Some(_) => Ok(()),
                    None => {
                        self.votes_sent.insert(key, vote.signature);
                        Ok(())
                    }
                }
            }
            Message::AccountInfoResponse(info) => {
                let mark = self
                    .acknowledged
                    .entry((a, info.account))
                    .or_insert(SequenceNumber::ZERO);
                *mark = (*mark).max(info.next_sequence_number);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After shard `s` of authority `a` restarted: every sequence number it acknowledged for
    /// an account it owns is still there.
    pub(crate) fn check_recovered(&self, a: usize, s: usize) -> Result<(), SimFailure> {
        let Some(node) = self.authorities[a].shards[s].node.as_ref() else {
            return Ok(());
        };
        let shard = node.shard();
        for ((authority, account), acknowledged) in
            self.acknowledged.range((a, AccountId([0; 32]))..)
        {
            if *authority != a {
                break;
            }
            if shard.shard_of(account) != shard.shard() {
                continue;
            }
            let now = shard
                .accounts()
                .get(account)
                .map(|state| state.next_sequence_number)
                .unwrap_or_default();
            if now < *acknowledged {
                return Err(self.fail(format!(
                    "durability: authority {a} shard {s} acknowledged {account} at sequence \
                     number {acknowledged} but recovered at {now}"
                )));
            }
        }
        Ok(())
    }

    /// Once healed and settled: outboxes are empty, honest ledgers equal genesis plus the
    /// certified transfers, and every client agrees with them.
    pub(crate) fn check_settled(
        &mut self,
        certificates: &[CertifiedTransferOrder],
    ) -> Result<(), SimFailure> {
        for (a, authority) in self.authorities.iter().enumerate() {
            for (s, host) in authority.shards.iter().enumerate() {
                let Some(node) = host.node.as_ref() else {
                    return Err(self.fail(format!("authority {a} shard {s} never restarted")));
                };
                if node.backlog() > 0 {
                    return Err(self.fail(format!(
                        "outbox: authority {a} shard {s} still holds {} unacknowledged credits \
                         after the network healed: {:?}",
                        node.backlog(),
                        authority
                            .shards
                            .iter()
                            .filter_map(|h| h.node.as_ref().map(|n| n.links().summary()))
                            .collect::<Vec<_>>()
                    )));
                }
            }
        }
        self.check_conservation()?;
        // The expected ledger: genesis plus every certified transfer.
        let mut expected: BTreeMap<AccountId, i128> = self
            .genesis
            .accounts()
            .iter()
            .map(|(a, amount)| (*a, i128::from(amount.units())))
            .collect();
        for deposit in &self.chain {
            *expected.entry(deposit.account).or_default() += i128::from(deposit.amount.units());
        }
        for certificate in certificates {
            let t = certificate.value.transfer;
            let amount = i128::from(t.amount.units());
            *expected.entry(t.sender).or_default() -= amount;
            *expected.entry(t.recipient).or_default() += amount;
        }
        for (a, authority) in self.authorities.iter().enumerate() {
            if authority.is_byzantine() {
                continue;
            }
            let mut ledger: BTreeMap<AccountId, i128> = BTreeMap::new();
            for host in &authority.shards {
                let Some(node) = host.node.as_ref() else {
                    continue;
                };
                for (account, state) in node.shard().accounts() {
                    ledger.insert(*account, state.balance.units());
                }
            }
            ledger.retain(|account, balance| *balance != 0 || expected.contains_key(account));
            let mut want = expected.clone();
            want.retain(|account, balance| *balance != 0 || ledger.contains_key(account));
            if ledger != want {
                let diff: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| ledger.get(k) != Some(v))
                    .take(3)
                    .collect();
                return Err(self.fail(format!(
                    "ledger: authority {a} disagrees with the certificates on {diff:?}"
                )));
            }
        }
        self.check_stores(certificates)?;
        // Honest clients learned their payments through the real client's sync (run by
        // `heal_and_settle`); a double spender's state is the harness's, so it downloads its
        // payments from every honest authority's store directly. Then every client's view
        // must match the ledger.
        for c in 0..self.clients.len() {
            if matches!(self.clients[c].role, Role::Honest { .. }) {
                self.check_read_to_the_end(c)?;
                continue;
            }
            for (_, certificate) in self.stored_payments(c) {
                let _ = self.clients[c].state.learn_certificate(certificate);
            }
        }
        for (c, client) in self.clients.iter().enumerate() {
            let want = expected.get(&client.state.account()).copied().unwrap_or(0);
            if client.state.balance().units() != want {
                return Err(self.fail(format!(
                    "client {c} believes its balance is {}, the ledger says {want}",
                    client.state.balance()
                )));
            }
        }
        Ok(())
    }

    /// The payments to client `c` in every honest authority's store, with their arrival
    /// index there.
    fn stored_payments(&self, c: usize) -> Vec<(u64, CertifiedTransferOrder)> {
        let account = self.clients[c].state.account();
        let shard = fastpay_wire::shard_of(&account, self.config.shards).0 as usize;
        let mut received = Vec::new();
        for authority in self.authorities.iter().filter(|a| !a.is_byzantine()) {
            if let Some(host) = authority.shards.get(shard) {
                let _ = host
                    .certificates
                    .received(&account, 0, usize::MAX, &mut received);
            }
        }
        received
    }

    /// A sync on the healed network read every honest authority's list of client `c`'s
    /// payments to its end: its cursor there is past each payment's arrival index.
    fn check_read_to_the_end(&self, c: usize) -> Result<(), SimFailure> {
        let account = self.clients[c].state.account();
        let shard = fastpay_wire::shard_of(&account, self.config.shards).0 as usize;
        for authority in self.authorities.iter().filter(|a| !a.is_byzantine()) {
            let Some(host) = authority.shards.get(shard) else {
                continue;
            };
            let mut received = Vec::new();
            let _ = host
                .certificates
                .received(&account, 0, usize::MAX, &mut received);
            let cursor = self.clients[c].state.received_cursor(&authority.name);
            if let Some((arrival, _)) = received.iter().find(|(arrival, _)| *arrival >= cursor) {
                return Err(self.fail(format!(
                    "client {c}'s sync stopped at {cursor} in authority {}'s list of its \
                     payments, which goes on to {arrival}",
                    authority.name
                )));
            }
        }
        Ok(())
    }

    /// Once settled, every honest shard's certificate store holds every certificate it
    /// applied: each certified transfer under its sender and sequence number at the sender's
    /// shard, and among the recipient's payments, once, at the recipient's shard.
    fn check_stores(&self, certificates: &[CertifiedTransferOrder]) -> Result<(), SimFailure> {
        let shards = self.config.shards;
        for (a, authority) in self.authorities.iter().enumerate() {
            if authority.is_byzantine() {
                continue;
            }
            let mut payments: BTreeMap<AccountId, Vec<CertifiedTransferOrder>> = BTreeMap::new();
            for certificate in certificates {
                let t = certificate.value.transfer;
                let at = fastpay_wire::shard_of(&t.sender, shards).0 as usize;
                let kept = authority.shards[at]
                    .certificates
                    .certificate(&t.sender, t.sequence_number);
                // Another quorum's certificate of the same transfer is as good.
                let kept = kept.ok().flatten().map(|c| c.value.transfer);
                if kept != Some(t) {
                    return Err(self.fail(format!(
                        "store: authority {a} shard {at} does not keep the certificate of {} \
                         at sequence number {}",
                        t.sender, t.sequence_number
                    )));
                }
                if t.recipient != t.sender {
                    payments
                        .entry(t.recipient)
                        .or_default()
                        .push(certificate.clone());
                }
            }
            for (recipient, mut expected) in payments {
                let at = fastpay_wire::shard_of(&recipient, shards).0 as usize;
                let mut listed = Vec::new();
                let _ = authority.shards[at].certificates.received(
                    &recipient,
                    0,
                    usize::MAX,
                    &mut listed,
                );
                let mut listed: Vec<CertifiedTransferOrder> =
                    listed.into_iter().map(|(_, c)| c).collect();
                let key = |c: &CertifiedTransferOrder| {
                    (c.value.transfer.sender, c.value.transfer.sequence_number)
                };
                listed.sort_by_key(key);
                expected.sort_by_key(key);
                let transfers = |list: &[CertifiedTransferOrder]| {
                    list.iter().map(|c| c.value.transfer).collect::<Vec<_>>()
                };
                if transfers(&listed) != transfers(&expected) {
                    return Err(self.fail(format!(
                        "store: authority {a} shard {at} lists {} payments to {recipient}, \
                         {} were certified",
                        listed.len(),
                        expected.len()
                    )));
                }
            }
        }
        Ok(())
    }
}
