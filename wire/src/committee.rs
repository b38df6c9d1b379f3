//! The committee of authorities, their voting weights and the certificate rules.

use crate::base_types::{AccountId, AuthorityName, ShardId, shard_of};
use crate::crypto::{CryptoError, PublicKey};
use crate::messages::CertifiedTransferOrder;
use std::collections::HashMap;
use thiserror::Error;

/// One authority as the committee knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitteeMember {
    /// The authority's public key.
    pub name: AuthorityName,
    /// Its voting weight (one per authority in the usual setting).
    pub weight: u64,
    /// How many shards its accounts are spread over.
    pub num_shards: u32,
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
    index: HashMap<AuthorityName, usize>,
    total_weight: u64,
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
                })
                .collect(),
        )
    }

    /// Builds and validates a committee.
    pub fn new(members: Vec<CommitteeMember>) -> Result<Self, CommitteeError> {
        if members.is_empty() {
            return Err(CommitteeError::Empty);
        }
        let mut index = HashMap::with_capacity(members.len());
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
        Ok(Self {
            members,
            keys,
            index,
            total_weight,
        })
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

    /// The shard of authority `name` that owns `account`, if `name` is a member.
    pub fn shard_of(&self, name: &AuthorityName, account: &AccountId) -> Option<ShardId> {
        self.member(name).map(|m| shard_of(account, m.num_shards))
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
