//! One shard of one authority.

use crate::accounts::{AccountState, Accounts};
use crate::error::{AuthorityError, DepositError};
use crate::genesis::Genesis;
use fastpay_wire::codec::{CodecError, StoredParts};
use fastpay_wire::merkle::{Digest, leaf_hash};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountInfoResponse, AuthorityName, Balance, BatchVerifier,
    CertifiedTransferOrder, Committee, ConfirmationOrder, CrossShardUpdate, DepositBatch,
    DepositCursor, KeyPair, MerkleProof, PRIMARY_EXIT, PublicKey, ShardId, ShardSupply, Signature,
    SignedTransferOrder, TransferOrder, TreeBuilder, VoteScheme, exit_address, shard_of,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use thiserror::Error;

/// Why a shard could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardSetupError {
    /// The key is not a committee member's.
    #[error("authority {0} is not in the committee")]
    NotInCommittee(AuthorityName),
    /// The shard index is not below the authority's shard count.
    #[error("shard {shard} is out of range: the authority has {num_shards} shards")]
    ShardOutOfRange {
        /// The requested shard.
        shard: ShardId,
        /// How many the authority has.
        num_shards: u32,
    },
}

/// Verifies every queued signature; the one-step handlers' last check before committing.
fn all_verified(verifier: &mut BatchVerifier) -> Result<(), AuthorityError> {
    if verifier.verify().iter().all(|ok| *ok) {
        Ok(())
    } else {
        Err(AuthorityError::InvalidSignature)
    }
}

/// What a transfer order needs before a vote.
// Returned by value and consumed at once; boxing the large variant would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCheck {
    /// This exact order already has our vote: send it again, no cryptography needed.
    Replay(SignedTransferOrder),
    /// The owner's signature, queued in the verifier at this index, must verify first.
    Verify(usize),
}

/// A vote given by [`AuthorityShard::vote_verified`].
// Returned by value and consumed at once; boxing the large variant would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voted {
    /// Signed on its own (the per-vote scheme, or a vote given before).
    Signed(SignedTransferOrder),
    /// Leaf `n` of the batch that [`AuthorityShard::seal_votes`] signs next: the vote exists
    /// (the account's order is taken) but is not signed yet.
    Unsealed(usize),
}

/// What a confirmation order needs before it is applied.
// Returned by value and consumed at once; boxing the large variant would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmationCheck {
    /// The transfer was already applied here: acknowledge, no cryptography needed.
    AlreadyApplied(AccountInfoResponse),
    /// The signatures queued in the verifier at these indexes must all verify first.
    Verify(Range<usize>),
}

/// A shard's whole state, for a snapshot on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    /// Every account, sorted.
    pub accounts: Vec<(AccountId, AccountState)>,
    /// How far the shard has followed the primary chain's deposits.
    pub deposits: DepositCursor,
    /// Units this shard has credited from deposits, in all.
    pub deposited: u128,
    /// Units debited for recipients of other shards, in all.
    pub sent: u128,
    /// Units credited for senders of other shards, in all.
    pub received: u128,
}

impl ShardSnapshot {
    /// Puts accounts in their canonical (sorted) order.
    pub fn sort(&mut self) {
        self.accounts.sort_unstable_by_key(|(id, _)| *id);
    }
}

/// What a snapshot's cut fixes besides the accounts: the shard's running totals, which
/// serialize as [`ShardSnapshot`]'s fields after its accounts do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardTotals {
    /// How far the shard has followed the primary chain's deposits.
    pub deposits: DepositCursor,
    /// Units this shard has credited from deposits, in all.
    pub deposited: u128,
    /// Units debited for recipients of other shards, in all.
    pub sent: u128,
    /// Units credited for senders of other shards, in all.
    pub received: u128,
}

/// The effects of applying a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// Whether this call applied the debit (false when it had been applied before).
    pub applied: bool,
    /// The acknowledgement for the client: the sender's state after the debit.
    pub response: AccountInfoResponse,
    /// The credit to send to the recipient's shard, when that is another shard.
    pub cross_shard: Option<CrossShardUpdate>,
}

/// One shard of an authority: the accounts it owns, its votes and its credits.
///
/// Every handler checks on copies and commits last, so an error leaves the state unchanged.
/// Handlers come in two steps so that the runtime can verify signatures of a whole batch at
/// once: `check_*` does the cheap checks and queues signatures in a [`BatchVerifier`], then
/// `*_verified` re-checks (the state may have moved within the batch) and commits. The
/// one-step `handle_*` methods do both with the signatures of one message.
#[derive(Debug)]
pub struct AuthorityShard {
    key: KeyPair,
    name: AuthorityName,
    committee: Arc<Committee>,
    shard: ShardId,
    num_shards: u32,
    accounts: Accounts,
    /// Validated, decompressed keys: of every genesis account, and of accounts created since
    /// once they order (decompression costs a square root, so it is paid once per account).
    keys: HashMap<AccountId, PublicKey>,
    /// How this authority signs its votes.
    votes: VoteScheme,
    /// Orders voted for since the last [`seal_votes`](Self::seal_votes), in leaf order.
    unsealed: Vec<TransferOrder>,
    /// The votes the last `seal_votes` signed.
    sealed: Vec<SignedTransferOrder>,
    tree: TreeBuilder,
    leaves: Vec<Digest>,
    /// How far the shard has followed the primary chain's deposits.
    deposits: DepositCursor,
    /// Units credited from deposits, in all (for the supply audit).
    deposited: u128,
    /// Units the genesis accounts this shard owns started with.
    genesis: u128,
    /// Units debited here for recipients of other shards, in all.
    sent: u128,
    /// Units credited here for senders of other shards, in all.
    received: u128,
}

/// What an account's pending vote holds between [`AuthorityShard::vote_verified`] and
/// [`AuthorityShard::seal_votes`]: never sent, never logged (sealing replaces it first).
fn unsealed_placeholder() -> fastpay_wire::VoteSignature {
    // An empty path always verifies to the leaf itself; the zero signature never does.
    MerkleProof::new(Signature([0; 64]), 0, &[])
        .map(fastpay_wire::VoteSignature::Batched)
        .unwrap_or(fastpay_wire::VoteSignature::Single(Signature([0; 64])))
}

impl AuthorityShard {
    /// Shard `shard` of the authority holding `key`, with the accounts of `genesis` it owns.
    pub fn new(
        key: KeyPair,
        committee: Arc<Committee>,
        shard: ShardId,
        genesis: &Genesis,
    ) -> Result<Self, ShardSetupError> {
        let name = key.authority();
        let num_shards = committee
            .member(&name)
            .ok_or(ShardSetupError::NotInCommittee(name))?
            .num_shards;
        if shard.0 >= num_shards {
            return Err(ShardSetupError::ShardOutOfRange { shard, num_shards });
        }
        let owned = || {
            genesis
                .accounts()
                .iter()
                .filter(|(account, _)| shard_of(account, num_shards) == shard)
        };
        let accounts = owned()
            .map(|(account, amount)| {
                let state = AccountState {
                    balance: Balance::from(*amount),
                    ..AccountState::default()
                };
                (*account, state)
            })
            .collect();
        // Decompress and validate every genesis key now (a few microseconds each) rather than
        // on the account's first order; a malformed key is refused when it orders.
        let keys = owned()
            .filter_map(|(account, _)| Some((*account, PublicKey::of_account(account).ok()?)))
            .collect();
        let votes = committee.vote_scheme(&name);
        let genesis_units = owned().map(|(_, amount)| u128::from(amount.units())).sum();
        Ok(Self {
            key,
            name,
            committee,
            shard,
            num_shards,
            accounts: Accounts::new(accounts),
            keys,
            votes,
            unsealed: Vec::new(),
            sealed: Vec::new(),
            tree: TreeBuilder::new(),
            leaves: Vec::new(),
            deposits: DepositCursor::default(),
            deposited: 0,
            genesis: genesis_units,
            sent: 0,
            received: 0,
        })
    }

    /// The authority this shard belongs to.
    pub fn name(&self) -> AuthorityName {
        self.name
    }

    /// This shard's index.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The committee.
    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    /// The shard of this authority that owns `account`.
    pub fn shard_of(&self, account: &AccountId) -> ShardId {
        shard_of(account, self.num_shards)
    }

    /// The accounts this shard holds.
    pub fn accounts(&self) -> &HashMap<AccountId, AccountState> {
        self.accounts.map()
    }

    /// This shard's money for the supply audit, counted now: its balances summed account by
    /// account (one pass over the accounts), beside the running totals that should explain
    /// them. An overflowing sum (impossible with `u64` amounts short of 2^64 accounts) shows
    /// as the largest balance.
    pub fn supply(&self) -> ShardSupply {
        ShardSupply {
            authority: self.name,
            shard: self.shard,
            genesis: self.genesis,
            deposited: self.deposited,
            held: self.total_balance().unwrap_or(Balance::new(i128::MAX)),
            sent: self.sent,
            received: self.received,
        }
    }

    /// The sum of this shard's balances.
    pub fn total_balance(&self) -> Result<Balance, AuthorityError> {
        self.accounts
            .map()
            .values()
            .try_fold(Balance::ZERO, |sum, account| {
                sum.try_add_balance(account.balance)
            })
            .map_err(AuthorityError::from)
    }

    fn check_owned(&self, account: &AccountId) -> Result<(), AuthorityError> {
        let owner = self.shard_of(account);
        if owner != self.shard {
            return Err(AuthorityError::WrongShard {
                owner,
                this: self.shard,
            });
        }
        Ok(())
    }

    /// The decompressed key of `account`. Cached only for accounts this shard holds, which
    /// exist only through verified certificates: a key decoded for an unauthenticated request
    /// (a forged confirmation naming a fresh sender) is used once and forgotten, so a flood of
    /// them leaves no state behind.
    fn account_key(&mut self, account: &AccountId) -> Result<PublicKey, AuthorityError> {
        if let Some(key) = self.keys.get(account) {
            return Ok(*key);
        }
        let key = PublicKey::of_account(account).map_err(AuthorityError::InvalidKey)?;
        if self.accounts.contains_key(account) {
            self.keys.insert(*account, key);
        }
        Ok(key)
    }

    fn info(&self, account: &AccountId, state: &AccountState) -> AccountInfoResponse {
        AccountInfoResponse {
            account: *account,
            balance: state.balance,
            next_sequence_number: state.next_sequence_number,
            pending: state.pending,
            deposited: state.deposited,
        }
    }

    // ---- transfer orders -------------------------------------------------------------------

    /// The checks that need no state change or cryptography; `Ok(Some(vote))` for a replay.
    fn order_precheck(
        &self,
        order: &TransferOrder,
    ) -> Result<Option<SignedTransferOrder>, AuthorityError> {
        let transfer = &order.transfer;
        self.check_owned(&transfer.sender)?;
        if transfer.amount.units() == 0 {
            return Err(AuthorityError::ZeroAmount);
        }
        // Money leaving for the primary chain must name where it goes, or it is lost.
        if transfer.recipient == PRIMARY_EXIT
            && exit_address(&transfer.recipient, transfer.user_data.as_ref()).is_none()
        {
            return Err(AuthorityError::NotAnExit);
        }
        let account = self
            .accounts
            .get(&transfer.sender)
            .ok_or(AuthorityError::UnknownAccount(transfer.sender))?;
        let expected = account.next_sequence_number;
        let got = transfer.sequence_number;
        if got < expected {
            return Err(AuthorityError::StaleSequenceNumber { expected, got });
        }
        if got > expected {
            return Err(AuthorityError::MissingEarlierConfirmations { expected, got });
        }
        if let Some(vote) = &account.pending {
            if vote.value.transfer == *transfer {
                return Ok(Some(*vote));
            }
            return Err(AuthorityError::ConflictingOrder(got));
        }
        if !account.balance.covers(transfer.amount) {
            return Err(AuthorityError::InsufficientFunds {
                balance: account.balance,
                amount: transfer.amount,
            });
        }
        Ok(None)
    }

    /// Cheap checks on a transfer order; queues the owner's signature in `verifier` unless the
    /// order is a replay of one already voted for.
    pub fn check_transfer_order(
        &mut self,
        order: &TransferOrder,
        verifier: &mut BatchVerifier,
    ) -> Result<OrderCheck, AuthorityError> {
        if let Some(vote) = self.order_precheck(order)? {
            // A vote not yet sealed goes through `vote_verified`, which knows its leaf.
            if !self.is_unsealed(order) {
                return Ok(OrderCheck::Replay(vote));
            }
        }
        let key = self.account_key(&order.transfer.sender)?;
        Ok(OrderCheck::Verify(verifier.push(
            &key,
            order.signed_bytes(&self.committee.id()),
            order.signature,
        )))
    }

    /// The leaf of `order` in the batch waiting for [`seal_votes`](Self::seal_votes).
    fn unsealed_leaf(&self, order: &TransferOrder) -> Option<usize> {
        // At most a few batches' worth of votes wait: a scan beats hashing.
        self.unsealed
            .iter()
            .position(|o| o.transfer == order.transfer)
    }

    fn is_unsealed(&self, order: &TransferOrder) -> bool {
        self.unsealed_leaf(order).is_some()
    }

    /// How this authority signs its votes.
    pub fn vote_scheme(&self) -> VoteScheme {
        self.votes
    }

    /// Votes for `order`, whose owner signature the caller has verified after
    /// [`check_transfer_order`](Self::check_transfer_order). Re-runs the cheap checks, so two
    /// conflicting orders in one batch get one vote between them. With batched votes the
    /// order is taken now and signed by the next [`seal_votes`](Self::seal_votes).
    pub fn vote_verified(&mut self, order: &TransferOrder) -> Result<Voted, AuthorityError> {
        if let Some(vote) = self.order_precheck(order)? {
            return Ok(match self.unsealed_leaf(order) {
                Some(leaf) => Voted::Unsealed(leaf),
                None => Voted::Signed(vote),
            });
        }
        let (vote, voted) = match self.votes {
            VoteScheme::Single => {
                let vote = SignedTransferOrder::new(*order, &self.committee.id(), &self.key);
                (vote, Voted::Signed(vote))
            }
            VoteScheme::Merkle => {
                let vote = SignedTransferOrder {
                    value: *order,
                    authority: self.name,
                    signature: unsealed_placeholder(),
                };
                self.unsealed.push(*order);
                (vote, Voted::Unsealed(self.unsealed.len() - 1))
            }
        };
        let account = self
            .accounts
            .get_mut(&order.transfer.sender)
            .ok_or(AuthorityError::UnknownAccount(order.transfer.sender))?;
        account.pending = Some(vote);
        Ok(voted)
    }

    /// Signs the votes given since the last call, one root per [`MAX_LEAVES`] of them, and
    /// makes each the pending vote of its account (unless a confirmation in the same batch
    /// moved the account on). Returns the signed votes in the leaf order that
    /// [`Voted::Unsealed`] numbers; empty with per-vote signatures.
    ///
    /// [`MAX_LEAVES`]: fastpay_wire::merkle::MAX_LEAVES
    pub fn seal_votes(&mut self) -> &[SignedTransferOrder] {
        self.sealed.clear();
        let committee = self.committee.id();
        for chunk in self.unsealed.chunks(fastpay_wire::merkle::MAX_LEAVES) {
            self.leaves.clear();
            self.leaves
                .extend(chunk.iter().map(|o| leaf_hash(&o.vote_bytes(&committee))));
            let Some(root_signature) = self.tree.sign(&self.leaves, &committee, &self.key) else {
                continue;
            };
            for (leaf, order) in chunk.iter().enumerate() {
                let Some(proof) = self.tree.proof(leaf, root_signature) else {
                    continue;
                };
                let vote = SignedTransferOrder::batched(*order, self.name, proof);
                if let Some(account) = self.accounts.get_mut(&order.transfer.sender)
                    && account.pending.is_some_and(|p| p.value == *order)
                {
                    account.pending = Some(vote);
                }
                self.sealed.push(vote);
            }
        }
        self.unsealed.clear();
        &self.sealed
    }

    /// Checks `order` and votes for it: the whole handler for one message.
    pub fn handle_transfer_order(
        &mut self,
        order: &TransferOrder,
    ) -> Result<SignedTransferOrder, AuthorityError> {
        let mut verifier = BatchVerifier::new();
        match self.check_transfer_order(order, &mut verifier)? {
            OrderCheck::Replay(vote) => Ok(vote),
            OrderCheck::Verify(_) => {
                all_verified(&mut verifier)?;
                match self.vote_verified(order)? {
                    Voted::Signed(vote) => Ok(vote),
                    Voted::Unsealed(leaf) => self
                        .seal_votes()
                        .get(leaf)
                        .copied()
                        .ok_or(AuthorityError::InvalidSignature),
                }
            }
        }
    }

    // ---- confirmation orders ---------------------------------------------------------------

    /// The cheap part of checking a confirmation: `Ok(Some(ack))` when it was applied before.
    fn confirmation_precheck(
        &self,
        certificate: &CertifiedTransferOrder,
    ) -> Result<Option<AccountInfoResponse>, AuthorityError> {
        let transfer = &certificate.value.transfer;
        self.check_owned(&transfer.sender)?;
        let default = AccountState::default();
        let account = self.accounts.get(&transfer.sender).unwrap_or(&default);
        let expected = account.next_sequence_number;
        let got = transfer.sequence_number;
        if got < expected {
            return Ok(Some(self.info(&transfer.sender, account)));
        }
        if got > expected {
            return Err(AuthorityError::MissingEarlierConfirmations { expected, got });
        }
        if transfer.amount.units() == 0 {
            return Err(AuthorityError::ZeroAmount);
        }
        self.committee
            .check_signers(certificate)
            .map_err(AuthorityError::InvalidCertificate)?;
        Ok(None)
    }

    /// Queues the certificate's signatures, skipping this authority's own vote and the owner
    /// signature when both match what this shard already verified and signed.
    fn queue_certificate(
        &mut self,
        certificate: &CertifiedTransferOrder,
        verifier: &mut BatchVerifier,
    ) -> Result<Range<usize>, AuthorityError> {
        let order = &certificate.value;
        let ours = self
            .accounts
            .get(&order.transfer.sender)
            .and_then(|account| account.pending)
            // An unsealed vote holds a placeholder, which no certificate may match.
            .filter(|vote| vote.value == *order && !self.is_unsealed(order));
        let start = verifier.len();
        if ours.is_none() {
            let key = self.account_key(&order.transfer.sender)?;
            verifier.push(
                &key,
                order.signed_bytes(&self.committee.id()),
                order.signature,
            );
        }
        let vote_bytes = order.vote_bytes(&self.committee.id());
        for (authority, signature) in &certificate.signatures {
            if let Some(vote) = &ours
                && vote.authority == *authority
                && vote.signature == *signature
            {
                continue;
            }
            // `check_signers` ran first, so every signer is a member.
            self.committee
                .queue_vote(verifier, authority, vote_bytes, signature)
                .map_err(|_| AuthorityError::InvalidSignature)?;
        }
        Ok(start..verifier.len())
    }

    /// Cheap checks on a confirmation; queues the signatures that still need verifying.
    pub fn check_confirmation_order(
        &mut self,
        order: &ConfirmationOrder,
        verifier: &mut BatchVerifier,
    ) -> Result<ConfirmationCheck, AuthorityError> {
        if let Some(ack) = self.confirmation_precheck(&order.certificate)? {
            return Ok(ConfirmationCheck::AlreadyApplied(ack));
        }
        Ok(ConfirmationCheck::Verify(
            self.queue_certificate(&order.certificate, verifier)?,
        ))
    }

    /// Applies a confirmation whose signatures the caller has verified after
    /// [`check_confirmation_order`](Self::check_confirmation_order): debits the sender once,
    /// and credits the recipient here or returns the credit for its shard.
    pub fn confirm_verified(
        &mut self,
        order: &ConfirmationOrder,
    ) -> Result<Confirmed, AuthorityError> {
        let certificate = &order.certificate;
        if let Some(response) = self.confirmation_precheck(certificate)? {
            return Ok(Confirmed {
                applied: false,
                response,
                cross_shard: None,
            });
        }
        let transfer = certificate.value.transfer;
        let mut sender = self
            .accounts
            .get(&transfer.sender)
            .cloned()
            .unwrap_or_default();
        sender.balance = sender.balance.try_sub(transfer.amount)?;
        sender.next_sequence_number = transfer.sequence_number.try_next()?;
        sender.pending = None;

        let recipient_shard = self.shard_of(&transfer.recipient);
        let mut cross_shard = None;
        let mut local_credit = None;
        if recipient_shard != self.shard {
            cross_shard = Some(CrossShardUpdate {
                recipient_shard,
                certificate: certificate.clone(),
            });
        } else if transfer.recipient == transfer.sender {
            sender.balance = sender.balance.try_add(transfer.amount)?;
        } else {
            let mut recipient = self
                .accounts
                .get(&transfer.recipient)
                .cloned()
                .unwrap_or_default();
            recipient.balance = recipient.balance.try_add(transfer.amount)?;
            local_credit = Some(recipient);
        }

        // Every check passed: commit.
        let response = self.info(&transfer.sender, &sender);
        self.accounts.insert(transfer.sender, sender);
        if cross_shard.is_some() {
            self.sent = self
                .sent
                .saturating_add(u128::from(transfer.amount.units()));
        }
        if let Some(recipient) = local_credit {
            self.accounts.insert(transfer.recipient, recipient);
        }
        Ok(Confirmed {
            applied: true,
            response,
            cross_shard,
        })
    }

    /// Checks and applies one confirmation: the whole handler for one message.
    pub fn handle_confirmation_order(
        &mut self,
        order: &ConfirmationOrder,
    ) -> Result<Confirmed, AuthorityError> {
        let mut verifier = BatchVerifier::new();
        match self.check_confirmation_order(order, &mut verifier)? {
            ConfirmationCheck::AlreadyApplied(response) => Ok(Confirmed {
                applied: false,
                response,
                cross_shard: None,
            }),
            ConfirmationCheck::Verify(_) => {
                all_verified(&mut verifier)?;
                self.confirm_verified(order)
            }
        }
    }

    // ---- cross-shard credits ---------------------------------------------------------------

    /// The cheap checks on a credit.
    fn credit_precheck(&self, update: &CrossShardUpdate) -> Result<(), AuthorityError> {
        let transfer = &update.certificate.value.transfer;
        if update.recipient_shard != self.shard {
            return Err(AuthorityError::WrongShard {
                owner: update.recipient_shard,
                this: self.shard,
            });
        }
        self.check_owned(&transfer.recipient)?;
        if self.shard_of(&transfer.sender) == self.shard {
            return Err(AuthorityError::NotCrossShard);
        }
        if transfer.amount.units() == 0 {
            return Err(AuthorityError::ZeroAmount);
        }
        Ok(())
    }

    /// Cheap checks on a credit from another process; queues the certificate's signatures so
    /// that the credit proves itself.
    pub fn check_cross_shard_update(
        &mut self,
        update: &CrossShardUpdate,
        verifier: &mut BatchVerifier,
    ) -> Result<Range<usize>, AuthorityError> {
        self.credit_precheck(update)?;
        self.committee
            .check_signers(&update.certificate)
            .map_err(AuthorityError::InvalidCertificate)?;
        let start = verifier.len();
        let vote_bytes = update.certificate.value.vote_bytes(&self.committee.id());
        for (authority, signature) in &update.certificate.signatures {
            self.committee
                .queue_vote(verifier, authority, vote_bytes, signature)
                .map_err(|_| AuthorityError::InvalidSignature)?;
        }
        Ok(start..verifier.len())
    }

    /// Credits the recipient of a certificate that was verified (by
    /// [`check_cross_shard_update`](Self::check_cross_shard_update)) or that came from a shard
    /// of this same process. Every call credits: taking each credit exactly once is the job of
    /// the ordered, numbered links between shards (`fastpay_node::links`), the one place that
    /// de-duplicates credits.
    pub fn apply_cross_shard_update(
        &mut self,
        update: &CrossShardUpdate,
    ) -> Result<(), AuthorityError> {
        self.credit_precheck(update)?;
        let transfer = update.certificate.value.transfer;
        let mut recipient = self
            .accounts
            .get(&transfer.recipient)
            .cloned()
            .unwrap_or_default();
        recipient.balance = recipient.balance.try_add(transfer.amount)?;
        self.accounts.insert(transfer.recipient, recipient);
        self.received = self
            .received
            .saturating_add(u128::from(transfer.amount.units()));
        Ok(())
    }

    /// Verifies and applies a credit from an untrusted source, the whole handler, with the
    /// caller's verifier (cleared first), whose memory of verified vote roots then serves
    /// every credit.
    pub fn handle_cross_shard_update_with(
        &mut self,
        update: &CrossShardUpdate,
        verifier: &mut BatchVerifier,
    ) -> Result<(), AuthorityError> {
        verifier.clear();
        self.check_cross_shard_update(update, verifier)?;
        all_verified(verifier)?;
        self.apply_cross_shard_update(update)
    }

    // ---- redeems on the primary chain ---------------------------------------------------

    /// Checks a certificate whose transfer leaves FastPay for the primary chain, for this
    /// authority's approval of its redeem: the transfer pays [`PRIMARY_EXIT`] with an
    /// Ethereum address, its signers are a quorum and every vote verifies (with `verifier`,
    /// cleared first). A valid certificate is final, applied here or not yet. Returns the
    /// address paid.
    pub fn verify_redeem(
        &self,
        certificate: &CertifiedTransferOrder,
        verifier: &mut BatchVerifier,
    ) -> Result<[u8; 20], AuthorityError> {
        let transfer = &certificate.value.transfer;
        let address = exit_address(&transfer.recipient, transfer.user_data.as_ref())
            .ok_or(AuthorityError::NotAnExit)?;
        self.check_owned(&transfer.sender)?;
        self.committee
            .check_signers(certificate)
            .map_err(AuthorityError::InvalidCertificate)?;
        verifier.clear();
        let vote_bytes = certificate.value.vote_bytes(&self.committee.id());
        for (authority, signature) in &certificate.signatures {
            self.committee
                .queue_vote(verifier, authority, vote_bytes, signature)
                .map_err(|_| AuthorityError::InvalidSignature)?;
        }
        all_verified(verifier)?;
        Ok(address)
    }

    // ---- deposits from the primary chain ---------------------------------------------------

    /// How far this shard has followed the primary chain's deposits.
    pub fn deposit_cursor(&self) -> DepositCursor {
        self.deposits
    }

    /// Units this shard has credited from deposits, in all.
    pub fn deposited(&self) -> u128 {
        self.deposited
    }

    /// Credits a batch of deposits, which must continue exactly from this shard's cursor:
    /// that rule, with the cursor stored in the same state, credits each deposit index once.
    /// A deposit to an account this shard has not seen opens it. Returns the units credited.
    /// Checks everything before changing anything: a refused batch leaves the state as it was.
    pub fn credit_deposits(&mut self, batch: &DepositBatch) -> Result<u128, DepositError> {
        let (from, to) = (batch.from, batch.to);
        if from != self.deposits {
            return Err(DepositError::OutOfOrder {
                expected: self.deposits,
                got: from,
            });
        }
        if to.next_index < from.next_index || to.scan_from < from.scan_from {
            return Err(DepositError::Backwards { from, to });
        }
        let mut next = from.next_index;
        let mut total: u128 = 0;
        for credit in &batch.credits {
            if credit.index < next || credit.index >= to.next_index {
                return Err(DepositError::BadIndex(credit.index));
            }
            let owner = self.shard_of(&credit.account);
            if owner != self.shard {
                return Err(DepositError::WrongShard {
                    index: credit.index,
                    owner,
                });
            }
            next = credit.index + 1;
            total = total.saturating_add(u128::from(credit.amount.units()));
        }
        let deposited = self
            .deposited
            .checked_add(total)
            .ok_or(DepositError::Overflow(from.next_index))?;
        // Balances are checked on copies first: a batch crediting one account twice adds up.
        let mut credited: HashMap<AccountId, (Balance, Balance)> = HashMap::new();
        for credit in &batch.credits {
            let (balance, deposits) = match credited.get(&credit.account) {
                Some(both) => *both,
                None => self
                    .accounts
                    .get(&credit.account)
                    .map_or((Balance::ZERO, Balance::ZERO), |state| {
                        (state.balance, state.deposited)
                    }),
            };
            let overflow = |_| DepositError::Overflow(credit.index);
            let both = (
                balance.try_add(credit.amount).map_err(overflow)?,
                deposits.try_add(credit.amount).map_err(overflow)?,
            );
            credited.insert(credit.account, both);
        }
        for (account, (balance, deposits)) in credited {
            let state = self.accounts.get_or_default(account);
            state.balance = balance;
            state.deposited = deposits;
        }
        self.deposits = to;
        self.deposited = deposited;
        Ok(total)
    }

    // ---- persistence -----------------------------------------------------------------------

    /// The whole state, sorted so that equal states give equal snapshots.
    pub fn snapshot(&self) -> ShardSnapshot {
        let mut snapshot = ShardSnapshot {
            accounts: self
                .accounts
                .map()
                .iter()
                .map(|(id, state)| (*id, state.clone()))
                .collect(),
            deposits: self.deposits,
            deposited: self.deposited,
            sent: self.sent,
            received: self.received,
        };
        snapshot.sort();
        snapshot
    }

    /// Cuts a snapshot of the state as it stands, to encode a slice at a time with
    /// [`encode_cut`](Self::encode_cut) while the shard goes on: the first change to each
    /// account from now on keeps its state at the cut. Returns how many accounts the
    /// snapshot holds and the totals it holds after them. A cut still open is dropped.
    ///
    /// A [`ShardSnapshot`] encodes as that count, then [`encode_cut`](Self::encode_cut)'s
    /// pairs, then the totals.
    pub fn begin_cut(&mut self) -> (u64, ShardTotals) {
        let count = self.accounts.begin_cut() as u64;
        let totals = ShardTotals {
            deposits: self.deposits,
            deposited: self.deposited,
            sent: self.sent,
            received: self.received,
        };
        (count, totals)
    }

    /// Encodes the next `count` accounts of the open cut (at least one; as they were at the
    /// cut, in the order they were created) into `out`; returns whether every account is
    /// encoded now (the cut is then closed). Fails without a cut open.
    pub fn encode_cut(&mut self, out: &mut StoredParts, count: usize) -> Result<bool, CodecError> {
        self.accounts.encode_cut(out, count)
    }

    /// Closes the cut, if one is open (a snapshot given up).
    pub fn end_cut(&mut self) {
        self.accounts.end_cut();
    }

    /// Replaces the state with a snapshot's (keys are validated again as accounts order).
    pub fn restore(&mut self, snapshot: ShardSnapshot) {
        self.accounts
            .replace(snapshot.accounts.into_iter().collect());
        self.deposits = snapshot.deposits;
        self.deposited = snapshot.deposited;
        self.sent = snapshot.sent;
        self.received = snapshot.received;
        self.keys
            .retain(|account, _| self.accounts.contains_key(account));
    }

    /// Re-establishes a vote recorded before a restart, without signing again: the account's
    /// pending vote becomes `vote` if it is for the account's next sequence number. Returns
    /// whether it was restored.
    pub fn restore_vote(&mut self, vote: SignedTransferOrder) -> bool {
        let transfer = vote.value.transfer;
        match self.accounts.get_mut(&transfer.sender) {
            Some(account) if account.next_sequence_number == transfer.sequence_number => {
                account.pending = Some(vote);
                true
            }
            _ => false,
        }
    }

    // ---- queries ---------------------------------------------------------------------------

    /// This shard's view of one account.
    pub fn handle_account_info_request(
        &self,
        request: &AccountInfoRequest,
    ) -> Result<AccountInfoResponse, AuthorityError> {
        self.account_info(&request.account)
    }

    /// This shard's view of `account` (which must be one of its accounts and known).
    pub fn account_info(&self, account: &AccountId) -> Result<AccountInfoResponse, AuthorityError> {
        self.check_owned(account)?;
        let state = self
            .accounts
            .get(account)
            .ok_or(AuthorityError::UnknownAccount(*account))?;
        Ok(self.info(account, state))
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
