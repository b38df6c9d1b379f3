//! The committee of authorities, their voting weights, the certificate rules, the id that
//! binds every signature to one committee, and members' votes signed and checked in the form
//! the committee gives each member.

use crate::base_types::{
    AccountId, AuthorityName, CommitteeId, NetworkInstance, ShardId, shard_of,
};
use crate::batch::BatchVerifier;
use crate::crypto::{CryptoError, KeyPair, PublicKey, SignedBytes};
use crate::merkle::{
    MAX_LEAVES, MerkleProof, RootCache, TreeBuilder, VoteError, VoteScheme, VoteSignature,
    leaf_hash, verify_vote,
};
use crate::messages::{CertifiedTransferOrder, SignedTransferOrder, TransferOrder};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use thiserror::Error;

/// Domain tag of the committee identifier's hash; NUL-terminated like the signing tags.
const COMMITTEE_ID_TAG: &[u8] = b"fastpay/committee/v2\0";

impl CommitteeId {
    /// The identifier of the committee whose members are `members`, each in the network
    /// instance `instances` gives it (all zeros where none): SHA-512 over a domain tag, then
    /// each member sorted by name as its name (32 bytes), weight (`u64` LE) and instance (32
    /// bytes), truncated to 32 bytes.
    ///
    /// Shard counts are left out on purpose: they are an authority's internal layout, which
    /// it may change (resharding) without changing who can certify or with what weight, and
    /// such a change must not invalidate every signature in flight. The order in which
    /// members are listed is left out too: it is presentation, not membership.
    fn of_members(
        members: &[CommitteeMember],
        instances: &HashMap<AuthorityName, NetworkInstance>,
    ) -> Self {
        let none = NetworkInstance([0; 32]);
        let mut sorted: Vec<(&AuthorityName, u64, &NetworkInstance)> = members
            .iter()
            .map(|m| (&m.name, m.weight, instances.get(&m.name).unwrap_or(&none)))
            .collect();
        sorted.sort_unstable();
        let mut hash = Sha512::new();
        hash.update(COMMITTEE_ID_TAG);
        for (name, weight, instance) in sorted {
            hash.update(name.0);
            hash.update(weight.to_le_bytes());
            hash.update(instance.0);
        }
        let digest: [u8; 64] = hash.finalize().into();
        let mut id = [0u8; 32];
        id.copy_from_slice(&digest[..32]);
        Self(id)
    }
}

/// One authority as the committee knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitteeMember {
    /// The authority's public key.
    pub name: AuthorityName,
    /// Its voting weight (one per authority in the usual setting).
    pub weight: u64,
    /// How many shards its accounts are spread over.
    pub num_shards: u32,
    /// How it signs its votes. Not part of the committee id: like the shard count, it is the
    /// authority's choice of how to prove its votes, not who votes with what weight.
    pub votes: VoteScheme,
}

/// Why a committee description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitteeError {
    /// No authority at all.
    #[error("the committee is empty")]
    Empty,
    /// The same authority twice.
    #[error("authority {0} appears twice")]
    Duplicate(AuthorityName),
    /// A member with zero weight or zero shards.
    #[error("authority {0} has zero weight or zero shards")]
    Degenerate(AuthorityName),
    /// The weights add up past `u64`.
    #[error("total voting weight overflows")]
    WeightOverflow,
    /// A member's name is not a usable public key.
    #[error("authority {0} has an invalid key: {1}")]
    BadKey(AuthorityName, CryptoError),
}

/// Why a certificate's signer set is not a quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CertificateError {
    /// A signer is not in the committee.
    #[error("signer {0} is not in the committee")]
    UnknownSigner(AuthorityName),
    /// A signer appears twice.
    #[error("signer {0} appears twice")]
    DuplicateSigner(AuthorityName),
    /// The signers' weight is below the quorum threshold.
    #[error("signers weigh {weight}, quorum is {quorum}")]
    NoQuorum {
        /// Weight present.
        weight: u64,
        /// Weight needed.
        quorum: u64,
    },
}

/// The committee: who votes, with what weight, and the thresholds that follow.
///
/// With total weight N and at most f = (N - 1) / 3 of it Byzantine, a certificate needs the
/// quorum 2f + 1 (N - f) and any f + 1 includes an honest authority (validity).
#[derive(Debug, Clone)]
pub struct Committee {
    members: Vec<CommitteeMember>,
    keys: Vec<PublicKey>,
    /// Member by name: looked up for every vote checked, so with a fast hash (the names are
    /// the committee's own, fixed when it is built; a lookup of any other name only probes).
    index: FxHashMap<AuthorityName, usize>,
    total_weight: u64,
    /// Computed once in `new`: every signature check needs it.
    id: CommitteeId,
}

impl Committee {
    /// A committee of authorities of weight one, each with `num_shards` shards.
    pub fn equal_weights(
        names: impl IntoIterator<Item = AuthorityName>,
        num_shards: u32,
    ) -> Result<Self, CommitteeError> {
        Self::new(
            names
                .into_iter()
                .map(|name| CommitteeMember {
                    name,
                    weight: 1,
                    num_shards,
                    votes: VoteScheme::Single,
                })
                .collect(),
        )
    }

    /// Builds and validates a committee.
    pub fn new(members: Vec<CommitteeMember>) -> Result<Self, CommitteeError> {
        if members.is_empty() {
            return Err(CommitteeError::Empty);
        }
        let mut index =
            FxHashMap::with_capacity_and_hasher(members.len(), rustc_hash::FxBuildHasher);
        let mut keys = Vec::with_capacity(members.len());
        let mut total_weight: u64 = 0;
        for (i, member) in members.iter().enumerate() {
            if index.insert(member.name, i).is_some() {
                return Err(CommitteeError::Duplicate(member.name));
            }
            if member.weight == 0 || member.num_shards == 0 {
                return Err(CommitteeError::Degenerate(member.name));
            }
            total_weight = total_weight
                .checked_add(member.weight)
                .ok_or(CommitteeError::WeightOverflow)?;
            keys.push(
                PublicKey::of_authority(&member.name)
                    .map_err(|e| CommitteeError::BadKey(member.name, e))?,
            );
        }
        // The thresholds multiply the total by two; keep that in range.
        if total_weight > u64::MAX / 2 {
            return Err(CommitteeError::WeightOverflow);
        }
        let id = CommitteeId::of_members(&members, &HashMap::new());
        Ok(Self {
            members,
            keys,
            index,
            total_weight,
            id,
        })
    }

    /// The same committee in the network instance each member drew (`instances`, by name;
    /// names outside the committee are ignored): its id covers them (see
    /// [`CommitteeId`]).
    pub fn in_instances(
        mut self,
        instances: impl IntoIterator<Item = (AuthorityName, NetworkInstance)>,
    ) -> Self {
        self.id = CommitteeId::of_members(&self.members, &instances.into_iter().collect());
        self
    }

    /// The identifier every signature of this committee covers (see [`CommitteeId`]).
    pub fn id(&self) -> CommitteeId {
        self.id
    }

    /// The members in their configured order.
    pub fn members(&self) -> &[CommitteeMember] {
        &self.members
    }

    /// The sum of all weights.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// Weight a certificate needs: 2f + 1 of 3f + 1.
    pub fn quorum_threshold(&self) -> u64 {
        // `total_weight <= u64::MAX / 2` is checked in `new`.
        (self.total_weight / 3)
            .saturating_mul(2)
            .saturating_add((self.total_weight % 3).saturating_mul(2) / 3)
            .saturating_add(1)
    }

    /// Weight that must include at least one honest authority: f + 1.
    pub fn validity_threshold(&self) -> u64 {
        self.total_weight.saturating_add(2) / 3
    }

    /// The weight of `name`, zero if it is not a member.
    pub fn weight(&self, name: &AuthorityName) -> u64 {
        self.index.get(name).map_or(0, |&i| self.members[i].weight)
    }

    /// The validated key of member `name`.
    pub fn public_key(&self, name: &AuthorityName) -> Option<&PublicKey> {
        self.index.get(name).map(|&i| &self.keys[i])
    }

    /// The member `name`.
    pub fn member(&self, name: &AuthorityName) -> Option<&CommitteeMember> {
        self.index.get(name).map(|&i| &self.members[i])
    }

    /// How member `name` signs its votes (the default scheme for a non-member).
    pub fn vote_scheme(&self, name: &AuthorityName) -> VoteScheme {
        self.member(name).map_or(VoteScheme::Single, |m| m.votes)
    }

    /// The same committee with every member signing votes by `scheme` (for tests and tools
    /// that assemble committees in code).
    pub fn with_vote_scheme(mut self, scheme: VoteScheme) -> Self {
        for member in &mut self.members {
            member.votes = scheme;
        }
        self
    }

    /// Padding every request to this committee carries so that the largest vote any member
    /// sends fits within the request (see [`VoteScheme::request_padding`]).
    pub fn request_padding(&self) -> u16 {
        self.members
            .iter()
            .map(|m| m.votes.request_padding())
            .max()
            .unwrap_or(0)
    }

    /// Verifies member `name`'s vote `signature` on `vote_bytes` (bytes of this committee):
    /// in the form the committee says `name` uses, its root signature checked unless `cache`
    /// holds it.
    pub fn verify_vote(
        &self,
        name: &AuthorityName,
        vote_bytes: &SignedBytes,
        signature: &VoteSignature,
        cache: Option<&mut RootCache>,
    ) -> Result<(), VoteError> {
        let i = *self.index.get(name).ok_or(VoteError::UnknownSigner)?;
        verify_vote(
            name,
            &self.keys[i],
            self.members[i].votes,
            &self.id,
            vote_bytes,
            signature,
            cache,
        )
    }

    /// Queues member `name`'s vote `signature` on `vote_bytes` in `verifier` (see
    /// [`BatchVerifier::push_vote`]): its verdict is that of every entry queued from here on.
    pub fn queue_vote(
        &self,
        verifier: &mut BatchVerifier,
        name: &AuthorityName,
        vote_bytes: SignedBytes,
        signature: &VoteSignature,
    ) -> Result<(), VoteError> {
        let i = *self.index.get(name).ok_or(VoteError::UnknownSigner)?;
        verifier.push_vote(
            name,
            &self.keys[i],
            self.members[i].votes,
            &self.id,
            vote_bytes,
            signature,
        )
    }

    /// The shard of authority `name` that owns `account`, if `name` is a member.
    pub fn shard_of(&self, name: &AuthorityName, account: &AccountId) -> Option<ShardId> {
        self.member(name).map(|m| shard_of(account, m.num_shards))
    }

    /// Keeps only as many of a certificate's votes, in their order, as reach the quorum: a
    /// certificate carrying more (every member's vote, say) says nothing more, and an
    /// authority stores and serves it at the size [`Self::max_certificate_wire_size`]
    /// bounds. Votes of unknown signers count for nothing (check the signers first).
    pub fn trim_to_quorum(&self, certificate: &mut CertifiedTransferOrder) {
        let keep = self.quorum_prefix(certificate);
        certificate.signatures.truncate(keep);
    }

    /// How many of a certificate's first votes reach the quorum (all of them if they do
    /// not): what [`Self::trim_to_quorum`] keeps.
    pub fn quorum_prefix(&self, certificate: &CertifiedTransferOrder) -> usize {
        self.votes_to_quorum(
            certificate
                .signatures
                .iter()
                .map(|(name, _)| self.weight(name)),
        )
    }

    /// The most votes a certificate trimmed to a quorum ([`Self::trim_to_quorum`]) holds:
    /// the smallest members' votes, until their weight reaches the quorum.
    pub fn max_certificate_votes(&self) -> usize {
        let mut weights: Vec<u64> = self.members.iter().map(|m| m.weight).collect();
        weights.sort_unstable();
        self.votes_to_quorum(weights.into_iter())
    }

    /// How many of `weights`, taken in order, it takes to reach the quorum (all of them if
    /// they do not).
    fn votes_to_quorum(&self, weights: impl Iterator<Item = u64>) -> usize {
        let quorum = self.quorum_threshold();
        let mut weight: u64 = 0;
        weights
            .take_while(|w| {
                let below = weight < quorum;
                weight = weight.saturating_add(*w);
                below
            })
            .count()
    }

    /// The most bytes a certificate trimmed to a quorum takes on the wire: an order with a
    /// memo and [`Self::max_certificate_votes`] of the largest votes any member signs.
    pub fn max_certificate_wire_size(&self) -> usize {
        let signature = crate::crypto::Signature([0; 64]);
        let vote = match self.members.iter().any(|m| m.votes == VoteScheme::Merkle) {
            true => VoteScheme::Merkle.largest_signature(),
            false => VoteScheme::Single.largest_signature(),
        };
        let name = self
            .members
            .first()
            .map_or(AuthorityName([0; 32]), |m| m.name);
        let largest = CertifiedTransferOrder {
            value: TransferOrder {
                transfer: crate::messages::Transfer {
                    sender: AccountId([0; 32]),
                    recipient: AccountId([0; 32]),
                    amount: crate::base_types::Amount::new(1),
                    sequence_number: crate::base_types::SequenceNumber::new(0),
                    user_data: Some(crate::base_types::UserData([0; 32])),
                },
                signature,
            },
            signatures: vec![(name, vote); self.max_certificate_votes()],
        };
        crate::codec::certificate_wire_size(&largest)
    }

    /// Checks a certificate's signer set, without checking signatures: every signer known and
    /// distinct, and their weight at least the quorum.
    pub fn check_signers(
        &self,
        certificate: &CertifiedTransferOrder,
    ) -> Result<(), CertificateError> {
        let mut weight: u64 = 0;
        for (i, (name, _)) in certificate.signatures.iter().enumerate() {
            let w = self.weight(name);
            if w == 0 {
                return Err(CertificateError::UnknownSigner(*name));
            }
            // Certificates hold a handful of votes; a quadratic scan beats hashing here.
            if certificate.signatures[..i].iter().any(|(n, _)| n == name) {
                return Err(CertificateError::DuplicateSigner(*name));
            }
            weight = weight.saturating_add(w);
        }
        let quorum = self.quorum_threshold();
        if weight < quorum {
            return Err(CertificateError::NoQuorum { weight, quorum });
        }
        Ok(())
    }
}

/// `key`'s vote for `order` on its own, in the form `committee` says `key`'s authority uses:
/// a per-vote signature, or a batch of one (for tools, tests and Byzantine actors; an
/// authority's shards batch their votes through [`TreeBuilder`]).
pub fn sign_vote(
    order: TransferOrder,
    committee: &Committee,
    key: &KeyPair,
) -> SignedTransferOrder {
    let id = committee.id();
    match committee.vote_scheme(&key.authority()) {
        VoteScheme::Single => SignedTransferOrder::new(order, &id, key),
        VoteScheme::Merkle => {
            let proof = MerkleProof::sign_alone(&order.vote_bytes(&id), &id, key);
            SignedTransferOrder::batched(order, key.authority(), proof)
        }
    }
}

/// `key`'s votes for `orders` as its authority's shards would sign them, in order: per-vote
/// signatures, or one root per [`MAX_LEAVES`] consecutive orders (for tools that pre-sign
/// certificates, such as loadgen's offline certificates and the `bench` binary).
pub fn sign_votes(
    orders: &[TransferOrder],
    committee: &Committee,
    key: &KeyPair,
) -> Vec<SignedTransferOrder> {
    let id = committee.id();
    if committee.vote_scheme(&key.authority()) == VoteScheme::Single {
        return orders
            .iter()
            .map(|order| SignedTransferOrder::new(*order, &id, key))
            .collect();
    }
    let mut votes = Vec::with_capacity(orders.len());
    let mut tree = TreeBuilder::new();
    let mut leaves = Vec::with_capacity(MAX_LEAVES);
    for chunk in orders.chunks(MAX_LEAVES) {
        leaves.clear();
        leaves.extend(chunk.iter().map(|o| leaf_hash(&o.vote_bytes(&id))));
        let Some(root_signature) = tree.sign(&leaves, &id, key) else {
            continue;
        };
        for (i, order) in chunk.iter().enumerate() {
            if let Some(proof) = tree.proof(i, root_signature) {
                votes.push(SignedTransferOrder::batched(*order, key.authority(), proof));
            }
        }
    }
    votes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base_types::{Amount, SequenceNumber};
    use crate::crypto::{KeyPair, PublicKey};
    use crate::messages::{SignedTransferOrder, Transfer, TransferOrder};

    fn authority(seed: u8) -> KeyPair {
        KeyPair::from_seed([seed; 32])
    }

    fn member(seed: u8, weight: u64, num_shards: u32) -> CommitteeMember {
        CommitteeMember {
            name: authority(seed).authority(),
            weight,
            num_shards,
            votes: VoteScheme::Single,
        }
    }

    /// Authorities 10 to 13 with the given weights, `num_shards` shards each.
    fn committee(weights: [u64; 4], num_shards: u32) -> Committee {
        Committee::new(
            (10..14)
                .zip(weights)
                .map(|(seed, weight)| member(seed, weight, num_shards))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn id_covers_the_voting_set_and_weights_only() {
        let base = committee([1, 1, 1, 1], 1);
        assert_eq!(
            base.id(),
            CommitteeId::of_members(base.members(), &HashMap::new())
        );
        // Shard counts and listing order are an authority's layout and presentation.
        assert_eq!(committee([1, 1, 1, 1], 8).id(), base.id());
        let mut reversed = base.members().to_vec();
        reversed.reverse();
        assert_eq!(Committee::new(reversed).unwrap().id(), base.id());
        // Weights and membership decide who can certify.
        assert_ne!(committee([1, 1, 1, 2], 1).id(), base.id());
        let mut more = base.members().to_vec();
        more.push(member(14, 1, 1));
        assert_ne!(Committee::new(more).unwrap().id(), base.id());
        let fewer = base.members()[..3].to_vec();
        assert_ne!(Committee::new(fewer).unwrap().id(), base.id());
    }

    #[test]
    fn certificates_trim_to_a_quorum_and_committees_of_40_fit_a_datagram() {
        let members = |n: u8, scheme: VoteScheme| {
            Committee::new(
                (0..n)
                    .map(|i| CommitteeMember {
                        votes: scheme,
                        ..member(100 + i, 1, 1)
                    })
                    .collect(),
            )
            .unwrap()
        };
        // Every member's vote, as a payer may send: trimmed to the first quorum.
        let committee = members(10, VoteScheme::Single);
        let order = TransferOrder::new(
            Transfer {
                sender: authority(1).account(),
                recipient: authority(2).account(),
                amount: Amount::new(1),
                sequence_number: SequenceNumber::new(0),
                user_data: None,
            },
            &committee.id(),
            &authority(1),
        );
        let mut certificate = CertifiedTransferOrder {
            value: order,
            signatures: (0..10)
                .map(|i| {
                    let vote = sign_vote(order, &committee, &authority(100 + i));
                    (vote.authority, vote.signature)
                })
                .collect(),
        };
        let all = certificate.signatures.clone();
        committee.trim_to_quorum(&mut certificate);
        assert_eq!(certificate.signatures, all[..7]);
        assert_eq!(committee.check_signers(&certificate), Ok(()));
        assert_eq!(committee.max_certificate_votes(), 7);
        assert!(
            crate::codec::certificate_wire_size(&certificate)
                <= committee.max_certificate_wire_size()
        );
        // Unequal weights (five of 1, five of 6): the smallest votes until the quorum.
        let weighted = Committee::new(
            (0..10)
                .map(|i| member(100 + i, 1 + u64::from(i / 5) * 5, 1))
                .collect(),
        )
        .unwrap();
        assert_eq!(weighted.quorum_threshold(), 24);
        assert_eq!(weighted.max_certificate_votes(), 9);
        // A confirmation of the largest certificate of 40 members, batched votes at the
        // deepest proofs, fits one datagram with its header, and so does a page of one.
        for scheme in [VoteScheme::Single, VoteScheme::Merkle] {
            let committee = members(40, scheme);
            let size = committee.max_certificate_wire_size();
            assert!(
                size + 80 <= crate::codec::MAX_DATAGRAM_SIZE,
                "{scheme}: {size}"
            );
            // As a confirmation, padded as requests to such authorities are.
            let vote = scheme.largest_signature();
            let mut largest = certificate.clone();
            largest.value.transfer.user_data = Some(crate::base_types::UserData([1; 32]));
            largest.signatures = committee.members()[..27]
                .iter()
                .map(|m| (m.name, vote))
                .collect();
            assert_eq!(committee.max_certificate_votes(), 27);
            assert_eq!(crate::codec::certificate_wire_size(&largest), size);
            let confirmation =
                crate::messages::Message::ConfirmationOrder(crate::messages::ConfirmationOrder {
                    certificate: largest,
                });
            let datagram = crate::codec::encode_request(
                &confirmation,
                ShardId(0),
                committee.request_padding(),
            )
            .unwrap();
            assert!(datagram.len() <= crate::codec::MAX_DATAGRAM_SIZE);
            // Padded like an order, it would not have fitted.
            if scheme == VoteScheme::Merkle {
                assert!(
                    crate::codec::encode_padded(
                        &confirmation,
                        ShardId(0),
                        committee.request_padding()
                    )
                    .is_err()
                );
            }
        }
    }

    #[test]
    fn id_covers_every_members_network_instance() {
        let base = committee([1, 1, 1, 1], 1);
        let names: Vec<AuthorityName> = base.members().iter().map(|m| m.name).collect();
        let drawn = |value: u8| {
            names
                .iter()
                .map(move |&name| (name, NetworkInstance([value; 32])))
        };
        let first = base.clone().in_instances(drawn(1));
        assert_ne!(first.id(), base.id());
        assert_eq!(base.clone().in_instances(drawn(1)).id(), first.id());
        // One member drawing anew (its key kept) makes another network.
        let mut one_redrawn: Vec<_> = drawn(1).collect();
        one_redrawn[2].1 = NetworkInstance([2; 32]);
        assert_ne!(base.clone().in_instances(one_redrawn).id(), first.id());
        // Outsiders' instances change nothing.
        let outsider = (member(20, 1, 1).name, NetworkInstance([3; 32]));
        assert_eq!(
            base.clone().in_instances(drawn(1).chain([outsider])).id(),
            first.id()
        );
    }

    #[test]
    fn id_prints_and_parses_as_hex() {
        let id = committee([1, 1, 1, 1], 1).id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, hex::encode(id.0));
        assert_eq!(text.parse::<CommitteeId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("CommitteeId({})", &text[..8]));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<CommitteeId>(&json).unwrap(), id);
    }

    /// Whether `certificate` is a quorum of `committee` and every vote verifies under its id.
    fn verifies(committee: &Committee, certificate: &CertifiedTransferOrder) -> bool {
        let bytes = certificate.value.vote_bytes(&committee.id());
        committee.check_signers(certificate).is_ok()
            && certificate.signatures.iter().all(|(name, signature)| {
                committee.verify_vote(name, &bytes, signature, None).is_ok()
            })
    }

    #[test]
    fn votes_and_certificates_do_not_cross_committees() {
        let a = committee([1, 1, 1, 1], 1);
        let reweighted = committee([1, 1, 1, 2], 1);
        let mut larger = a.members().to_vec();
        larger.push(member(14, 1, 1));
        let larger = Committee::new(larger).unwrap();

        let owner = KeyPair::from_seed([1; 32]);
        let transfer = Transfer {
            sender: owner.account(),
            recipient: KeyPair::from_seed([2; 32]).account(),
            amount: Amount::new(5),
            sequence_number: SequenceNumber::new(0),
            user_data: None,
        };
        let order = TransferOrder::new(transfer, &a.id(), &owner);
        let owner_key = PublicKey::of_account(&owner.account()).unwrap();
        let vote = SignedTransferOrder::new(order, &a.id(), &authority(10));
        let certificate = CertifiedTransferOrder {
            value: order,
            signatures: (10..14)
                .map(|seed| {
                    let vote = SignedTransferOrder::new(order, &a.id(), &authority(seed));
                    (vote.authority, vote.signature)
                })
                .collect(),
        };
        assert_eq!(
            a.verify_vote(
                &vote.authority,
                &order.vote_bytes(&a.id()),
                &vote.signature,
                None
            ),
            Ok(())
        );
        assert_eq!(
            owner_key.verify(&order.signed_bytes(&a.id()), &order.signature),
            Ok(())
        );
        assert!(verifies(&a, &certificate));

        for b in [&reweighted, &larger] {
            // Same voters, enough weight in B: only the committee binding refuses them.
            assert_eq!(b.check_signers(&certificate), Ok(()));
            assert_eq!(
                b.verify_vote(
                    &vote.authority,
                    &order.vote_bytes(&b.id()),
                    &vote.signature,
                    None
                ),
                Err(VoteError::Signature(CryptoError::InvalidSignature))
            );
            assert_eq!(
                owner_key.verify(&order.signed_bytes(&b.id()), &order.signature),
                Err(CryptoError::InvalidSignature)
            );
            assert!(!verifies(b, &certificate));
        }
    }

    #[test]
    fn signed_votes_take_the_committee_s_form_and_verify() {
        let owner = KeyPair::from_seed([1; 32]);
        let orders: Vec<TransferOrder> = (0..MAX_LEAVES as u64 + 6)
            .map(|n| {
                let transfer = Transfer {
                    sender: owner.account(),
                    recipient: KeyPair::from_seed([2; 32]).account(),
                    amount: Amount::new(n + 1),
                    sequence_number: SequenceNumber::new(n),
                    user_data: None,
                };
                TransferOrder::new(transfer, &CommitteeId([0; 32]), &owner)
            })
            .collect();
        let key = authority(10);
        for scheme in [VoteScheme::Single, VoteScheme::Merkle] {
            let committee = committee([1, 1, 1, 1], 1).with_vote_scheme(scheme);
            let id = committee.id();
            let alone = sign_vote(orders[0], &committee, &key);
            let votes = sign_votes(&orders, &committee, &key);
            assert_eq!(votes.len(), orders.len());
            for vote in std::iter::once(&alone).chain(&votes) {
                assert_eq!(vote.authority, key.authority());
                assert_eq!(vote.signature.scheme(), scheme);
                let bytes = vote.value.vote_bytes(&id);
                assert_eq!(
                    committee.verify_vote(&vote.authority, &bytes, &vote.signature, None),
                    Ok(())
                );
            }
            if scheme == VoteScheme::Merkle {
                // A vote on its own is the batch of one that a tree builder signs.
                let mut tree = TreeBuilder::new();
                let leaf = leaf_hash(&orders[0].vote_bytes(&id));
                let root_signature = tree.sign(&[leaf], &id, &key).unwrap();
                let expected = VoteSignature::Batched(tree.proof(0, root_signature).unwrap());
                assert_eq!(alone.signature, expected);
                // One root per MAX_LEAVES orders.
                let root = |vote: &SignedTransferOrder| match vote.signature {
                    VoteSignature::Batched(proof) => proof.root_signature,
                    VoteSignature::Single(_) => unreachable!(),
                };
                assert_eq!(root(&votes[0]), root(&votes[MAX_LEAVES - 1]));
                assert_ne!(root(&votes[0]), root(&votes[MAX_LEAVES]));
            }
        }
    }
}
