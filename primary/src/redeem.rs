//! What the committee signs to let the contract pay out a FastPay transfer, and the committee
//! as the contract knows it: sans-IO, so an authority signs and a client assembles a certificate
//! without talking to the chain.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use fastpay_wire::CommitteeFile;
use fastpay_wire::base_types::{AccountId, Amount, AuthorityName, CommitteeId, SequenceNumber};
use thiserror::Error;

/// The tag that starts every redeem digest: the contract's `REDEEM_DOMAIN`, the keccak-256 of
/// this string.
pub const REDEEM_DOMAIN_TAG: &str = "fastpay.primary.redeem.v1";

/// Where a redeem is valid: one contract, on one chain, for one committee. Part of every digest,
/// so a signature never pays out on another chain, another deployment or for another committee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemDomain {
    /// The chain's EIP-155 id.
    pub chain_id: u64,
    /// The contract's address.
    pub contract: Address,
    /// The committee the contract was deployed for.
    pub committee_id: CommitteeId,
}

/// A FastPay transfer to an Ethereum address, as the contract pays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemOrder {
    /// The FastPay account that sent the transfer.
    pub sender: AccountId,
    /// The transfer's sequence number in the sender's history.
    pub sequence: SequenceNumber,
    /// The Ethereum address paid.
    pub recipient: Address,
    /// Units paid (as `amount` gwei).
    pub amount: Amount,
}

/// The digest the contract's `redeemDigest` computes: keccak-256 of the ABI encoding of the
/// domain tag's hash, chain id, contract, committee id, sender, sequence, recipient and amount.
pub fn redeem_digest(domain: &RedeemDomain, order: &RedeemOrder) -> B256 {
    let encoded = (
        keccak256(REDEEM_DOMAIN_TAG),
        U256::from(domain.chain_id),
        domain.contract,
        B256::from(domain.committee_id.0),
        B256::from(order.sender.0),
        order.sequence.value(),
        order.recipient,
        order.amount.units(),
    )
        .abi_encode();
    keccak256(encoded)
}

/// One authority's signature of a redeem digest, in the form the contract takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemSignature {
    /// The address of the key that signed (the contract recovers it; kept to order signatures).
    pub signer: Address,
    /// The signature's `r`.
    pub r: B256,
    /// The signature's `s` (in the lower half of the curve order).
    pub s: B256,
    /// 27 or 28.
    pub v: u8,
}

impl RedeemSignature {
    /// The address this signature of `digest` recovers to, if it is a valid signature.
    pub fn recover(&self, digest: &B256) -> Option<Address> {
        let y_parity = match self.v {
            27 => false,
            28 => true,
            _ => return None,
        };
        let signature = alloy::primitives::Signature::new(
            U256::from_be_bytes(self.r.0),
            U256::from_be_bytes(self.s.0),
            y_parity,
        );
        signature.recover_address_from_prehash(digest).ok()
    }
}

/// Why a redeem key could not be made or could not sign.
#[derive(Debug, Error)]
pub enum SignError {
    /// The bytes are not a secp256k1 secret (zero, or not below the curve order).
    #[error("not a secp256k1 secret key")]
    BadKey,
    /// The signer failed.
    #[error("signing the redeem digest failed: {0}")]
    Signer(#[from] alloy::signers::Error),
}

/// The domain tag of [`RedeemSigner::for_authority`]'s derivation.
const REDEEM_KEY_DOMAIN: &[u8] = b"fastpay.primary.redeem-key.v1";

/// An authority's secp256k1 key for approving redeems (beside its ed25519 FastPay key).
#[derive(Debug, Clone)]
pub struct RedeemSigner(PrivateKeySigner);

impl RedeemSigner {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(PrivateKeySigner::random())
    }
    /// The key with secret scalar `secret`, if it is a valid secp256k1 secret.
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, SignError> {
        PrivateKeySigner::from_bytes(&B256::from(*secret))
            .map(Self)
            .map_err(|_| SignError::BadKey)
    }
    /// The redeem key of the authority whose ed25519 secret seed is `seed`: derived from it
    /// (Keccak-256 of a domain tag and the seed), so the authority's one secret file holds
    /// both keys and a committee entry can name the address from the seed alone.
    pub fn for_authority(seed: &[u8; 32]) -> Self {
        let mut preimage = Vec::with_capacity(REDEEM_KEY_DOMAIN.len() + 32);
        let mut counter = 0u8;
        loop {
            preimage.clear();
            preimage.extend_from_slice(REDEEM_KEY_DOMAIN);
            preimage.extend_from_slice(seed);
            preimage.push(counter);
            let secret = alloy::primitives::keccak256(&preimage);
            // A hash is a valid secret unless it is zero or at least the group order, a chance
            // of about 2^-128: then the next counter is tried.
            if let Ok(signer) = PrivateKeySigner::from_bytes(&secret) {
                return Self(signer);
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// The Ethereum address the contract knows this authority by.
    pub fn address(&self) -> Address {
        self.0.address()
    }
    /// Signs `order` for `domain`.
    pub fn sign(
        &self,
        domain: &RedeemDomain,
        order: &RedeemOrder,
    ) -> Result<RedeemSignature, SignError> {
        let signature = self.0.sign_hash_sync(&redeem_digest(domain, order))?;
        Ok(RedeemSignature {
            signer: self.address(),
            r: B256::from(signature.r().to_be_bytes::<32>()),
            s: B256::from(signature.s().to_be_bytes::<32>()),
            v: 27 + u8::from(signature.v()),
        })
    }
}

/// Why a committee is not one the contract accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommitteeError {
    /// No members.
    #[error("the committee has no members")]
    Empty,
    /// A member's weight is zero.
    #[error("member {0} has weight zero")]
    ZeroWeight(Address),
    /// A member is listed twice, or is the zero address.
    #[error("member {0} is listed twice or is the zero address")]
    BadMember(Address),
    /// The weights add up to more than a u64.
    #[error("the total weight exceeds a u64")]
    WeightOverflow,
    /// The quorum is zero or more than the total weight.
    #[error("quorum {quorum} is not in 1..={total}")]
    BadQuorum {
        /// The quorum asked for.
        quorum: u64,
        /// The committee's total weight.
        total: u64,
    },
}

/// The committee as the contract holds it: signer addresses in increasing order with weights,
/// a quorum and the FastPay committee id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthCommittee {
    members: Vec<(Address, u64)>,
    quorum: u64,
    id: CommitteeId,
}

impl EthCommittee {
    /// The committee of `members` (any order) that approves with `quorum` weight; checks what
    /// the contract's constructor checks, so a deployment does not revert.
    pub fn new(
        members: impl IntoIterator<Item = (Address, u64)>,
        quorum: u64,
        id: CommitteeId,
    ) -> Result<Self, CommitteeError> {
        let mut members: Vec<(Address, u64)> = members.into_iter().collect();
        members.sort_unstable();
        let mut total: u64 = 0;
        let mut previous = Address::ZERO;
        for &(address, weight) in &members {
            if address <= previous {
                return Err(CommitteeError::BadMember(address));
            }
            if weight == 0 {
                return Err(CommitteeError::ZeroWeight(address));
            }
            total = total
                .checked_add(weight)
                .ok_or(CommitteeError::WeightOverflow)?;
            previous = address;
        }
        if members.is_empty() {
            return Err(CommitteeError::Empty);
        }
        if quorum == 0 || quorum > total {
            return Err(CommitteeError::BadQuorum { quorum, total });
        }
        Ok(Self {
            members,
            quorum,
            id,
        })
    }
    /// The members' addresses, in increasing order.
    pub fn signers(&self) -> Vec<Address> {
        self.members.iter().map(|&(address, _)| address).collect()
    }
    /// The members' weights, in the order of [`EthCommittee::signers`].
    pub fn weights(&self) -> Vec<u64> {
        self.members.iter().map(|&(_, weight)| weight).collect()
    }
    /// The weight that approves a redeem.
    pub fn quorum(&self) -> u64 {
        self.quorum
    }
    /// The FastPay committee id the contract binds into every digest.
    pub fn id(&self) -> CommitteeId {
        self.id
    }
    /// The weight of `signer`, or `None` outside the committee.
    pub fn weight(&self, signer: Address) -> Option<u64> {
        self.members
            .binary_search_by_key(&signer, |&(address, _)| address)
            .ok()
            .map(|i| self.members[i].1)
    }

    /// The signatures to submit for `order`: those that recover to a member, one per member, in
    /// the contract's order, if together they reach the quorum. Checking here first keeps a
    /// client from paying gas for a redeem that would revert.
    pub fn certificate(
        &self,
        domain: &RedeemDomain,
        order: &RedeemOrder,
        signatures: impl IntoIterator<Item = RedeemSignature>,
    ) -> Result<Vec<RedeemSignature>, BelowQuorum> {
        let digest = redeem_digest(domain, order);
        let mut valid: Vec<RedeemSignature> = signatures
            .into_iter()
            .filter(|sig| sig.recover(&digest) == Some(sig.signer))
            .filter(|sig| self.weight(sig.signer).is_some())
            .collect();
        valid.sort_unstable_by_key(|sig| sig.signer);
        valid.dedup_by_key(|sig| sig.signer);
        let mut weight: u64 = 0;
        for sig in &valid {
            // Members' weights sum to at most a u64 (checked in `new`).
            weight = weight.saturating_add(self.weight(sig.signer).unwrap_or(0));
        }
        if weight < self.quorum {
            return Err(BelowQuorum {
                weight,
                quorum: self.quorum,
            });
        }
        Ok(valid)
    }
}

/// Why a committee file does not describe its committee on the primary chain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitteeFileError {
    /// An authority's entry names no redeem address.
    #[error(
        "authority {0} has no eth_address (generate its entry with a server built with the primary feature)"
    )]
    NoAddress(AuthorityName),
    /// An authority's redeem address does not parse.
    #[error("authority {authority}: eth_address {text:?} is not an Ethereum address")]
    BadAddress {
        /// The authority.
        authority: AuthorityName,
        /// What its entry says.
        text: String,
    },
    /// The members do not make a committee the contract accepts.
    #[error(transparent)]
    Committee(#[from] CommitteeError),
}

/// Every authority's redeem address and weight, in the file's order.
pub fn redeem_members(
    file: &CommitteeFile,
) -> Result<Vec<(AuthorityName, Address, u64)>, CommitteeFileError> {
    file.authorities
        .iter()
        .map(|entry| {
            let text = entry
                .eth_address
                .as_ref()
                .ok_or(CommitteeFileError::NoAddress(entry.name))?;
            let address = text.parse().map_err(|_| CommitteeFileError::BadAddress {
                authority: entry.name,
                text: text.clone(),
            })?;
            Ok((entry.name, address, entry.weight))
        })
        .collect()
}

impl EthCommittee {
    /// The committee a committee file describes, as the contract holds it: every authority's
    /// redeem address and weight, the committee's quorum and id.
    pub fn from_file(file: &CommitteeFile) -> Result<Self, CommitteeFileError> {
        let members = redeem_members(file)?;
        let committee = &file.committee;
        Ok(EthCommittee::new(
            members
                .into_iter()
                .map(|(_, address, weight)| (address, weight)),
            committee.quorum_threshold(),
            committee.id(),
        )?)
    }
}

/// Valid signatures from members carry less than the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("valid signatures carry weight {weight}, below the quorum {quorum}")]
pub struct BelowQuorum {
    /// The weight the valid signatures carry.
    pub weight: u64,
    /// The quorum.
    pub quorum: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> RedeemDomain {
        RedeemDomain {
            chain_id: 31_337,
            contract: Address::repeat_byte(0xc0),
            committee_id: CommitteeId([9; 32]),
        }
    }

    fn order() -> RedeemOrder {
        RedeemOrder {
            sender: AccountId([1; 32]),
            sequence: SequenceNumber::new(4),
            recipient: Address::repeat_byte(0xee),
            amount: Amount::new(1_000),
        }
    }

    #[test]
    fn digest_binds_every_field() {
        let base = redeem_digest(&domain(), &order());
        let mut domains = [domain(); 3];
        domains[0].chain_id = 1;
        domains[1].contract = Address::repeat_byte(0xc1);
        domains[2].committee_id = CommitteeId([8; 32]);
        for d in domains {
            assert_ne!(redeem_digest(&d, &order()), base);
        }
        let mut orders = [order(); 4];
        orders[0].sender = AccountId([2; 32]);
        orders[1].sequence = SequenceNumber::new(5);
        orders[2].recipient = Address::repeat_byte(0xef);
        orders[3].amount = Amount::new(1_001);
        for o in orders {
            assert_ne!(redeem_digest(&domain(), &o), base);
        }
    }

    #[test]
    fn signatures_recover_to_their_signer_and_are_low_s() {
        let signer = RedeemSigner::random();
        let sig = signer.sign(&domain(), &order()).unwrap();
        let digest = redeem_digest(&domain(), &order());
        assert_eq!(sig.recover(&digest), Some(signer.address()));
        let half_order = U256::from_str_radix(
            "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0",
            16,
        )
        .unwrap();
        assert!(U256::from_be_bytes(sig.s.0) <= half_order);
        let mut other = order();
        other.amount = Amount::new(1);
        assert_ne!(
            sig.recover(&redeem_digest(&domain(), &other)),
            Some(signer.address())
        );
    }

    #[test]
    fn committee_checks_what_the_constructor_checks() {
        let id = CommitteeId([0; 32]);
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        assert_eq!(EthCommittee::new([], 1, id), Err(CommitteeError::Empty));
        assert_eq!(
            EthCommittee::new([(a, 1), (a, 1)], 1, id),
            Err(CommitteeError::BadMember(a))
        );
        assert_eq!(
            EthCommittee::new([(Address::ZERO, 1)], 1, id),
            Err(CommitteeError::BadMember(Address::ZERO))
        );
        assert_eq!(
            EthCommittee::new([(a, 0)], 1, id),
            Err(CommitteeError::ZeroWeight(a))
        );
        assert_eq!(
            EthCommittee::new([(a, u64::MAX), (b, 1)], 1, id),
            Err(CommitteeError::WeightOverflow)
        );
        assert_eq!(
            EthCommittee::new([(a, 1), (b, 1)], 3, id),
            Err(CommitteeError::BadQuorum {
                quorum: 3,
                total: 2
            })
        );
        let committee = EthCommittee::new([(b, 2), (a, 1)], 3, id).unwrap();
        assert_eq!(committee.signers(), vec![a, b]);
        assert_eq!(committee.weights(), vec![1, 2]);
    }

    #[test]
    fn certificate_orders_dedups_and_drops_strangers() {
        let keys: Vec<RedeemSigner> = (0..4).map(|_| RedeemSigner::random()).collect();
        let committee = EthCommittee::new(
            keys.iter().map(|k| (k.address(), 1)),
            3,
            domain().committee_id,
        )
        .unwrap();
        let sign = |k: &RedeemSigner| k.sign(&domain(), &order()).unwrap();
        let stranger = sign(&RedeemSigner::random());
        let mut forged = sign(&keys[3]);
        forged.signer = keys[2].address();
        let below = [
            sign(&keys[0]),
            sign(&keys[1]),
            sign(&keys[1]),
            stranger,
            forged,
        ];
        assert_eq!(
            committee.certificate(&domain(), &order(), below),
            Err(BelowQuorum {
                weight: 2,
                quorum: 3
            })
        );
        let cert = committee
            .certificate(
                &domain(),
                &order(),
                [sign(&keys[3]), sign(&keys[0]), sign(&keys[2])],
            )
            .unwrap();
        assert_eq!(cert.len(), 3);
        assert!(cert.windows(2).all(|w| w[0].signer < w[1].signer));
    }
}
