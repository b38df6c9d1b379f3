//! The client's state and its handlers.

use fastpay_wire::{
    AccountId, AccountInfoResponse, Amount, AuthorityName, Balance, CertifiedTransferOrder,
    Committee, ConfirmationOrder, ErrorCode, ErrorReply, KeyPair, Message, PublicKey, RootCache,
    SequenceNumber, ShardId, SignedTransferOrder, Transfer, TransferOrder, UserData, VoteError,
    VoteReply, VoteSignature,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use thiserror::Error;

/// Why the client refused a request or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ClientError {
    /// A transfer is still in progress; finish it first.
    #[error("a transfer is already in progress")]
    TransferInProgress,
    /// Transfers move a positive amount.
    #[error("zero amount")]
    ZeroAmount,
    /// The local balance does not cover the amount.
    #[error("insufficient funds: balance {balance}, amount {amount}")]
    InsufficientFunds {
        /// The local balance.
        balance: Balance,
        /// The amount asked for.
        amount: Amount,
    },
    /// No transfer is in progress, so the reply answers nothing.
    #[error("no transfer in progress")]
    NoTransferInProgress,
    /// The reply is about another order or account.
    #[error("reply does not match the transfer in progress")]
    Mismatch,
    /// The replying authority is not in the committee.
    #[error("authority {0} is not in the committee")]
    UnknownAuthority(AuthorityName),
    /// The vote's signature does not verify: a bad signature, a bad Merkle path or index,
    /// or the wrong form for the authority's vote scheme.
    #[error("vote from {0} refused: {1}")]
    InvalidVote(AuthorityName, VoteError),
    /// The certificate is not a verified quorum for a transfer to this account.
    #[error("certificate refused")]
    InvalidCertificate,
    /// Arithmetic would leave its range.
    #[error("arithmetic overflow")]
    Overflow,
    /// The account is watched without its secret key: it cannot pay.
    #[error("the account is watch-only (the wallet has no secret key for it)")]
    WatchOnly,
    /// A certificate of a later transfer of this account than the next one: its earlier
    /// transfers must be learned first.
    #[error("a certificate beyond the next sequence number")]
    OutOfOrder,
}

/// What [`ClientState::learn_certificate`] made of a certificate from the committee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already counted.
    Known,
    /// This account's next transfer, now debited: it is being confirmed.
    Sent,
    /// A payment to this account, now counted in its balance.
    Received,
}

/// Where a request a client sends goes, at each authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the shard that owns this account.
    Account(AccountId),
    /// To this shard.
    Shard(ShardId),
}

/// Where `message`, a request a client sends, must go: an order's and a confirmation's
/// sender (the shard that debits it), a query's account, a supply query's shard. A
/// confirmation is routed by its certificate's sender even when a recipient sends it (a
/// recipient catching an authority up on a payment it received): the recipient's own shard
/// would refuse it as `WrongShard`. `None` for messages clients do not send.
pub fn route(message: &Message) -> Option<Route> {
    let account = match message {
        Message::TransferOrder(order) => order.transfer.sender,
        Message::ConfirmationOrder(order) => order.certificate.value.transfer.sender,
        Message::AccountInfoRequest(request) => request.account,
        Message::RedeemRequest(request) => request.certificate.value.transfer.sender,
        Message::SupplyRequest(request) => return Some(Route::Shard(request.shard)),
        Message::RedeemApproval(_)
        | Message::CrossShardUpdate(_)
        | Message::Vote(_)
        | Message::AccountInfoResponse(_)
        | Message::Error(_)
        | Message::ShardLink(_)
        | Message::Certificates(_)
        | Message::Supply(_) => return None,
    };
    Some(Route::Account(account))
}

/// Checks a certificate of `committee` (see [`ClientState::check_certificate`]), remembering
/// verified vote roots in `roots`.
pub(crate) fn check_certificate(
    committee: &Committee,
    certificate: &CertifiedTransferOrder,
    mut roots: Option<&mut RootCache>,
) -> Result<(), ClientError> {
    committee
        .check_signers(certificate)
        .map_err(|_| ClientError::InvalidCertificate)?;
    let order = &certificate.value;
    let id = committee.id();
    let vote_bytes = order.vote_bytes(&id);
    for (name, signature) in &certificate.signatures {
        committee
            .verify_vote(name, &vote_bytes, signature, roots.as_deref_mut())
            .map_err(|_| ClientError::InvalidCertificate)?;
    }
    PublicKey::of_account(&order.transfer.sender)
        .and_then(|key| key.verify(&order.signed_bytes(&id), &order.signature))
        .map_err(|_| ClientError::InvalidCertificate)
}

pub(crate) fn confirmation_message(certificate: &CertifiedTransferOrder) -> Message {
    Message::ConfirmationOrder(ConfirmationOrder {
        certificate: certificate.clone(),
    })
}

/// Where the transfer in progress stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Collecting votes for the order.
    Voting {
        /// The signed order sent to every authority.
        order: TransferOrder,
        /// Valid votes received so far, one per authority.
        votes: BTreeMap<AuthorityName, VoteSignature>,
    },
    /// The order is certified; confirmations go out until a quorum acknowledges them.
    Confirming {
        /// The certificate.
        certificate: CertifiedTransferOrder,
        /// Authorities that acknowledged the confirmation.
        acks: BTreeMap<AuthorityName, ()>,
    },
}

/// Everything a client knows except its key: what a wallet stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSnapshot {
    /// The account.
    pub account: AccountId,
    /// Funding plus received minus sent.
    pub balance: Balance,
    /// The next transfer's sequence number.
    pub next_sequence_number: SequenceNumber,
    /// The transfer in progress.
    pub pending: Option<Phase>,
    /// Certificates of this account's transfers.
    pub sent_certificates: Vec<CertifiedTransferOrder>,
    /// Certificates of payments to this account.
    pub received_certificates: Vec<CertifiedTransferOrder>,
    /// Per authority, the next sequence number it acknowledged.
    pub acknowledged: BTreeMap<AuthorityName, SequenceNumber>,
    /// Per authority, the arrival index from which its list of payments received by this
    /// account has not been read yet.
    #[serde(default)]
    pub received_cursors: BTreeMap<AuthorityName, u64>,
    /// Units deposited into the account on the primary chain that the committee credited
    /// (part of `balance`, see [`credited_deposits`]).
    #[serde(default)]
    pub deposited: Balance,
}

/// One account holder.
#[derive(Debug)]
pub struct ClientState {
    /// The account's key; `None` for an account watched without its secret.
    key: Option<KeyPair>,
    account: AccountId,
    committee: Arc<Committee>,
    balance: Balance,
    next_sequence_number: SequenceNumber,
    pending: Option<Phase>,
    sent_certificates: Vec<CertifiedTransferOrder>,
    received_certificates: BTreeMap<(AccountId, SequenceNumber), CertifiedTransferOrder>,
    /// Per authority, the next sequence number it acknowledged for this account: what a
    /// lagging authority still lacks.
    acknowledged: HashMap<AuthorityName, SequenceNumber>,
    /// Per authority, where the next refusal for want of funds resumes in the received
    /// certificates (they go out [`CATCH_UP_LIMIT`] at a time).
    received_cursor: HashMap<AuthorityName, usize>,
    /// Vote roots (of authorities that batch their votes) whose signatures verified here.
    roots: RootCache,
    /// Per authority, where its list of payments received here is read from next.
    received_cursors: BTreeMap<AuthorityName, u64>,
    /// Deposits the committee credited (part of `balance`, see [`credited_deposits`]).
    deposited: Balance,
}

/// The largest deposit total that authorities holding at least the validity threshold of
/// `committee`'s weight (f + 1 of 3f + 1) each report for the account (each answer is one
/// authority's view). Among them is an honest authority, which credits a deposit only once
/// it is confirmed on the primary chain; every honest authority follows the same chain and
/// will credit it too, so the account owns this much. A lying minority of up to f cannot
/// raise it. (Spending it gathers its certificate once a quorum has credited it.)
pub fn credited_deposits<'a>(
    committee: &Committee,
    answers: impl IntoIterator<Item = (&'a AuthorityName, &'a AccountInfoResponse)>,
) -> Balance {
    let mut views: Vec<(Balance, u64)> = answers
        .into_iter()
        .map(|(name, info)| (info.deposited, committee.weight(name)))
        .collect();
    views.sort_unstable_by_key(|view| std::cmp::Reverse(view.0));
    let threshold = committee.validity_threshold();
    let mut weight: u64 = 0;
    for (deposited, w) in views {
        weight = weight.saturating_add(w);
        if weight >= threshold {
            return deposited;
        }
    }
    Balance::ZERO
}

/// Vote roots a client remembers: certificates received from payers whose votes were cast
/// in the same batches share roots; a client sees few such batches (32 KiB of keys).
pub const CLIENT_ROOT_CACHE: usize = 256;

/// Most messages one refusal makes a client send. Refusals come over UDP, whose source
/// addresses can be forged: a forged refusal must not make a client send its whole history
/// (an amplifier aimed at an authority). A lagging authority catches up over a few round
/// trips instead, each refusal bringing the next few.
pub const CATCH_UP_LIMIT: usize = 4;

impl ClientState {
    /// A client for `key`'s account, starting from `balance` at sequence number zero.
    pub fn new(key: KeyPair, committee: Arc<Committee>, balance: Balance) -> Self {
        let account = key.account();
        let mut client = Self::watch(account, committee, balance);
        client.key = Some(key);
        client
    }

    /// A client for `account` without its key (watch-only: it learns what the account sent
    /// and received, but cannot pay), starting from `balance` at sequence number zero.
    pub fn watch(account: AccountId, committee: Arc<Committee>, balance: Balance) -> Self {
        Self {
            key: None,
            account,
            committee,
            balance,
            next_sequence_number: SequenceNumber::ZERO,
            pending: None,
            sent_certificates: Vec::new(),
            received_certificates: BTreeMap::new(),
            acknowledged: HashMap::new(),
            received_cursor: HashMap::new(),
            roots: RootCache::with_capacity(CLIENT_ROOT_CACHE),
            received_cursors: BTreeMap::new(),
            deposited: Balance::ZERO,
        }
    }

    /// Whether the client has no key and so cannot pay.
    pub fn is_watch_only(&self) -> bool {
        self.key.is_none()
    }

    /// The account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// What a wallet stores.
    pub fn snapshot(&self) -> ClientSnapshot {
        ClientSnapshot {
            account: self.account,
            balance: self.balance,
            next_sequence_number: self.next_sequence_number,
            pending: self.pending.clone(),
            sent_certificates: self.sent_certificates.clone(),
            received_certificates: self.received_certificates.values().cloned().collect(),
            acknowledged: self.acknowledged.iter().map(|(k, v)| (*k, *v)).collect(),
            received_cursors: self.received_cursors.clone(),
            deposited: self.deposited,
        }
    }

    /// A client restored from a wallet record; `key`, if any, must own the recorded account
    /// (without one the account is watch-only).
    pub fn restore(
        key: Option<KeyPair>,
        committee: Arc<Committee>,
        snapshot: ClientSnapshot,
    ) -> Result<Self, ClientError> {
        if key
            .as_ref()
            .is_some_and(|k| k.account() != snapshot.account)
        {
            return Err(ClientError::Mismatch);
        }
        Ok(Self {
            account: snapshot.account,
            key,
            committee,
            balance: snapshot.balance,
            next_sequence_number: snapshot.next_sequence_number,
            pending: snapshot.pending,
            sent_certificates: snapshot.sent_certificates,
            received_certificates: snapshot
                .received_certificates
                .into_iter()
                .map(|c| {
                    let t = c.value.transfer;
                    ((t.sender, t.sequence_number), c)
                })
                .collect(),
            acknowledged: snapshot.acknowledged.into_iter().collect(),
            received_cursor: HashMap::new(),
            roots: RootCache::with_capacity(CLIENT_ROOT_CACHE),
            received_cursors: snapshot.received_cursors,
            deposited: snapshot.deposited,
        })
    }

    /// Deposits from the primary chain the committee credited, in all (part of the balance).
    pub fn deposited(&self) -> Balance {
        self.deposited
    }

    /// Counts deposits: `credited_deposits` is what authorities holding the validity
    /// threshold of the weight all report as credited at least (see [`credited_deposits`]). Only an increase
    /// counts; returns it (zero when nothing new was learned).
    pub fn learn_deposits(&mut self, credited_deposits: Balance) -> Result<Balance, ClientError> {
        let new = credited_deposits
            .units()
            .checked_sub(self.deposited.units())
            .unwrap_or(0);
        if new <= 0 {
            return Ok(Balance::ZERO);
        }
        let new = Balance::new(new);
        self.balance = self
            .balance
            .try_add_balance(new)
            .map_err(|_| ClientError::Overflow)?;
        self.deposited = credited_deposits;
        Ok(new)
    }

    /// The secret seed of the account key, for the wallet file (`None` if watch-only).
    pub fn key_seed(&self) -> Option<[u8; 32]> {
        self.key.as_ref().map(KeyPair::seed)
    }

    /// Where `authority`'s list of payments received by this account is read from next.
    pub fn received_cursor(&self, authority: &AuthorityName) -> u64 {
        self.received_cursors.get(authority).copied().unwrap_or(0)
    }

    /// `authority`'s list of payments received has been read up to `next` (which may be
    /// less than before, if the authority lost its state and its list was read again).
    pub fn set_received_cursor(&mut self, authority: AuthorityName, next: u64) {
        self.received_cursors.insert(authority, next);
    }

    /// Takes a certificate downloaded from the committee, after verifying it: this
    /// account's next transfer (adopted as certified, so it is then confirmed: the transfer
    /// in progress if it was interrupted, or one the wallet never saw), or a payment to this
    /// account (counted once).
    pub fn learn_certificate(
        &mut self,
        certificate: CertifiedTransferOrder,
    ) -> Result<Learned, ClientError> {
        let transfer = certificate.value.transfer;
        if transfer.sender == self.account {
            if transfer.sequence_number < self.next_sequence_number {
                return Ok(Learned::Known);
            }
            if transfer.sequence_number > self.next_sequence_number {
                return Err(ClientError::OutOfOrder);
            }
            self.adopt_certificate(certificate)?;
            return Ok(Learned::Sent);
        }
        if transfer.recipient != self.account {
            return Err(ClientError::Mismatch);
        }
        Ok(if self.receive_certificate(certificate)? {
            Learned::Received
        } else {
            Learned::Known
        })
    }

    /// Whether this account already counts the payment `certificate` (by its sender and
    /// sequence number).
    pub fn has_received(&self, certificate: &CertifiedTransferOrder) -> bool {
        let t = &certificate.value.transfer;
        self.received_certificates
            .contains_key(&(t.sender, t.sequence_number))
    }

    /// The committee this client talks to.
    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    /// The balance as this client knows it: funding plus received minus sent.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The sequence number of the next transfer.
    pub fn next_sequence_number(&self) -> SequenceNumber {
        self.next_sequence_number
    }

    /// The transfer in progress.
    pub fn pending(&self) -> Option<&Phase> {
        self.pending.as_ref()
    }

    /// Certificates of this account's transfers, in sequence order.
    pub fn sent_certificates(&self) -> &[CertifiedTransferOrder] {
        &self.sent_certificates
    }

    /// Certificates of transfers to this account.
    pub fn received_certificates(&self) -> impl Iterator<Item = &CertifiedTransferOrder> {
        self.received_certificates.values()
    }

    /// Starts a transfer: signs the order to send to every authority.
    pub fn transfer(
        &mut self,
        recipient: AccountId,
        amount: Amount,
        user_data: Option<UserData>,
    ) -> Result<TransferOrder, ClientError> {
        let Some(key) = &self.key else {
            return Err(ClientError::WatchOnly);
        };
        if self.pending.is_some() {
            return Err(ClientError::TransferInProgress);
        }
        if amount.units() == 0 {
            return Err(ClientError::ZeroAmount);
        }
        if !self.balance.covers(amount) {
            return Err(ClientError::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        let order = TransferOrder::new(
            Transfer {
                sender: self.account,
                recipient,
                amount,
                sequence_number: self.next_sequence_number,
                user_data,
            },
            &self.committee.id(),
            key,
        );
        self.pending = Some(Phase::Voting {
            order,
            votes: BTreeMap::new(),
        });
        Ok(order)
    }

    /// Takes a vote as it travels (a [`VoteReply`] names only the sender and sequence
    /// number): rebuilds the vote for the order in progress and handles it like
    /// [`handle_vote`](Self::handle_vote).
    pub fn handle_vote_reply(
        &mut self,
        reply: &VoteReply,
    ) -> Result<Option<CertifiedTransferOrder>, ClientError> {
        let Some(Phase::Voting { order, .. }) = &self.pending else {
            return Err(ClientError::NoTransferInProgress);
        };
        let vote = reply.for_order(order).ok_or(ClientError::Mismatch)?;
        self.handle_vote(&vote)
    }

    /// Takes one authority's vote; returns the certificate when the votes reach a quorum.
    pub fn handle_vote(
        &mut self,
        vote: &SignedTransferOrder,
    ) -> Result<Option<CertifiedTransferOrder>, ClientError> {
        let Some(Phase::Voting { order, votes }) = &mut self.pending else {
            return Err(ClientError::NoTransferInProgress);
        };
        if vote.value.transfer != order.transfer {
            return Err(ClientError::Mismatch);
        }
        if self.committee.public_key(&vote.authority).is_none() {
            return Err(ClientError::UnknownAuthority(vote.authority));
        }
        if votes.contains_key(&vote.authority) {
            return Ok(None);
        }
        self.committee
            .verify_vote(
                &vote.authority,
                &order.vote_bytes(&self.committee.id()),
                &vote.signature,
                Some(&mut self.roots),
            )
            .map_err(|e| ClientError::InvalidVote(vote.authority, e))?;
        votes.insert(vote.authority, vote.signature);
        let weight: u64 = votes
            .keys()
            .map(|name| self.committee.weight(name))
            .fold(0, u64::saturating_add);
        if weight < self.committee.quorum_threshold() {
            return Ok(None);
        }
        let certificate = CertifiedTransferOrder {
            value: *order,
            signatures: votes.iter().map(|(n, s)| (*n, *s)).collect(),
        };
        self.certified(certificate.clone())?;
        Ok(Some(certificate))
    }

    /// Records a certificate for the transfer in progress (formed here, or recovered from an
    /// earlier run): the debit is final, so the balance and sequence number move now.
    fn certified(&mut self, certificate: CertifiedTransferOrder) -> Result<(), ClientError> {
        let transfer = certificate.value.transfer;
        let balance = self
            .balance
            .try_sub(transfer.amount)
            .map_err(|_| ClientError::Overflow)?;
        let next = transfer
            .sequence_number
            .try_next()
            .map_err(|_| ClientError::Overflow)?;
        self.balance = balance;
        self.next_sequence_number = next;
        if transfer.recipient == self.account {
            self.balance = self
                .balance
                .try_add(transfer.amount)
                .map_err(|_| ClientError::Overflow)?;
        }
        self.sent_certificates.push(certificate.clone());
        self.pending = Some(Phase::Confirming {
            certificate,
            acks: BTreeMap::new(),
        });
        Ok(())
    }

    /// The confirmation order for the certified transfer in progress.
    pub fn confirmation(&self) -> Option<ConfirmationOrder> {
        match &self.pending {
            Some(Phase::Confirming { certificate, .. }) => Some(ConfirmationOrder {
                certificate: certificate.clone(),
            }),
            _ => None,
        }
    }

    /// What to (re)send to `authority` for the transfer in progress: the order while voting
    /// (unless it voted), the confirmation while confirming (unless it acknowledged).
    pub fn request_for(&self, authority: &AuthorityName) -> Option<Message> {
        match &self.pending {
            Some(Phase::Voting { order, votes }) if !votes.contains_key(authority) => {
                Some(Message::TransferOrder(*order))
            }
            Some(Phase::Confirming { certificate, acks }) if !acks.contains_key(authority) => {
                Some(confirmation_message(certificate))
            }
            _ => None,
        }
    }

    /// Takes an authority's account state for this account: acknowledges the confirmation in
    /// progress when it shows the transfer applied. Returns whether the transfer is finished
    /// (a quorum acknowledged it).
    pub fn handle_account_info(
        &mut self,
        authority: AuthorityName,
        info: &AccountInfoResponse,
    ) -> Result<bool, ClientError> {
        if info.account != self.account {
            return Err(ClientError::Mismatch);
        }
        if self.committee.weight(&authority) == 0 {
            return Err(ClientError::UnknownAuthority(authority));
        }
        let mark = self.acknowledged.entry(authority).or_default();
        *mark = (*mark).max(info.next_sequence_number);
        let Some(Phase::Confirming { certificate, acks }) = &mut self.pending else {
            return Ok(false);
        };
        if info.next_sequence_number <= certificate.value.transfer.sequence_number {
            return Ok(false);
        }
        acks.insert(authority, ());
        let weight: u64 = acks
            .keys()
            .map(|name| self.committee.weight(name))
            .fold(0, u64::saturating_add);
        if weight >= self.committee.quorum_threshold() {
            self.pending = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Confirmations of this account's certified transfers that `authority` has not
    /// acknowledged yet, oldest first: what a lagging authority needs before it can vote on
    /// this account's next order.
    pub fn confirmations_missing_at(&self, authority: &AuthorityName) -> Vec<Message> {
        let known = self
            .acknowledged
            .get(authority)
            .copied()
            .unwrap_or_default();
        self.sent_certificates
            .iter()
            .filter(|c| c.value.transfer.sequence_number >= known)
            .map(confirmation_message)
            .collect()
    }

    /// What an authority that refused this client's request needs to catch up, at most
    /// [`CATCH_UP_LIMIT`] messages: the oldest confirmations of this account's earlier
    /// transfers when it misses them, or the next few certificates of payments received when
    /// it sees too little money here (the following refusal brings the next few).
    pub fn catch_up(&mut self, authority: &AuthorityName, error: &ErrorReply) -> Vec<Message> {
        if error.account != self.account {
            return Vec::new();
        }
        match error.code {
            ErrorCode::MissingEarlierConfirmations => {
                let mut missing = self.confirmations_missing_at(authority);
                missing.truncate(CATCH_UP_LIMIT);
                missing
            }
            ErrorCode::InsufficientFunds => {
                let received = self.received_certificates.len();
                if received == 0 {
                    return Vec::new();
                }
                let cursor = self.received_cursor.entry(*authority).or_default();
                let start = *cursor % received;
                let count = CATCH_UP_LIMIT.min(received);
                *cursor = start + count;
                self.received_certificates
                    .values()
                    .cycle()
                    .skip(start)
                    .take(count)
                    .map(confirmation_message)
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Adopts a certificate for this account's next transfer that was formed elsewhere (by an
    /// earlier run that was interrupted, or from votes collected outside this state machine):
    /// after checking it, the transfer moves to confirming as if the votes had arrived here.
    pub fn adopt_certificate(
        &mut self,
        certificate: CertifiedTransferOrder,
    ) -> Result<(), ClientError> {
        let transfer = certificate.value.transfer;
        if transfer.sender != self.account || transfer.sequence_number != self.next_sequence_number
        {
            return Err(ClientError::Mismatch);
        }
        if matches!(self.pending, Some(Phase::Confirming { .. })) {
            return Err(ClientError::TransferInProgress);
        }
        check_certificate(&self.committee, &certificate, Some(&mut self.roots))?;
        self.certified(certificate)
    }

    /// Checks a certificate: known, distinct signers with a quorum's weight, every signature
    /// valid, and a valid owner signature.
    pub fn check_certificate(
        &self,
        certificate: &CertifiedTransferOrder,
    ) -> Result<(), ClientError> {
        check_certificate(&self.committee, certificate, None)
    }

    /// Takes the certificate of a payment to this account (handed over by its payer). Each
    /// payment counts once; returns whether it was new.
    pub fn receive_certificate(
        &mut self,
        certificate: CertifiedTransferOrder,
    ) -> Result<bool, ClientError> {
        let transfer = certificate.value.transfer;
        if transfer.recipient != self.account {
            return Err(ClientError::Mismatch);
        }
        let key = (transfer.sender, transfer.sequence_number);
        // A payment counted already, or our own transfer to ourselves (counted when it was
        // certified), changes nothing: no need to check its signatures again (a sync reads
        // lists that repeat what a payer handed over).
        if self.received_certificates.contains_key(&key) || transfer.sender == self.account {
            return Ok(false);
        }
        check_certificate(&self.committee, &certificate, Some(&mut self.roots))?;
        self.balance = self
            .balance
            .try_add(transfer.amount)
            .map_err(|_| ClientError::Overflow)?;
        self.received_certificates.insert(key, certificate);
        Ok(true)
    }

    /// Gives up on a transfer that cannot gather a quorum (for example one refused for lack of
    /// funds): the order is dropped and nothing is debited. Returns the abandoned order.
    ///
    /// Authorities that voted keep their vote, so this account's next order must reuse the
    /// same sequence number and will conflict with those votes; call this only when the order
    /// was refused by more than f of the committee's weight.
    pub fn abandon(&mut self) -> Option<TransferOrder> {
        match self.pending.take() {
            Some(Phase::Voting { order, .. }) => Some(order),
            other => {
                self.pending = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_authority::{AuthorityShard, Genesis};
    use fastpay_wire::{CommitteeMember, ShardId, Signature, VoteScheme};

    struct Fixture {
        shards: Vec<AuthorityShard>,
        alice: ClientState,
        bob: ClientState,
    }

    /// Four single-shard authorities; Alice and Bob start with 100 each.
    fn fixture() -> Fixture {
        fixture_with(VoteScheme::Single)
    }

    /// [`fixture`] with every authority signing votes by `scheme`.
    fn fixture_with(scheme: VoteScheme) -> Fixture {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([50 + i; 32])).collect();
        let committee = Arc::new(
            Committee::equal_weights(keys.iter().map(KeyPair::authority), 1)
                .unwrap()
                .with_vote_scheme(scheme),
        );
        let alice = KeyPair::from_seed([1; 32]);
        let bob = KeyPair::from_seed([2; 32]);
        let genesis = Genesis::from_accounts([
            (alice.account(), Amount::new(100)),
            (bob.account(), Amount::new(100)),
        ])
        .unwrap();
        let shards = keys
            .into_iter()
            .map(|k| AuthorityShard::new(k, committee.clone(), ShardId(0), &genesis).unwrap())
            .collect();
        Fixture {
            alice: ClientState::new(alice, committee.clone(), Balance::new(100)),
            bob: ClientState::new(bob, committee, Balance::new(100)),
            shards,
        }
    }

    fn vote(shard: &mut AuthorityShard, order: &TransferOrder) -> SignedTransferOrder {
        shard.handle_transfer_order(order).unwrap()
    }

    /// Alice pays Bob `amount`; authorities 0..3 vote, which certifies the order.
    fn certify(fx: &mut Fixture, amount: u64) -> CertifiedTransferOrder {
        let order = fx
            .alice
            .transfer(fx.bob.account(), Amount::new(amount), None)
            .unwrap();
        let mut certificate = None;
        for i in 0..3 {
            let v = vote(&mut fx.shards[i], &order);
            certificate = fx.alice.handle_vote(&v).unwrap();
        }
        certificate.unwrap()
    }

    #[test]
    fn deposits_count_once_a_quorum_credited_them() {
        let mut fx = fixture();
        let names: Vec<AuthorityName> = fx.shards.iter().map(AuthorityShard::name).collect();
        let info = |deposited: i128| AccountInfoResponse {
            account: fx.alice.account(),
            balance: Balance::new(100 + deposited),
            next_sequence_number: SequenceNumber::ZERO,
            pending: None,
            deposited: Balance::new(deposited),
        };
        let answers = |views: [i128; 4]| -> Vec<(AuthorityName, AccountInfoResponse)> {
            names.iter().copied().zip(views.map(info)).collect()
        };
        let quorum = |views| {
            let answers = answers(views);
            credited_deposits(
                &fx.alice.committee().clone(),
                answers.iter().map(|(n, i)| (n, i)),
            )
        };
        // One liar claims a fortune: two authorities (f + 1) credited at least 10.
        assert_eq!(quorum([10, 10, 5, 1_000_000]), Balance::new(10));
        // A lone liar is not enough; two authorities are (one of them is honest).
        assert_eq!(quorum([1_000_000, 0, 0, 0]), Balance::ZERO);
        assert_eq!(quorum([40, 40, 0, 0]), Balance::new(40));

        assert_eq!(
            fx.alice.learn_deposits(Balance::new(10)),
            Ok(Balance::new(10))
        );
        assert_eq!(fx.alice.balance(), Balance::new(110));
        // Learned again, or a lower view: nothing more.
        assert_eq!(fx.alice.learn_deposits(Balance::new(10)), Ok(Balance::ZERO));
        assert_eq!(fx.alice.learn_deposits(Balance::new(3)), Ok(Balance::ZERO));
        assert_eq!(
            fx.alice.learn_deposits(Balance::new(25)),
            Ok(Balance::new(15))
        );
        assert_eq!(fx.alice.balance(), Balance::new(125));
        assert_eq!(fx.alice.deposited(), Balance::new(25));
        // The wallet keeps it.
        let restored =
            ClientState::restore(None, fx.alice.committee().clone(), fx.alice.snapshot()).unwrap();
        assert_eq!(restored.deposited(), Balance::new(25));
    }

    #[test]
    fn transfer_refusals() {
        let mut fx = fixture();
        let bob = fx.bob.account();
        assert_eq!(
            fx.alice.transfer(bob, Amount::ZERO, None),
            Err(ClientError::ZeroAmount)
        );
        assert_eq!(
            fx.alice.transfer(bob, Amount::new(101), None),
            Err(ClientError::InsufficientFunds {
                balance: Balance::new(100),
                amount: Amount::new(101)
            })
        );
        fx.alice.transfer(bob, Amount::new(1), None).unwrap();
        assert_eq!(
            fx.alice.transfer(bob, Amount::new(1), None),
            Err(ClientError::TransferInProgress)
        );
    }

    #[test]
    fn a_full_transfer_survives_one_lying_authority() {
        let mut fx = fixture();
        let order = fx
            .alice
            .transfer(fx.bob.account(), Amount::new(30), None)
            .unwrap();

        // The Byzantine authority 3 sends a garbage vote, then a vote for another order.
        let mut garbage = vote(&mut fx.shards[3], &order);
        garbage.signature = VoteSignature::Single(Signature([7; 64]));
        assert_eq!(
            fx.alice.handle_vote(&garbage),
            Err(ClientError::InvalidVote(
                garbage.authority,
                VoteError::Signature(fastpay_wire::CryptoError::InvalidSignature)
            ))
        );
        let mut other = order;
        other.transfer.amount = Amount::new(31);
        let wrong = SignedTransferOrder {
            value: other,
            ..garbage
        };
        assert_eq!(fx.alice.handle_vote(&wrong), Err(ClientError::Mismatch));
        let stranger = SignedTransferOrder::new(
            order,
            &fx.alice.committee().id(),
            &KeyPair::from_seed([99; 32]),
        );
        assert_eq!(
            fx.alice.handle_vote(&stranger),
            Err(ClientError::UnknownAuthority(stranger.authority))
        );

        // Honest votes: the second is a duplicate, the third makes the quorum.
        let v0 = vote(&mut fx.shards[0], &order);
        assert_eq!(fx.alice.handle_vote(&v0), Ok(None));
        assert_eq!(fx.alice.handle_vote(&v0), Ok(None));
        let v1 = vote(&mut fx.shards[1], &order);
        assert_eq!(fx.alice.handle_vote(&v1), Ok(None));
        let v2 = vote(&mut fx.shards[2], &order);
        let certificate = fx.alice.handle_vote(&v2).unwrap().unwrap();
        assert_eq!(fx.alice.balance(), Balance::new(70));
        assert_eq!(fx.alice.next_sequence_number(), SequenceNumber::new(1));
        assert!(fx.bob.check_certificate(&certificate).is_ok());

        // Confirmations: three acknowledgements finish the transfer.
        let confirmation = fx.alice.confirmation().unwrap();
        let names: Vec<AuthorityName> = fx.shards.iter().map(|s| s.name()).collect();
        for (i, shard) in fx.shards.iter_mut().enumerate().take(3) {
            let done = shard.handle_confirmation_order(&confirmation).unwrap();
            let finished = fx
                .alice
                .handle_account_info(names[i], &done.response)
                .unwrap();
            assert_eq!(finished, i == 2);
        }
        assert!(fx.alice.pending().is_none());
        assert_eq!(fx.alice.sent_certificates().len(), 1);

        // Bob counts the payment once.
        assert_eq!(fx.bob.receive_certificate(certificate.clone()), Ok(true));
        assert_eq!(fx.bob.receive_certificate(certificate.clone()), Ok(false));
        assert_eq!(fx.bob.balance(), Balance::new(130));
        assert_eq!(
            fx.alice.receive_certificate(certificate),
            Err(ClientError::Mismatch)
        );
    }

    #[test]
    fn replies_without_a_transfer_are_refused() {
        let mut fx = fixture();
        let order = TransferOrder::new(
            Transfer {
                sender: fx.alice.account(),
                recipient: fx.bob.account(),
                amount: Amount::new(1),
                sequence_number: SequenceNumber::ZERO,
                user_data: None,
            },
            &fx.alice.committee().id(),
            &KeyPair::from_seed([1; 32]),
        );
        let v = vote(&mut fx.shards[0], &order);
        assert_eq!(
            fx.alice.handle_vote(&v),
            Err(ClientError::NoTransferInProgress)
        );
        let info = AccountInfoResponse {
            account: fx.bob.account(),
            balance: Balance::ZERO,
            next_sequence_number: SequenceNumber::ZERO,
            pending: None,
            deposited: Balance::ZERO,
        };
        assert_eq!(
            fx.alice.handle_account_info(fx.shards[0].name(), &info),
            Err(ClientError::Mismatch)
        );
    }

    #[test]
    fn forged_certificates_are_refused() {
        let mut fx = fixture();
        let certificate = certify(&mut fx, 5);
        let mut short = certificate.clone();
        short.signatures.pop();
        assert_eq!(
            fx.bob.receive_certificate(short),
            Err(ClientError::InvalidCertificate)
        );
        let mut forged = certificate.clone();
        forged.value.transfer.amount = Amount::new(500);
        assert_eq!(
            fx.bob.receive_certificate(forged),
            Err(ClientError::InvalidCertificate)
        );
        assert_eq!(fx.bob.balance(), Balance::new(100));
    }

    #[test]
    fn batched_votes_certify_and_are_checked_as_strictly() {
        use fastpay_wire::MerkleProof;
        let mut fx = fixture_with(VoteScheme::Merkle);
        let certificate = certify(&mut fx, 5);
        assert!(
            certificate
                .signatures
                .iter()
                .all(|(_, s)| matches!(s, VoteSignature::Batched(_)))
        );
        assert_eq!(fx.bob.receive_certificate(certificate.clone()), Ok(true));

        let order = fx
            .bob
            .transfer(fx.alice.account(), Amount::new(1), None)
            .unwrap();
        let good = vote(&mut fx.shards[3], &order);
        let VoteSignature::Batched(proof) = good.signature else {
            panic!("a batched vote");
        };
        let with = |signature| SignedTransferOrder { signature, ..good };
        let invalid = VoteError::Signature(fastpay_wire::CryptoError::InvalidSignature);
        // A path one sibling longer, an index past the tree, a bad root signature, and a
        // per-vote signature from an authority that batches: each refused, by name.
        let longer = MerkleProof::new(proof.root_signature, 0, &[[9; 32]]).unwrap();
        let past = MerkleProof::new(proof.root_signature, 1, &[]).unwrap();
        let mut forged = proof;
        forged.root_signature.0[40] ^= 1;
        let single = SignedTransferOrder::new(
            order,
            &fx.alice.committee().id(),
            &KeyPair::from_seed([53; 32]),
        );
        for (bad, error) in [
            (with(VoteSignature::Batched(longer)), invalid),
            (
                with(VoteSignature::Batched(past)),
                VoteError::IndexOutOfRange { index: 1, depth: 0 },
            ),
            (with(VoteSignature::Batched(forged)), invalid),
            (
                single,
                VoteError::WrongScheme {
                    expected: VoteScheme::Merkle,
                    got: VoteScheme::Single,
                },
            ),
        ] {
            assert_eq!(
                fx.bob.handle_vote(&bad),
                Err(ClientError::InvalidVote(good.authority, error))
            );
        }
        assert_eq!(fx.bob.handle_vote(&good), Ok(None));
        // A certificate whose vote's path was tampered with is refused.
        let mut tampered = certificate;
        if let VoteSignature::Batched(p) = &mut tampered.signatures[0].1 {
            *p = MerkleProof::new(p.root_signature, p.index(), &[[1; 32]]).unwrap();
        }
        let mut carol = ClientState::new(
            KeyPair::from_seed([2; 32]),
            fx.alice.committee().clone(),
            Balance::new(0),
        );
        assert_eq!(
            carol.receive_certificate(tampered),
            Err(ClientError::InvalidCertificate)
        );
    }

    #[test]
    fn votes_and_certificates_of_another_committee_are_refused() {
        let mut fx = fixture();
        let certificate = certify(&mut fx, 5);
        // The same four authorities, the last with weight two: a committee of its own.
        let committee = fx.alice.committee();
        let members: Vec<CommitteeMember> = committee
            .members()
            .iter()
            .enumerate()
            .map(|(i, m)| CommitteeMember {
                weight: if i == 3 { 2 } else { 1 },
                ..m.clone()
            })
            .collect();
        let other = Arc::new(Committee::new(members).unwrap());
        assert_ne!(other.id(), committee.id());
        let mut bob = ClientState::new(KeyPair::from_seed([2; 32]), other, Balance::new(100));

        // A certificate of the fixture's committee, whose signers weigh a quorum in the other.
        assert_eq!(
            bob.receive_certificate(certificate),
            Err(ClientError::InvalidCertificate)
        );
        // A vote for the very transfer Bob ordered, cast in the fixture's committee.
        let order = bob
            .transfer(fx.alice.account(), Amount::new(1), None)
            .unwrap();
        let elsewhere = SignedTransferOrder::new(
            TransferOrder::new(
                order.transfer,
                &committee.id(),
                &KeyPair::from_seed([2; 32]),
            ),
            &committee.id(),
            &KeyPair::from_seed([50; 32]),
        );
        assert_eq!(elsewhere.value.transfer, order.transfer);
        assert_eq!(
            bob.handle_vote(&elsewhere),
            Err(ClientError::InvalidVote(
                elsewhere.authority,
                VoteError::Signature(fastpay_wire::CryptoError::InvalidSignature)
            ))
        );
        // And the fixture's authorities refuse Bob's order, signed for the other committee.
        assert_eq!(
            fx.shards[0].handle_transfer_order(&order),
            Err(fastpay_authority::AuthorityError::InvalidSignature)
        );
    }

    #[test]
    fn lagging_authorities_get_what_they_miss() {
        let mut fx = fixture();
        let name = fx.shards[3].name();
        // Alice pays twice with authorities 0..3; authority 3 sees nothing.
        for amount in [10, 20] {
            certify(&mut fx, amount);
            let confirmation = fx.alice.confirmation().unwrap();
            for i in 0..3 {
                let done = fx.shards[i]
                    .handle_confirmation_order(&confirmation)
                    .unwrap();
                let n = fx.shards[i].name();
                fx.alice.handle_account_info(n, &done.response).unwrap();
            }
        }
        let order = fx
            .alice
            .transfer(fx.bob.account(), Amount::new(1), None)
            .unwrap();
        let refusal = fx.shards[3].handle_message(&Message::TransferOrder(order));
        let Some(Message::Error(error)) = refusal.reply else {
            panic!("expected a refusal, got {refusal:?}");
        };
        assert_eq!(error.code, ErrorCode::MissingEarlierConfirmations);
        let catch_up = fx.alice.catch_up(&name, &error);
        assert_eq!(catch_up.len(), 2);
        assert!(catch_up.len() <= CATCH_UP_LIMIT);
        for message in &catch_up {
            assert!(fx.shards[3].handle_message(message).error.is_none());
        }
        assert!(fx.shards[3].handle_transfer_order(&order).is_ok());
    }

    #[test]
    fn one_refusal_makes_the_client_send_a_few_messages_not_its_history() {
        let mut fx = fixture();
        let name = fx.shards[3].name();
        // Alice pays ten times with authorities 0..3, and receives ten payments from Bob.
        for amount in 1..=10 {
            certify(&mut fx, amount);
            let confirmation = fx.alice.confirmation().unwrap();
            for i in 0..3 {
                let done = fx.shards[i]
                    .handle_confirmation_order(&confirmation)
                    .unwrap();
                let n = fx.shards[i].name();
                fx.alice.handle_account_info(n, &done.response).unwrap();
            }
        }
        let mut received = 0;
        for sequence in 0..10u64 {
            let order = TransferOrder::new(
                Transfer {
                    sender: fx.bob.account(),
                    recipient: fx.alice.account(),
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::new(sequence),
                    user_data: None,
                },
                &fx.bob.committee().id(),
                &KeyPair::from_seed([2; 32]),
            );
            let certificate = CertifiedTransferOrder {
                value: order,
                signatures: (0..3)
                    .map(|i| {
                        let vote = fx.shards[i].handle_transfer_order(&order).unwrap();
                        (vote.authority, vote.signature)
                    })
                    .collect(),
            };
            for i in 0..3 {
                fx.shards[i]
                    .handle_confirmation_order(&ConfirmationOrder {
                        certificate: certificate.clone(),
                    })
                    .unwrap();
            }
            if fx.alice.receive_certificate(certificate).is_ok() {
                received += 1;
            }
        }
        assert_eq!(received, 10);
        // Forged refusals (anyone can send them in an authority's name) about Alice.
        let alice = fx.alice.account();
        let forged = |code| ErrorReply {
            code,
            account: alice,
            sequence_number: SequenceNumber::ZERO,
        };
        let missing = fx
            .alice
            .catch_up(&name, &forged(ErrorCode::MissingEarlierConfirmations));
        assert_eq!(
            missing.len(),
            CATCH_UP_LIMIT,
            "one refusal, the whole history"
        );
        // Refusals for want of funds bring the received certificates a few at a time, and
        // the next ones each time, so a real lagging authority still gets them all.
        let mut sent = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let batch = fx
                .alice
                .catch_up(&name, &forged(ErrorCode::InsufficientFunds));
            assert!(batch.len() <= CATCH_UP_LIMIT);
            for message in batch {
                // Bob's payments go to Bob's shard, never to Alice's (who sends them).
                assert_eq!(route(&message), Some(Route::Account(fx.bob.account())));
                let Message::ConfirmationOrder(c) = message else {
                    panic!("{message:?}");
                };
                sent.insert(c.certificate.value.transfer.sequence_number);
            }
        }
        assert_eq!(sent.len(), 10);
    }

    #[test]
    fn an_interrupted_transfer_resumes_from_its_certificate() {
        let mut fx = fixture();
        let certificate = certify(&mut fx, 25);
        // A fresh state (the wallet reloaded after a crash) adopts the certificate once.
        let mut again = ClientState::new(
            KeyPair::from_seed([1; 32]),
            fx.shards[0].committee().clone(),
            Balance::new(100),
        );
        let mut forged = certificate.clone();
        forged.signatures.truncate(2);
        assert_eq!(
            again.adopt_certificate(forged),
            Err(ClientError::InvalidCertificate)
        );
        again.adopt_certificate(certificate.clone()).unwrap();
        assert_eq!(again.balance(), Balance::new(75));
        assert!(again.confirmation().is_some());
        assert_eq!(
            again.adopt_certificate(certificate),
            Err(ClientError::Mismatch)
        );
    }

    #[test]
    fn snapshots_survive_json_and_restore() {
        let mut fx = fixture();
        let order = fx
            .alice
            .transfer(fx.bob.account(), Amount::new(5), None)
            .unwrap();
        let v = vote(&mut fx.shards[0], &order);
        fx.alice.handle_vote(&v).unwrap();
        let snapshot = fx.alice.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        assert!(json.contains(&fx.alice.account().to_string()));
        let back: ClientSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        let committee = fx.shards[0].committee().clone();
        let restored = ClientState::restore(
            Some(KeyPair::from_seed([1; 32])),
            committee.clone(),
            back.clone(),
        )
        .unwrap();
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(
            ClientState::restore(Some(KeyPair::from_seed([2; 32])), committee, back).unwrap_err(),
            ClientError::Mismatch
        );
    }

    #[test]
    fn certificates_from_the_committee_are_learned_in_order_and_once() {
        let mut fx = fixture();
        let first = certify(&mut fx, 10);
        let confirmation = fx.alice.confirmation().unwrap();
        for i in 0..3 {
            let done = fx.shards[i]
                .handle_confirmation_order(&confirmation)
                .unwrap();
            let n = fx.shards[i].name();
            fx.alice.handle_account_info(n, &done.response).unwrap();
        }
        let second = certify(&mut fx, 20);
        let committee = fx.shards[0].committee().clone();

        // Alice's wallet lost both: a fresh state learns them in order only.
        let mut again = ClientState::new(
            KeyPair::from_seed([1; 32]),
            committee.clone(),
            Balance::new(100),
        );
        assert_eq!(
            again.learn_certificate(second.clone()),
            Err(ClientError::OutOfOrder)
        );
        assert_eq!(again.learn_certificate(first.clone()), Ok(Learned::Sent));
        assert_eq!(again.learn_certificate(first.clone()), Ok(Learned::Known));
        assert!(again.confirmation().is_some(), "learned, then confirmed");
        again.pending = None;
        assert_eq!(again.learn_certificate(second.clone()), Ok(Learned::Sent));
        assert_eq!(again.balance(), Balance::new(70));

        // Bob, watched without his key, counts each payment once and cannot pay.
        let bob = fx.bob.account();
        let mut watched = ClientState::watch(bob, committee.clone(), Balance::ZERO);
        assert_eq!(
            watched.learn_certificate(first.clone()),
            Ok(Learned::Received)
        );
        assert_eq!(watched.learn_certificate(first.clone()), Ok(Learned::Known));
        assert!(watched.has_received(&first));
        assert_eq!(watched.balance(), Balance::new(10));
        assert_eq!(
            watched.transfer(fx.alice.account(), Amount::new(1), None),
            Err(ClientError::WatchOnly)
        );
        let mut forged = second;
        forged.value.transfer.amount = Amount::new(90);
        assert_eq!(
            watched.learn_certificate(forged),
            Err(ClientError::InvalidCertificate)
        );
        // Cursors and watch-only survive the wallet file.
        watched.set_received_cursor(fx.shards[0].name(), 3);
        let restored = ClientState::restore(None, committee, watched.snapshot()).unwrap();
        assert!(restored.is_watch_only());
        assert_eq!(restored.received_cursor(&fx.shards[0].name()), 3);
        assert_eq!(restored.balance(), Balance::new(10));
    }
}
