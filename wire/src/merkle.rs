//! Votes signed a batch at a time: an authority hashes each vote of a round into a Merkle
//! tree and signs the root once; each vote then carries the root's signature, its leaf index
//! and its authentication path ([`MerkleProof`]). Verifiers remember the roots they have
//! checked ([`RootCache`]), so one signature check serves the whole batch.
//!
//! Hashing follows RFC 6962's domain separation: a leaf is `BLAKE3(0x00 || vote bytes)`, where
//! the vote bytes are exactly the [`SignedBytes`] a per-vote signature would cover (domain
//! tag, committee id, transfer), and an inner node is `BLAKE3(0x01 || left || right)`. A leaf
//! therefore never passes for a node nor a node for a leaf, so a path of the wrong length
//! cannot reach a signed root. A level with an odd number of nodes pairs its last node with
//! [`EMPTY`] (32 zero bytes, which no leaf or node hash can feasibly equal). The root is
//! signed over its own domain ([`SignedBytes::for_vote_root`]), bound to the committee like
//! every other signature.
//!
//! A vote's signature on the wire is a [`VoteSignature`]: one byte (0 per-vote, 1 batched)
//! then either the 64-byte signature or the proof (root signature, index byte, depth byte,
//! `depth` 32-byte siblings from the leaf up). Which form an authority sends is the committee's
//! choice per authority ([`VoteScheme`]); a vote in the other form is refused.

use crate::base_types::{AuthorityName, CommitteeId};
use crate::crypto::{CryptoError, KeyPair, PublicKey, Signature, SignedBytes};
use crate::fixed_bytes::Words32;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// A 32-byte BLAKE3 hash: a leaf, an inner node or a root.
pub type Digest = [u8; 32];

/// The deepest tree a proof may describe: a root covers at most [`MAX_LEAVES`] votes. Six
/// levels hold the 64 votes of one full receive batch (`BATCH`), and keep a batched vote's
/// extra bytes (194 at most) small enough for orders to pay for their replies with padding.
pub const MAX_DEPTH: usize = 6;

/// The most votes one signed root covers.
pub const MAX_LEAVES: usize = 1 << MAX_DEPTH;

/// The filler paired with the last node of a level that has an odd number of nodes.
pub const EMPTY: Digest = [0; 32];

/// Prefix of a leaf hash's input (RFC 6962).
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an inner node hash's input (RFC 6962).
const NODE_PREFIX: u8 = 0x01;

/// Encoded bytes of a per-vote [`VoteSignature`]: the form byte and the signature.
pub const SINGLE_VOTE_SIGNATURE_LEN: usize = 1 + 64;
/// Encoded bytes of the largest batched [`VoteSignature`]: the form byte, the root signature,
/// index and depth bytes, and [`MAX_DEPTH`] siblings.
pub const MAX_BATCHED_VOTE_SIGNATURE_LEN: usize = 1 + 64 + 1 + 1 + 32 * MAX_DEPTH;

/// How an authority signs its votes: a committee-file setting per authority. `server
/// generate` writes `Merkle` unless told otherwise; the `Default` is what an entry without the
/// field means (`Single`, as every entry written before batched votes existed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteScheme {
    /// One ed25519 signature per vote (committee entries without a `votes` field).
    #[default]
    Single,
    /// One ed25519 signature per batch of votes, over a Merkle root; each vote carries its path
    /// (what `server generate` writes by default).
    Merkle,
}

impl VoteScheme {
    /// Padding (bytes) that a request to an authority of this scheme carries so that a vote in
    /// this scheme, which is larger than a per-vote one by at most this much, fits within the
    /// request that asked for it (see `codec`'s padding).
    pub const fn request_padding(self) -> u16 {
        match self {
            VoteScheme::Single => 0,
            VoteScheme::Merkle => {
                (MAX_BATCHED_VOTE_SIGNATURE_LEN - SINGLE_VOTE_SIGNATURE_LEN) as u16
            }
        }
    }

    /// The largest signature an authority of this scheme gives a vote (zero bytes; for
    /// batched votes, a proof of the deepest path): what sizes whatever must hold one.
    pub fn largest_signature(self) -> VoteSignature {
        let signature = Signature([0; 64]);
        match self {
            VoteScheme::Single => VoteSignature::Single(signature),
            VoteScheme::Merkle => VoteSignature::Batched(MerkleProof {
                root_signature: signature,
                index: 0,
                depth: MAX_DEPTH as u8,
                path: [EMPTY; MAX_DEPTH],
            }),
        }
    }

    /// Whether this is what a committee entry without the field means (the file leaves it out).
    pub fn is_default(&self) -> bool {
        *self == VoteScheme::Single
    }
}

impl fmt::Display for VoteScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteScheme::Single => "single",
            VoteScheme::Merkle => "merkle",
        })
    }
}

impl std::str::FromStr for VoteScheme {
    type Err = VoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(VoteScheme::Single),
            "merkle" => Ok(VoteScheme::Merkle),
            _ => Err(VoteError::UnknownScheme),
        }
    }
}

/// Why a vote's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VoteError {
    /// The vote's form is not the one the committee says its authority uses.
    #[error("vote signed per {got} where the committee says {expected}")]
    WrongScheme {
        /// The authority's scheme in the committee.
        expected: VoteScheme,
        /// The form the vote came in.
        got: VoteScheme,
    },
    /// The leaf index does not fit a tree of the path's depth.
    #[error("leaf index {index} out of range for a path of depth {depth}")]
    IndexOutOfRange {
        /// The claimed index.
        index: u8,
        /// The path's length.
        depth: u8,
    },
    /// The signer is not in the committee.
    #[error("signer is not in the committee")]
    UnknownSigner,
    /// The (root) signature does not verify: a bad signature, or a path or index that leads
    /// to a root the authority never signed.
    #[error("vote signature: {0}")]
    Signature(#[from] CryptoError),
    /// A vote scheme name other than `single` or `merkle`.
    #[error("unknown vote scheme (expected single or merkle)")]
    UnknownScheme,
}

/// The hash of one vote's bytes: a leaf.
pub fn leaf_hash(vote_bytes: &SignedBytes) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(vote_bytes.as_slice());
    *hasher.finalize().as_bytes()
}

/// The hash of two children: an inner node.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    *blake3::hash(&input).as_bytes()
}

/// Proof that a vote is leaf `index` of a tree whose root the authority signed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MerkleProof {
    /// The authority's signature over [`SignedBytes::for_vote_root`] of the root.
    pub root_signature: Signature,
    index: u8,
    depth: u8,
    path: [Digest; MAX_DEPTH],
}

impl MerkleProof {
    /// A proof from its parts; `None` when the path is longer than [`MAX_DEPTH`]. The index
    /// is checked when the proof is verified.
    pub fn new(root_signature: Signature, index: u8, path: &[Digest]) -> Option<Self> {
        if path.len() > MAX_DEPTH {
            return None;
        }
        let mut siblings = [EMPTY; MAX_DEPTH];
        siblings[..path.len()].copy_from_slice(path);
        Some(Self {
            root_signature,
            index,
            depth: path.len() as u8,
            path: siblings,
        })
    }

    /// `key`'s proof for `vote_bytes` as the one vote of its batch: the root is the leaf,
    /// signed for `committee`, and the path is empty.
    pub(crate) fn sign_alone(
        vote_bytes: &SignedBytes,
        committee: &CommitteeId,
        key: &KeyPair,
    ) -> Self {
        let leaf = leaf_hash(vote_bytes);
        Self {
            root_signature: key.sign(&SignedBytes::for_vote_root(committee, &leaf)),
            index: 0,
            depth: 0,
            path: [EMPTY; MAX_DEPTH],
        }
    }

    /// The leaf index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The siblings from the leaf up.
    pub fn path(&self) -> &[Digest] {
        &self.path[..usize::from(self.depth)]
    }

    /// The root that `leaf` and this path lead to; refuses an index that does not fit the
    /// path's depth (each index names one position, so the encoding stays canonical).
    pub fn root(&self, leaf: &Digest) -> Result<Digest, VoteError> {
        self.root_by(leaf, node_hash)
    }

    /// [`root`](Self::root), taking inner nodes from `nodes` where it computed them before:
    /// the same root, with fewer hashes when other paths of the same tree went through it.
    pub fn root_cached(&self, leaf: &Digest, nodes: &mut NodeCache) -> Result<Digest, VoteError> {
        self.root_by(leaf, |left, right| nodes.node_hash(left, right))
    }

    fn root_by(
        &self,
        leaf: &Digest,
        mut hash: impl FnMut(&Digest, &Digest) -> Digest,
    ) -> Result<Digest, VoteError> {
        let index = usize::from(self.index);
        if index >> self.depth != 0 {
            return Err(VoteError::IndexOutOfRange {
                index: self.index,
                depth: self.depth,
            });
        }
        let mut node = *leaf;
        for (level, sibling) in self.path().iter().enumerate() {
            node = if (index >> level) & 1 == 0 {
                hash(&node, sibling)
            } else {
                hash(sibling, &node)
            };
        }
        Ok(node)
    }
}

impl fmt::Debug for MerkleProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MerkleProof({:?}, leaf {} of depth {})",
            self.root_signature, self.index, self.depth
        )
    }
}

/// A vote's signature as it travels: per vote, or the batch's root signature and a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoteSignature {
    /// A signature over the vote's [`SignedBytes`].
    Single(Signature),
    /// A signature over a root, and the vote's place under it.
    Batched(MerkleProof),
}

impl VoteSignature {
    /// The scheme this form belongs to.
    pub fn scheme(&self) -> VoteScheme {
        match self {
            VoteSignature::Single(_) => VoteScheme::Single,
            VoteSignature::Batched(_) => VoteScheme::Merkle,
        }
    }

    /// The form byte and the bytes after it, as the wire carries them.
    fn to_bytes(self, out: &mut Vec<u8>) {
        match self {
            VoteSignature::Single(signature) => {
                out.push(0);
                out.extend_from_slice(&signature.0);
            }
            VoteSignature::Batched(proof) => {
                out.push(1);
                out.extend_from_slice(&proof.root_signature.0);
                out.push(proof.index);
                out.push(proof.depth);
                for sibling in proof.path() {
                    out.extend_from_slice(sibling);
                }
            }
        }
    }

    /// Parses [`to_bytes`](Self::to_bytes) output; every byte must be used.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&form, rest) = bytes.split_first()?;
        let (signature, rest) = rest.split_first_chunk::<64>()?;
        let signature = Signature(*signature);
        match form {
            0 if rest.is_empty() => Some(VoteSignature::Single(signature)),
            1 => {
                let (&index, rest) = rest.split_first()?;
                let (&depth, rest) = rest.split_first()?;
                let depth = usize::from(depth);
                if depth > MAX_DEPTH || rest.len() != depth * 32 {
                    return None;
                }
                let mut path = [EMPTY; MAX_DEPTH];
                for (slot, chunk) in path.iter_mut().zip(rest.chunks_exact(32)) {
                    slot.copy_from_slice(chunk);
                }
                MerkleProof::new(signature, index, &path[..depth]).map(VoteSignature::Batched)
            }
            _ => None,
        }
    }
}

impl Serialize for VoteSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        if serializer.is_human_readable() {
            // A per-vote signature stays the plain hex string wallets always held.
            return match self {
                VoteSignature::Single(signature) => signature.serialize(serializer),
                VoteSignature::Batched(_) => {
                    let mut bytes = Vec::with_capacity(MAX_BATCHED_VOTE_SIGNATURE_LEN);
                    self.to_bytes(&mut bytes);
                    serializer.serialize_str(&hex::encode(bytes))
                }
            };
        }
        // A tuple has no length prefix: the form byte and the depth byte say what follows.
        let len = match self {
            VoteSignature::Single(_) => 2,
            VoteSignature::Batched(proof) => 5 + usize::from(proof.depth),
        };
        let mut tuple = serializer.serialize_tuple(len)?;
        match self {
            VoteSignature::Single(signature) => {
                tuple.serialize_element(&0u8)?;
                tuple.serialize_element(signature)?;
            }
            VoteSignature::Batched(proof) => {
                tuple.serialize_element(&1u8)?;
                tuple.serialize_element(&proof.root_signature)?;
                tuple.serialize_element(&proof.index)?;
                tuple.serialize_element(&proof.depth)?;
                for sibling in proof.path() {
                    tuple.serialize_element(&Words32(*sibling))?;
                }
            }
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for VoteSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FormVisitor;
        impl<'de> serde::de::Visitor<'de> for FormVisitor {
            type Value = VoteSignature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a vote signature: a form byte, then a signature or a Merkle proof")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<VoteSignature, A::Error> {
                use serde::de::Error;
                let form: u8 = seq
                    .next_element()?
                    .ok_or_else(|| Error::invalid_length(0, &self))?;
                let signature: Signature = seq
                    .next_element()?
                    .ok_or_else(|| Error::invalid_length(1, &self))?;
                match form {
                    0 => Ok(VoteSignature::Single(signature)),
                    1 => {
                        let index: u8 = seq
                            .next_element()?
                            .ok_or_else(|| Error::invalid_length(2, &self))?;
                        let depth: u8 = seq
                            .next_element()?
                            .ok_or_else(|| Error::invalid_length(3, &self))?;
                        let depth = usize::from(depth);
                        if depth > MAX_DEPTH {
                            return Err(Error::custom("Merkle path too deep"));
                        }
                        let mut path = [EMPTY; MAX_DEPTH];
                        for (i, slot) in path.iter_mut().take(depth).enumerate() {
                            let sibling: Words32 = seq
                                .next_element()?
                                .ok_or_else(|| Error::invalid_length(4 + i, &self))?;
                            *slot = sibling.0;
                        }
                        MerkleProof::new(signature, index, &path[..depth])
                            .map(VoteSignature::Batched)
                            .ok_or_else(|| Error::custom("Merkle path too deep"))
                    }
                    _ => Err(Error::custom("unknown vote signature form")),
                }
            }
        }
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let bytes = hex::decode(text.trim()).map_err(serde::de::Error::custom)?;
            if let Ok(signature) = <[u8; 64]>::try_from(bytes.as_slice()) {
                return Ok(VoteSignature::Single(Signature(signature)));
            }
            return VoteSignature::from_bytes(&bytes)
                .filter(|s| matches!(s, VoteSignature::Batched(_)))
                .ok_or_else(|| serde::de::Error::custom("malformed batched vote signature"));
        }
        // The length is an upper bound: the form and depth bytes end the tuple early.
        deserializer.deserialize_tuple(4 + MAX_DEPTH, FormVisitor)
    }
}

/// Builds the tree of one batch of votes: hashes the leaves, signs the root, and hands out
/// each vote's proof. Reuse one builder across batches to keep its buffers.
#[derive(Debug, Default)]
pub struct TreeBuilder {
    /// Every level, leaves first, each padded to an even length with [`EMPTY`] except the root.
    levels: Vec<Vec<Digest>>,
}

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the tree over `leaves` (at most [`MAX_LEAVES`], at least one) and signs its root
    /// with `key` for `committee`; returns the root signature, then [`proof`](Self::proof)
    /// gives each leaf's proof. `None` for an empty or oversized batch.
    pub fn sign(
        &mut self,
        leaves: &[Digest],
        committee: &CommitteeId,
        key: &KeyPair,
    ) -> Option<Signature> {
        let root = self.build(leaves)?;
        Some(key.sign(&SignedBytes::for_vote_root(committee, &root)))
    }

    /// Builds the tree over `leaves` and returns its root.
    pub fn build(&mut self, leaves: &[Digest]) -> Option<Digest> {
        if leaves.is_empty() || leaves.len() > MAX_LEAVES {
            return None;
        }
        let depth = leaves.len().next_power_of_two().trailing_zeros() as usize;
        self.levels.resize_with(depth + 1, Vec::new);
        self.levels[0].clear();
        self.levels[0].extend_from_slice(leaves);
        for level in 0..depth {
            let (lower, upper) = self.levels.split_at_mut(level + 1);
            let below = &mut lower[level];
            if below.len() % 2 == 1 {
                below.push(EMPTY);
            }
            let above = &mut upper[0];
            above.clear();
            above.extend(
                below
                    .chunks_exact(2)
                    .map(|pair| node_hash(&pair[0], &pair[1])),
            );
        }
        self.levels[depth].first().copied()
    }

    /// The proof of leaf `index` of the last tree built, carrying `root_signature`.
    pub fn proof(&self, index: usize, root_signature: Signature) -> Option<MerkleProof> {
        let depth = self.levels.len().checked_sub(1)?;
        if index >= self.levels.first()?.len() {
            return None;
        }
        let mut path = [EMPTY; MAX_DEPTH];
        for (level, slot) in path.iter_mut().take(depth).enumerate() {
            *slot = *self.levels[level].get((index >> level) ^ 1)?;
        }
        MerkleProof::new(root_signature, u8::try_from(index).ok()?, &path[..depth])
    }
}

/// Inner nodes hashed before, by their children: the paths of one tree's votes share their
/// upper nodes (a tree of 64 leaves has 63 inner nodes, its 64 paths 384 hashes between them),
/// so a verifier following many of them hashes each node about once. A memo of a pure
/// function: every answer is the hash itself, so verdicts do not depend on it. Direct-mapped
/// and of fixed size: a lookup never allocates, and children that land on a taken slot (by
/// chance or by design) only evict its entry. The slots are allocated at the first lookup.
pub struct NodeCache {
    slots: Vec<NodeSlot>,
    capacity: usize,
}

/// One remembered node: its children, as hashed, and itself.
#[derive(Clone, Copy)]
struct NodeSlot {
    children: [u8; 64],
    node: Digest,
}

/// Slots of a [`NodeCache`] (96 bytes each: 1.5 MiB): the nodes of some 250 full trees, more
/// than the certificates of one second at tens of thousands of confirmations carry between
/// the first and the last vote of a tree.
pub const NODE_CACHE_SLOTS: usize = 1 << 14;

impl Default for NodeCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl NodeCache {
    /// An empty cache of [`NODE_CACHE_SLOTS`] (it allocates at its first lookup).
    pub const fn new() -> Self {
        Self::with_slots(NODE_CACHE_SLOTS)
    }

    /// An empty cache of `capacity` slots (at least one).
    pub const fn with_slots(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            capacity: if capacity == 0 { 1 } else { capacity },
        }
    }

    /// The inner node over `left` and `right`: [`node_hash`], remembered.
    pub fn node_hash(&mut self, left: &Digest, right: &Digest) -> Digest {
        if self.slots.is_empty() {
            // Every slot holds a true entry from the start: the children of all zeros.
            let zero = NodeSlot {
                children: [0; 64],
                node: node_hash(&EMPTY, &EMPTY),
            };
            self.slots = vec![zero; self.capacity];
        }
        // Hashes are uniform: eight bytes of each child pick the slot.
        let pick =
            |d: &Digest| u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let slot_index = (pick(left) ^ pick(right).rotate_left(29)) as usize % self.slots.len();
        let slot = &mut self.slots[slot_index];
        if slot.children[..32] == left[..] && slot.children[32..] == right[..] {
            return slot.node;
        }
        let node = node_hash(left, right);
        slot.children[..32].copy_from_slice(left);
        slot.children[32..].copy_from_slice(right);
        slot.node = node;
        node
    }
}

/// What identifies a checked root signature: who signed, what, and the signature's bytes.
/// The signature is part of the key so that a cached root never lets through a vote whose
/// own signature bytes a fresh verifier would refuse: every verifier gives every vote the
/// same verdict, with or without a cache.
pub type RootKey = (AuthorityName, Digest, [u8; 64]);

/// Roots whose signatures verified, so that each batch's signature is checked once per
/// verifier. Bounded: when full it is cleared, which costs at most one more check per root.
#[derive(Debug)]
pub struct RootCache {
    verified: FxHashSet<RootKey>,
    capacity: usize,
}

/// Roots a verifier remembers before it starts over. Every authority signs about one root per
/// shard per receive round (of the order of a thousand a second per shard under load), and a
/// vote's certificate usually comes back within a second: 8192 roots (1 MiB of keys) cover
/// that for a committee of four with two shards each.
pub const ROOT_CACHE_CAPACITY: usize = 8192;

impl Default for RootCache {
    fn default() -> Self {
        Self::with_capacity(ROOT_CACHE_CAPACITY)
    }
}

impl RootCache {
    /// A cache of at most `capacity` roots (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            verified: FxHashSet::default(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` verified before.
    pub fn contains(&self, key: &RootKey) -> bool {
        self.verified.contains(key)
    }

    /// Remembers that `key` verified; starts over when full.
    pub fn insert(&mut self, key: RootKey) {
        if self.verified.len() >= self.capacity {
            self.verified.clear();
        }
        self.verified.insert(key);
    }

    /// How many roots are remembered.
    pub fn len(&self) -> usize {
        self.verified.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.verified.is_empty()
    }
}

/// Verifies one vote signature by `authority` (key `key`, scheme `scheme`) on `vote_bytes`,
/// checking a batched vote's root signature only when `cache` has not seen it verify.
pub fn verify_vote(
    authority: &AuthorityName,
    key: &PublicKey,
    scheme: VoteScheme,
    committee: &CommitteeId,
    vote_bytes: &SignedBytes,
    signature: &VoteSignature,
    cache: Option<&mut RootCache>,
) -> Result<(), VoteError> {
    if signature.scheme() != scheme {
        return Err(VoteError::WrongScheme {
            expected: scheme,
            got: signature.scheme(),
        });
    }
    match signature {
        VoteSignature::Single(signature) => Ok(key.verify(vote_bytes, signature)?),
        VoteSignature::Batched(proof) => {
            let root = proof.root(&leaf_hash(vote_bytes))?;
            let entry = (*authority, root, proof.root_signature.0);
            if cache.as_ref().is_some_and(|c| c.contains(&entry)) {
                return Ok(());
            }
            key.verify(
                &SignedBytes::for_vote_root(committee, &root),
                &proof.root_signature,
            )?;
            if let Some(cache) = cache {
                cache.insert(entry);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base_types::{AccountId, Amount, SequenceNumber};
    use crate::crypto::Domain;
    use crate::messages::Transfer;

    const COMMITTEE: CommitteeId = CommitteeId([0xc0; 32]);

    fn vote_bytes(n: u64) -> SignedBytes {
        SignedBytes::for_transfer(
            Domain::Vote,
            &COMMITTEE,
            &Transfer {
                sender: AccountId([1; 32]),
                recipient: AccountId([2; 32]),
                amount: Amount::new(n + 1),
                sequence_number: SequenceNumber::new(n),
                user_data: None,
            },
        )
    }

    fn signed_batch(n: usize, key: &KeyPair) -> (Vec<SignedBytes>, Vec<MerkleProof>) {
        let bytes: Vec<SignedBytes> = (0..n as u64).map(vote_bytes).collect();
        let leaves: Vec<Digest> = bytes.iter().map(leaf_hash).collect();
        let mut builder = TreeBuilder::new();
        let signature = builder.sign(&leaves, &COMMITTEE, key).unwrap();
        let proofs = (0..n)
            .map(|i| builder.proof(i, signature).unwrap())
            .collect();
        (bytes, proofs)
    }

    fn check(
        key: &KeyPair,
        bytes: &SignedBytes,
        signature: &VoteSignature,
        cache: Option<&mut RootCache>,
    ) -> Result<(), VoteError> {
        verify_vote(
            &key.authority(),
            &key.public_key().unwrap(),
            VoteScheme::Merkle,
            &COMMITTEE,
            bytes,
            signature,
            cache,
        )
    }

    #[test]
    fn every_leaf_of_every_batch_size_verifies() {
        let key = KeyPair::from_seed([7; 32]);
        for n in [1, 2, 3, 5, 8, 13, 33, MAX_LEAVES] {
            let (bytes, proofs) = signed_batch(n, &key);
            let depth = n.next_power_of_two().trailing_zeros() as usize;
            for (b, p) in bytes.iter().zip(&proofs) {
                assert_eq!(p.path().len(), depth);
                assert_eq!(check(&key, b, &VoteSignature::Batched(*p), None), Ok(()));
            }
        }
        assert!(TreeBuilder::new().build(&[]).is_none());
        assert!(TreeBuilder::new().build(&[EMPTY; MAX_LEAVES + 1]).is_none());
    }

    #[test]
    fn the_node_cache_gives_the_roots_hashing_gives() {
        let key = KeyPair::from_seed([7; 32]);
        // One slot (every lookup evicts), a few (collisions), and the default size.
        for mut nodes in [
            NodeCache::with_slots(1),
            NodeCache::with_slots(5),
            NodeCache::new(),
        ] {
            for n in [1, 2, 3, 7, 33, MAX_LEAVES] {
                let (bytes, proofs) = signed_batch(n, &key);
                // Twice over, so the second pass takes every node from the cache it can.
                for _ in 0..2 {
                    for (vote, proof) in bytes.iter().zip(&proofs) {
                        let leaf = leaf_hash(vote);
                        assert_eq!(
                            proof.root_cached(&leaf, &mut nodes).unwrap(),
                            proof.root(&leaf).unwrap()
                        );
                        // Another leaf under the same path leads elsewhere, cached or not.
                        let other = leaf_hash(&vote_bytes(10_000 + n as u64));
                        assert_eq!(
                            proof.root_cached(&other, &mut nodes).unwrap(),
                            proof.root(&other).unwrap()
                        );
                        assert_ne!(proof.root(&other).unwrap(), proof.root(&leaf).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn bad_paths_indexes_signatures_and_forms_are_typed_errors() {
        let key = KeyPair::from_seed([7; 32]);
        let (bytes, proofs) = signed_batch(5, &key);
        let invalid = Err(VoteError::Signature(CryptoError::InvalidSignature));
        // Another vote's bytes under this proof.
        assert_eq!(
            check(&key, &bytes[1], &VoteSignature::Batched(proofs[0]), None),
            invalid
        );
        // A flipped sibling.
        let mut path: Vec<Digest> = proofs[2].path().to_vec();
        path[1][0] ^= 1;
        let bad = MerkleProof::new(proofs[2].root_signature, 2, &path).unwrap();
        assert_eq!(
            check(&key, &bytes[2], &VoteSignature::Batched(bad), None),
            invalid
        );
        // A wrong index in range, and one past the tree.
        let moved = MerkleProof::new(proofs[2].root_signature, 3, proofs[2].path()).unwrap();
        assert_eq!(
            check(&key, &bytes[2], &VoteSignature::Batched(moved), None),
            invalid
        );
        let past = MerkleProof::new(proofs[2].root_signature, 8, proofs[2].path()).unwrap();
        assert_eq!(
            check(&key, &bytes[2], &VoteSignature::Batched(past), None),
            Err(VoteError::IndexOutOfRange { index: 8, depth: 3 })
        );
        // A shortened path: a node never passes for a leaf.
        let short = MerkleProof::new(proofs[0].root_signature, 0, &proofs[0].path()[1..]).unwrap();
        assert_eq!(
            check(&key, &bytes[0], &VoteSignature::Batched(short), None),
            invalid
        );
        // A bad root signature.
        let mut forged = proofs[4];
        forged.root_signature.0[40] ^= 1;
        assert!(check(&key, &bytes[4], &VoteSignature::Batched(forged), None).is_err());
        // Another key's root.
        let other = KeyPair::from_seed([8; 32]);
        assert_eq!(
            check(&other, &bytes[4], &VoteSignature::Batched(proofs[4]), None),
            invalid
        );
        // The wrong form for the authority's scheme, both ways.
        let single = VoteSignature::Single(key.sign(&bytes[0]));
        assert_eq!(
            check(&key, &bytes[0], &single, None),
            Err(VoteError::WrongScheme {
                expected: VoteScheme::Merkle,
                got: VoteScheme::Single
            })
        );
        let public = key.public_key().unwrap();
        assert_eq!(
            verify_vote(
                &key.authority(),
                &public,
                VoteScheme::Single,
                &COMMITTEE,
                &bytes[0],
                &VoteSignature::Batched(proofs[0]),
                None
            ),
            Err(VoteError::WrongScheme {
                expected: VoteScheme::Single,
                got: VoteScheme::Merkle
            })
        );
        assert_eq!(
            verify_vote(
                &key.authority(),
                &public,
                VoteScheme::Single,
                &COMMITTEE,
                &bytes[0],
                &single,
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn roots_do_not_cross_committees_or_pass_for_votes() {
        let key = KeyPair::from_seed([7; 32]);
        let (bytes, proofs) = signed_batch(1, &key);
        // A batch of one: the root is the leaf, yet its signature is no per-vote signature.
        assert!(proofs[0].path().is_empty());
        let public = key.public_key().unwrap();
        assert!(public.verify(&bytes[0], &proofs[0].root_signature).is_err());
        let elsewhere = CommitteeId([0xc1; 32]);
        assert!(
            verify_vote(
                &key.authority(),
                &public,
                VoteScheme::Merkle,
                &elsewhere,
                &bytes[0],
                &VoteSignature::Batched(proofs[0]),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn the_cache_skips_checked_roots_but_not_other_signature_bytes() {
        let key = KeyPair::from_seed([7; 32]);
        let (bytes, proofs) = signed_batch(4, &key);
        let mut cache = RootCache::with_capacity(2);
        for (b, p) in bytes.iter().zip(&proofs) {
            assert_eq!(
                check(&key, b, &VoteSignature::Batched(*p), Some(&mut cache)),
                Ok(())
            );
        }
        assert_eq!(cache.len(), 1);
        // Same root, other signature bytes: checked, and refused.
        let mut forged = proofs[1];
        forged.root_signature.0[40] ^= 1;
        assert!(
            check(
                &key,
                &bytes[1],
                &VoteSignature::Batched(forged),
                Some(&mut cache)
            )
            .is_err()
        );
        // Bounded: a full cache starts over.
        let (more, more_proofs) = signed_batch(3, &key);
        check(
            &key,
            &more[0],
            &VoteSignature::Batched(more_proofs[0]),
            Some(&mut cache),
        )
        .unwrap();
        assert_eq!(cache.len(), 2);
        let (last, last_proofs) = signed_batch(2, &key);
        check(
            &key,
            &last[0],
            &VoteSignature::Batched(last_proofs[0]),
            Some(&mut cache),
        )
        .unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn encodings_round_trip_and_refuse_bad_forms() {
        let key = KeyPair::from_seed([7; 32]);
        let (bytes, proofs) = signed_batch(6, &key);
        for signature in [
            VoteSignature::Single(key.sign(&bytes[0])),
            VoteSignature::Batched(proofs[5]),
        ] {
            let mut raw = Vec::new();
            signature.to_bytes(&mut raw);
            assert_eq!(VoteSignature::from_bytes(&raw), Some(signature));
            let json = serde_json::to_string(&signature).unwrap();
            assert_eq!(
                serde_json::from_str::<VoteSignature>(&json).unwrap(),
                signature
            );
            let mut wire = vec![0u8; 512];
            let len = crate::codec::encode_value(&signature, &mut wire).unwrap();
            assert_eq!(&wire[..len], &raw[..]);
        }
        let mut too_deep = vec![1u8];
        too_deep.extend_from_slice(&[0; 64]);
        too_deep.extend_from_slice(&[0, MAX_DEPTH as u8 + 1]);
        too_deep.extend_from_slice(&[0; 32 * (MAX_DEPTH + 1)]);
        assert_eq!(VoteSignature::from_bytes(&too_deep), None);
        assert_eq!(VoteSignature::from_bytes(&[2; 65]), None);
        // A per-vote signature in a wallet is the plain hex string it always was.
        let plain = Signature([3; 64]);
        assert_eq!(
            serde_json::to_string(&VoteSignature::Single(plain)).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        assert_eq!(VoteScheme::Merkle.request_padding(), 194);
        assert_eq!("merkle".parse(), Ok(VoteScheme::Merkle));
        assert_eq!("batch".parse::<VoteScheme>(), Err(VoteError::UnknownScheme));
    }
}
