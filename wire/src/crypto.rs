//! Keys, signatures over domain-separated bytes, and the verification rule that gives the same
//! verdict whether a signature is checked alone or in a batch (by [`crate::batch`]).
//!
//! Every signature covers [`SignedBytes`]: a domain tag, then the [`CommitteeId`] of the
//! committee the signer acts in, then the transfer in a fixed layout written by hand (no
//! encoder that could fail). The committee id binds a signature to one committee: an order
//! or a vote made for committee A does not verify in committee B, even when B shares members
//! with A (the same names with other weights, or one member more).
//!
//! ed25519 verifiers disagree on edge cases (small-order keys and `R`, non-canonical encodings,
//! points with a torsion component), and a cofactorless batch equation with random
//! coefficients can accept what the single equation rejects. We use one rule on both paths:
//! - cheap checks first, applied to every signature whichever path checks it: keys are
//!   validated once, when a [`PublicKey`] is built (canonical encoding, not of small order);
//!   every signature's `R` must be canonically encoded and not one of the eight small-order
//!   points (checked on its bytes), and `s` must be a canonical scalar;
//! - then the cofactored equation `[8]([s]B - R - [k]A) = 0` with `k = SHA-512(R || A || M)`
//!   (ZIP-215's), alone or in a batch with 128-bit coefficients derived from every input.
//!   Multiplying by the cofactor removes any torsion component, so a batch and a single check
//!   give the same verdict on every signature (a batch wrongly accepts with probability
//!   2^-128 at most); a sending and a receiving shard can never disagree on a certificate.

use crate::base_types::CommitteeId;
use crate::base_types::{AccountId, AuthorityName, UserData};
use aws_lc_rs::signature::Ed25519KeyPair;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use std::fmt;
use thiserror::Error;

/// An ed25519 signature as it travels: 64 bytes, encoded without a length prefix.
///
/// Any 64 bytes decode; whether they form a valid signature is decided only by verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    fn r_bytes(&self) -> &[u8; 32] {
        self.0.first_chunk::<32>().unwrap_or(&[0; 32])
    }

    fn s_bytes(&self) -> &[u8; 32] {
        self.0.last_chunk::<32>().unwrap_or(&[0; 32])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..4]))
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serializer.serialize_str(&hex::encode(self.0));
        }
        // Raw bytes, written by words (`fixed_bytes`).
        crate::fixed_bytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut bytes = [0u8; 64];
            hex::decode_to_slice(text, &mut bytes).map_err(serde::de::Error::custom)?;
            return Ok(Signature(bytes));
        }
        crate::fixed_bytes::deserialize(deserializer).map(Signature)
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The key bytes are not a canonical encoding of a curve point.
    #[error("public key is not a canonical curve point")]
    MalformedKey,
    /// The key is of small order, so anyone could sign under it.
    #[error("public key is weak (small order)")]
    WeakKey,
    /// The signature's `R` is non-canonical or of small order.
    #[error("signature has a non-canonical or small-order R")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("signature does not verify")]
    InvalidSignature,
    /// The operating system could not provide randomness for a new key.
    #[error("no randomness available for key generation")]
    NoRandomness,
}

/// Field prime p = 2^255 - 19, little-endian, for canonical-encoding checks.
const FIELD_PRIME: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Encodings of the eight points of small order (and the two non-canonical sign-bit variants
/// with x = 0 that still have y < p). Pinned against curve25519-dalek by a test below.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 10] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    hex32("0100000000000000000000000000000000000000000000000000000000000080"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
];

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(bytes[2 * i]) << 4 | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// Whether the y-coordinate in `encoding` (the low 255 bits) is below the field prime.
fn y_is_canonical(encoding: &[u8; 32]) -> bool {
    // Compare little-endian numbers from the most significant byte, ignoring the sign bit.
    for i in (0..32).rev() {
        let byte = if i == 31 {
            encoding[i] & 0x7f
        } else {
            encoding[i]
        };
        if byte != FIELD_PRIME[i] {
            return byte < FIELD_PRIME[i];
        }
    }
    false
}

/// Cheap byte-level checks on a signature shared by the single and the batch path: `R`
/// canonical and not of small order, `s` a canonical scalar.
pub(crate) fn check_bytes(signature: &Signature) -> Result<(), CryptoError> {
    let r = signature.r_bytes();
    if !y_is_canonical(r) || SMALL_ORDER_ENCODINGS.contains(r) {
        return Err(CryptoError::MalformedSignature);
    }
    if Scalar::from_canonical_bytes(*signature.s_bytes())
        .is_none()
        .into()
    {
        return Err(CryptoError::MalformedSignature);
    }
    Ok(())
}

/// A signature that passed [`check_bytes`], with its points and scalars.
pub(crate) struct Equation {
    r: EdwardsPoint,
    a: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    /// `SHA-512(R || A || M)`, which `k` reduces: binds the batch's coefficients to R, A, M.
    hram: [u8; 64],
}

impl Equation {
    /// Decompresses `R` and computes the challenge; `None` when `R` is not a curve point.
    pub(crate) fn new(key: &VerifyingKey, message: &[u8], signature: &Signature) -> Option<Self> {
        let r = CompressedEdwardsY(*signature.r_bytes()).decompress()?;
        let s = Option::from(Scalar::from_canonical_bytes(*signature.s_bytes()))?;
        let mut hash = Sha512::new();
        hash.update(signature.r_bytes());
        hash.update(key.as_bytes());
        hash.update(message);
        let hram: [u8; 64] = hash.finalize().into();
        Some(Self {
            r,
            a: key.to_edwards(),
            s,
            k: Scalar::from_bytes_mod_order_wide(&hram),
            hram,
        })
    }

    /// `[8]([s]B - R - [k]A) = 0`.
    fn holds(&self) -> bool {
        let expected =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        (expected - self.r).mul_by_cofactor().is_identity()
    }
}

/// Whether every equation holds, checked as one: `[8](sum z_i R_i + sum z_i k_i A_i -
/// (sum z_i s_i) B) = 0` with 128-bit coefficients `z_i` derived from every input (so nobody
/// can choose signatures after seeing them).
pub(crate) fn all_hold(equations: &[Equation]) -> bool {
    let mut transcript = Sha512::new();
    transcript.update(b"fastpay cofactored batch v1");
    for e in equations {
        transcript.update(e.hram);
        transcript.update(e.s.as_bytes());
    }
    let seed = transcript.finalize();
    let mut z = Vec::with_capacity(equations.len());
    let mut block = 0u64;
    while z.len() < equations.len() {
        let mut hash = Sha512::new();
        hash.update(seed);
        hash.update(block.to_le_bytes());
        block += 1;
        let bytes: [u8; 64] = hash.finalize().into();
        for chunk in bytes.chunks_exact(16) {
            if z.len() < equations.len() {
                let mut wide = [0u8; 16];
                wide.copy_from_slice(chunk);
                z.push(Scalar::from(u128::from_le_bytes(wide)));
            }
        }
    }
    let b_coefficient: Scalar = equations.iter().zip(&z).map(|(e, z)| z * e.s).sum();
    let scalars = std::iter::once(-b_coefficient)
        .chain(z.iter().copied())
        .chain(equations.iter().zip(&z).map(|(e, z)| z * e.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(equations.iter().map(|e| e.r))
        .chain(equations.iter().map(|e| e.a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// One signature under the shared rule.
pub(crate) fn verify_one(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    check_bytes(signature).is_ok()
        && Equation::new(key, message, signature).is_some_and(|e| e.holds())
}

/// A validated ed25519 public key, decompressed once so that verifying under it is cheap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Validates `bytes`: canonical and not of small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        if !y_is_canonical(bytes) || SMALL_ORDER_ENCODINGS.contains(bytes) {
            return Err(CryptoError::MalformedKey);
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::MalformedKey)?;
        if key.is_weak() {
            return Err(CryptoError::WeakKey);
        }
        Ok(Self(key))
    }

    /// The key of an account.
    pub fn of_account(account: &AccountId) -> Result<Self, CryptoError> {
        Self::from_bytes(&account.0)
    }

    /// The key of an authority.
    pub fn of_authority(name: &AuthorityName) -> Result<Self, CryptoError> {
        Self::from_bytes(&name.0)
    }

    /// The 32 encoded bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The decompressed key, for the batch equation.
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// Checks one signature on `message` under this key.
    pub fn verify(&self, message: &SignedBytes, signature: &Signature) -> Result<(), CryptoError> {
        check_bytes(signature)?;
        match verify_one(&self.0, message.as_slice(), signature) {
            true => Ok(()),
            false => Err(CryptoError::InvalidSignature),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0.as_bytes()[..4]))
    }
}

/// An ed25519 signing key. Its `Debug` never shows the secret.
///
/// Signs with aws-lc-rs (its assembly makes signing about 2.5 times faster than dalek's on
/// the machines we measured; ed25519 signatures are deterministic, so both give the same bytes,
/// which a test checks). Keys, verification and batch verification stay with dalek.
pub struct KeyPair(SigningKey, Option<Ed25519KeyPair>);

impl KeyPair {
    /// A key pair derived from a 32-byte secret seed (deterministic; for tests and key files).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        // aws-lc-rs refuses only seeds of the wrong length; dalek signs if it ever did.
        Self(
            SigningKey::from_bytes(&seed),
            Ed25519KeyPair::from_seed_unchecked(&seed).ok(),
        )
    }

    /// A fresh key pair from the operating system's randomness.
    ///
    /// Retries in the rare case (about 1 in 2^250) that the key would be refused as weak.
    pub fn generate() -> Result<Self, CryptoError> {
        loop {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|_| CryptoError::NoRandomness)?;
            let pair = Self::from_seed(seed);
            if pair.public_key().is_ok() {
                return Ok(pair);
            }
        }
    }

    /// The secret seed, for writing a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half as raw bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The public half, validated.
    pub fn public_key(&self) -> Result<PublicKey, CryptoError> {
        PublicKey::from_bytes(&self.public_bytes())
    }

    /// The account this key owns.
    pub fn account(&self) -> AccountId {
        AccountId(self.public_bytes())
    }

    /// The authority name this key votes as.
    pub fn authority(&self) -> AuthorityName {
        AuthorityName(self.public_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &SignedBytes) -> Signature {
        if let Some(signer) = &self.1
            && let Ok(bytes) = <[u8; 64]>::try_from(signer.sign(message.as_slice()).as_ref())
        {
            return Signature(bytes);
        }
        self.sign_with_dalek(message)
    }

    /// Signs `message` with dalek: the reference that the fast path must match byte for byte.
    pub fn sign_with_dalek(&self, message: &SignedBytes) -> Signature {
        Signature(self.0.sign(message.as_slice()).to_bytes())
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", hex::encode(&self.public_bytes()[..4]))
    }
}

/// What a signature commits to; each kind has its own domain tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Domain {
    /// An account owner ordering a transfer.
    TransferOrder,
    /// An authority voting for a transfer order.
    Vote,
}

impl Domain {
    /// Every domain, for sizing the signed bytes: a new domain must be listed here too, or
    /// its tag might not fit.
    const ALL: [Domain; 2] = [Domain::TransferOrder, Domain::Vote];

    /// The tag prepended to the signed bytes. Tags are NUL-terminated so no tag is a prefix of
    /// another. `v2`: the bytes after the tag are the committee id and the fixed transfer
    /// layout of [`SignedBytes`]; `v1` tags covered the codec's encoding of the transfer alone.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::TransferOrder => b"fastpay/order/v2\0",
            Domain::Vote => b"fastpay/vote/v2\0",
        }
    }
}

/// The tag of a batch of votes' root ([`SignedBytes::for_vote_root`]); NUL-terminated like
/// the [`Domain`] tags and a prefix of none of them.
pub const VOTE_ROOT_TAG: &[u8] = b"fastpay/vote-root/v1\0";

// The root's bytes (tag, committee id, root) fit the buffer sized for transfers.
const _: () = assert!(VOTE_ROOT_TAG.len() + 32 + 32 <= SIGNED_BYTES_CAPACITY);

/// The length of the longest domain tag.
const LONGEST_TAG: usize = {
    let mut longest = 0;
    let mut i = 0;
    while i < Domain::ALL.len() {
        let len = Domain::ALL[i].tag().len();
        if len > longest {
            longest = len;
        }
        i += 1;
    }
    longest
};

/// Bytes of a committee id in the signed bytes.
const COMMITTEE_ID_LEN: usize = size_of::<CommitteeId>();

/// Bytes of an account id (sender, recipient).
const ACCOUNT_LEN: usize = size_of::<AccountId>();

/// Bytes of the user data's presence marker (0 none, 1 present).
const USER_DATA_MARKER_LEN: usize = 1;

/// Bytes of user data when present.
const USER_DATA_LEN: usize = size_of::<UserData>();

/// Bytes of a transfer in its signed layout when it carries user data: sender, recipient,
/// amount, sequence number, user data marker and user data.
const LONGEST_TRANSFER: usize = ACCOUNT_LEN
    + ACCOUNT_LEN
    + size_of::<u64>()
    + size_of::<u64>()
    + USER_DATA_MARKER_LEN
    + USER_DATA_LEN;

/// Exactly the longest signed bytes: longest tag, committee id, longest transfer.
const SIGNED_BYTES_CAPACITY: usize = LONGEST_TAG + COMMITTEE_ID_LEN + LONGEST_TRANSFER;

/// The canonical bytes a signature covers, in a fixed layout that is written by hand and
/// cannot fail:
///
/// | part            | bytes                                            |
/// |-----------------|--------------------------------------------------|
/// | domain tag      | [`Domain::tag`], NUL-terminated                  |
/// | committee id    | 32                                               |
/// | sender          | 32                                               |
/// | recipient       | 32                                               |
/// | amount          | 8, `u64` little-endian                           |
/// | sequence number | 8, `u64` little-endian                           |
/// | user data       | 1 byte `0` if none, or `1` followed by 32 bytes  |
///
/// Lives on the stack so signing and verifying allocate nothing.
#[derive(Clone, Copy)]
pub struct SignedBytes {
    buf: [u8; SIGNED_BYTES_CAPACITY],
    len: usize,
}

impl SignedBytes {
    /// The bytes a batch signature covers: [`VOTE_ROOT_TAG`], the committee id, and the root
    /// of the batch's Merkle tree (see [`crate::merkle`]).
    pub fn for_vote_root(committee: &CommitteeId, root: &[u8; 32]) -> Self {
        let mut bytes = Self::tagged(VOTE_ROOT_TAG);
        bytes.put(&committee.0);
        bytes.put(root);
        bytes
    }

    /// Bytes that start with the domain tag `tag`, for the constructors to go on with [`put`](Self::put).
    pub(crate) fn tagged(tag: &[u8]) -> Self {
        let mut bytes = Self {
            buf: [0; SIGNED_BYTES_CAPACITY],
            len: 0,
        };
        bytes.put(tag);
        bytes
    }

    /// Appends `part`. The capacity is the sum of the longest case of every part written by
    /// [`for_transfer`](Self::for_transfer) (beside the messages), each sized from its type,
    /// so this stays in bounds.
    pub(crate) fn put(&mut self, part: &[u8]) {
        let end = self.len + part.len();
        self.buf[self.len..end].copy_from_slice(part);
        self.len = end;
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Debug for SignedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedBytes({})", hex::encode(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base_types::{Amount, SequenceNumber};
    use crate::messages::Transfer;
    use curve25519_dalek::edwards::CompressedEdwardsY;

    /// A committee id for tests that are about signatures, not committees.
    const COMMITTEE: CommitteeId = CommitteeId([0xc0; 32]);

    fn transfer(n: u64) -> Transfer {
        Transfer {
            sender: AccountId([1; 32]),
            recipient: AccountId([2; 32]),
            amount: Amount::new(n),
            sequence_number: SequenceNumber::new(n),
            user_data: None,
        }
    }

    #[test]
    fn small_order_table_is_the_eight_torsion_subgroup() {
        let mut canonical = Vec::new();
        for encoding in &SMALL_ORDER_ENCODINGS {
            let point = CompressedEdwardsY(*encoding).decompress().unwrap();
            assert!(point.is_small_order(), "{}", hex::encode(encoding));
            if point.compress().0 == *encoding {
                canonical.push(point);
            }
        }
        assert_eq!(canonical.len(), 8);
        // Eight distinct small-order points closed under addition are all of them.
        for a in &canonical {
            for b in &canonical {
                assert!(canonical.contains(&(a + b)));
            }
        }
    }

    #[test]
    fn fast_signing_gives_dalek_s_bytes() {
        for seed in 0..64u8 {
            let key = KeyPair::from_seed([seed.wrapping_mul(37); 32]);
            assert!(key.1.is_some());
            let mut data = transfer(u64::from(seed) * 1_000_003);
            if seed % 2 == 0 {
                data.user_data = Some(UserData([seed; 32]));
            }
            for bytes in [
                SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &data),
                SignedBytes::for_transfer(Domain::TransferOrder, &COMMITTEE, &data),
                SignedBytes::for_vote_root(&COMMITTEE, &[seed; 32]),
            ] {
                let fast = key.sign(&bytes);
                assert_eq!(fast, key.sign_with_dalek(&bytes));
                assert_eq!(key.public_key().unwrap().verify(&bytes, &fast), Ok(()));
            }
        }
    }

    #[test]
    fn domains_separate_signatures() {
        let key = KeyPair::from_seed([3; 32]);
        let public = key.public_key().unwrap();
        let order = SignedBytes::for_transfer(Domain::TransferOrder, &COMMITTEE, &transfer(1));
        let vote = SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &transfer(1));
        let signature = key.sign(&order);
        assert_eq!(public.verify(&order, &signature), Ok(()));
        assert_eq!(
            public.verify(&vote, &signature),
            Err(CryptoError::InvalidSignature)
        );
    }

    #[test]
    fn longest_transfer_fits_signed_bytes() {
        let mut longest = transfer(u64::MAX);
        longest.user_data = Some(UserData([0xff; 32]));
        let tag = Domain::TransferOrder.tag();
        assert_eq!(tag.len(), LONGEST_TAG);
        let bytes = SignedBytes::for_transfer(Domain::TransferOrder, &COMMITTEE, &longest);
        assert_eq!(
            bytes.as_slice().len(),
            tag.len() + 32 + 32 + 32 + 8 + 8 + 1 + 32
        );
        assert_eq!(bytes.as_slice().len(), SIGNED_BYTES_CAPACITY);
    }

    #[test]
    fn signed_bytes_have_the_fixed_layout() {
        let committee = CommitteeId([0x5c; 32]);
        for domain in Domain::ALL {
            let tag = domain.tag();
            let mut with_data = transfer(0x0102_0304_0506_0708);
            with_data.amount = Amount::new(0x1112_1314_1516_1718);
            with_data.user_data = Some(UserData([0xee; 32]));
            let without_data = Transfer {
                user_data: None,
                ..with_data
            };
            let mut expected = Vec::new();
            expected.extend_from_slice(tag);
            expected.extend_from_slice(&[0x5c; 32]);
            expected.extend_from_slice(&[1; 32]);
            expected.extend_from_slice(&[2; 32]);
            expected.extend_from_slice(&[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
            expected.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
            let common = expected.len();
            assert_eq!(common, tag.len() + 32 + 32 + 32 + 8 + 8);

            let mut none = expected.clone();
            none.push(0);
            let bytes = SignedBytes::for_transfer(domain, &committee, &without_data);
            assert!(bytes.as_slice().starts_with(tag));
            assert_eq!(&bytes.as_slice()[tag.len()..tag.len() + 32], &committee.0);
            assert_eq!(bytes.as_slice().len(), common + 1);
            assert_eq!(bytes.as_slice(), &none[..]);

            let mut some = expected;
            some.push(1);
            some.extend_from_slice(&[0xee; 32]);
            let bytes = SignedBytes::for_transfer(domain, &committee, &with_data);
            assert!(bytes.as_slice().starts_with(tag));
            assert_eq!(&bytes.as_slice()[tag.len()..tag.len() + 32], &committee.0);
            assert_eq!(bytes.as_slice().len(), common + 1 + 32);
            assert_eq!(bytes.as_slice(), &some[..]);
        }
    }

    #[test]
    fn committees_separate_signatures() {
        let key = KeyPair::from_seed([3; 32]);
        let public = key.public_key().unwrap();
        let here = SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &transfer(1));
        let there = SignedBytes::for_transfer(Domain::Vote, &CommitteeId([0xc1; 32]), &transfer(1));
        let signature = key.sign(&here);
        assert_eq!(public.verify(&here, &signature), Ok(()));
        assert_eq!(
            public.verify(&there, &signature),
            Err(CryptoError::InvalidSignature)
        );
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        for encoding in &SMALL_ORDER_ENCODINGS {
            assert!(PublicKey::from_bytes(encoding).is_err());
        }
        // A non-canonical y (p + 2).
        let mut non_canonical = FIELD_PRIME;
        non_canonical[0] = 0xef;
        assert!(PublicKey::from_bytes(&non_canonical).is_err());
    }
}
