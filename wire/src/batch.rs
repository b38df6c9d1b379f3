//! Signatures checked together ([`BatchVerifier`]): each run of well-formed signatures goes
//! to one batch equation, a failing batch is bisected to find its bad signatures, and the votes
//! of one signed batch share their root's check. Every verdict is the one a single check
//! would give: both paths apply the rule of [`crate::crypto`].

use crate::base_types::{AuthorityName, CommitteeId};
use crate::crypto::{
    Equation, PublicKey, Signature, SignedBytes, all_hold, check_bytes, verify_one,
};
use crate::merkle::{
    Digest, NodeCache, RootCache, RootKey, VoteError, VoteScheme, VoteSignature, leaf_hash,
};
use ed25519_dalek::VerifyingKey;
use rustc_hash::FxHashMap;

/// Signatures to check together: collect with [`push`](Self::push), then [`verify`](Self::verify)
/// the lot. A failing batch is bisected so that one forger cannot sink its batch-mates; while
/// recent batches are full of forgeries (a flood), signatures are checked one by one instead,
/// which then costs less than batches that fail and bisect. Reuse one verifier across batches
/// to keep its buffers and its memory of recent failures.
///
/// Batched votes ([`push_vote`](Self::push_vote)) queue their root's signature once per batch
/// (later votes under the same root take its verdict), and roots that verified are
/// remembered across batches, so a root's signature is checked once per verifier. Following a
/// path hashes only the nodes no earlier path went through ([`NodeCache`]), and the votes of
/// one certificate share one leaf hash.
#[derive(Default)]
pub struct BatchVerifier {
    keys: Vec<VerifyingKey>,
    signatures: Vec<Signature>,
    messages: Vec<SignedBytes>,
    equations: Vec<Equation>,
    valid: Vec<bool>,
    /// Share of bad signatures in recent batches, in 1/1024ths (an exponential average).
    recent_bad: u32,
    /// Roots that verified in earlier batches.
    roots: RootCache,
    /// Roots queued in this batch, and their index.
    queued_roots: FxHashMap<RootKey, usize>,
    /// Entries that take another entry's verdict: (entry, the entry it copies).
    aliases: Vec<(usize, usize)>,
    /// Inner nodes of batched votes' paths hashed before.
    nodes: NodeCache,
    /// The last batched vote's bytes and leaf: a certificate's votes all sign the same bytes.
    last_leaf: Option<(SignedBytes, Digest)>,
}

/// Share of bad signatures (in 1/1024ths) in recent batches above which each signature is
/// checked alone: at about one bad signature in eight, bisecting a failed batch of 64 costs
/// more than checking the 64 singly (a single check costs about 2.6 batch shares).
const SINGLE_CHECK_ABOVE: u32 = 128;

/// Below this many signatures a batch is split into single checks: the batch equation's fixed
/// cost (transcript, multiscalar setup) outweighs its saving for one or two signatures.
const MIN_BATCH: usize = 2;

impl BatchVerifier {
    /// An empty verifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all queued signatures, keeping the buffers (and the roots that verified).
    pub fn clear(&mut self) {
        self.keys.clear();
        self.signatures.clear();
        self.messages.clear();
        self.valid.clear();
        self.queued_roots.clear();
        self.aliases.clear();
    }

    /// Queues the vote `signature` of `authority` (key `key`, signing by `scheme` in
    /// `committee`) on `vote_bytes`. A per-vote signature is queued as is. A batched vote's
    /// path is followed to its root: nothing is queued when that root (with those signature
    /// bytes) verified before, an entry that takes the verdict of the root queued earlier in
    /// this batch, or else the root's signature. The vote's verdict is then that of every
    /// entry queued from here on, like any other signature's.
    pub fn push_vote(
        &mut self,
        authority: &AuthorityName,
        key: &PublicKey,
        scheme: VoteScheme,
        committee: &CommitteeId,
        vote_bytes: SignedBytes,
        signature: &VoteSignature,
    ) -> Result<(), VoteError> {
        if signature.scheme() != scheme {
            return Err(VoteError::WrongScheme {
                expected: scheme,
                got: signature.scheme(),
            });
        }
        match signature {
            VoteSignature::Single(signature) => {
                self.push(key, vote_bytes, *signature);
            }
            VoteSignature::Batched(proof) => {
                let leaf = self.leaf(&vote_bytes);
                let root = proof.root_cached(&leaf, &mut self.nodes)?;
                let entry = (*authority, root, proof.root_signature.0);
                if self.roots.contains(&entry) {
                    return Ok(());
                }
                if let Some(&target) = self.queued_roots.get(&entry) {
                    let index = self.keys.len();
                    self.keys.push(self.keys[target]);
                    self.messages.push(self.messages[target]);
                    self.signatures.push(self.signatures[target]);
                    // Left out of the batch equation; takes its target's verdict.
                    self.valid.push(false);
                    self.aliases.push((index, target));
                    return Ok(());
                }
                let index = self.push(
                    key,
                    SignedBytes::for_vote_root(committee, &root),
                    proof.root_signature,
                );
                self.queued_roots.insert(entry, index);
            }
        }
        Ok(())
    }

    /// The leaf of `vote_bytes`, hashed once for a run of votes on the same bytes.
    fn leaf(&mut self, vote_bytes: &SignedBytes) -> Digest {
        if let Some((bytes, leaf)) = &self.last_leaf
            && bytes.as_slice() == vote_bytes.as_slice()
        {
            return *leaf;
        }
        let leaf = leaf_hash(vote_bytes);
        self.last_leaf = Some((*vote_bytes, leaf));
        leaf
    }

    /// Copies verdicts to the entries that share a root, and remembers the roots that
    /// verified.
    fn settle_roots(&mut self) {
        for &(index, target) in &self.aliases {
            self.valid[index] = self.valid[target];
        }
        for (entry, &index) in &self.queued_roots {
            if self.valid[index] {
                self.roots.insert(*entry);
            }
        }
    }

    /// Number of queued signatures.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Number of queued signatures that [`verify`](Self::verify) will check: the entries of
    /// batched votes that share a root queued earlier in this batch take its verdict instead.
    pub fn checks(&self) -> usize {
        self.keys.len().saturating_sub(self.aliases.len())
    }

    /// Whether no signature is queued.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Queues `signature` on `message` under `key`; returns its index in the verdicts.
    pub fn push(&mut self, key: &PublicKey, message: SignedBytes, signature: Signature) -> usize {
        let index = self.keys.len();
        self.keys.push(*key.verifying_key());
        self.messages.push(message);
        self.signatures.push(signature);
        // Byte-level checks now, so that the batch only sees well-formed signatures.
        self.valid.push(check_bytes(&signature).is_ok());
        index
    }

    /// Verifies every queued signature; the verdicts are indexed as returned by `push`.
    pub fn verify(&mut self) -> &[bool] {
        if self.recent_bad > SINGLE_CHECK_ABOVE {
            for i in 0..self.valid.len() {
                if self.valid[i] {
                    self.valid[i] = verify_one(
                        &self.keys[i],
                        self.messages[i].as_slice(),
                        &self.signatures[i],
                    );
                }
            }
            self.settle_roots();
            self.note_failures();
            return &self.valid;
        }
        let mut start = 0;
        // Runs of signatures that passed the byte checks go to the batch equation.
        while start < self.valid.len() {
            if !self.valid[start] {
                start = start.saturating_add(1);
                continue;
            }
            let mut end = start;
            while end < self.valid.len() && self.valid[end] {
                end = end.saturating_add(1);
            }
            self.verify_range(start, end);
            start = end;
        }
        self.settle_roots();
        self.note_failures();
        &self.valid
    }

    /// Folds this batch's share of bad signatures into the recent average (weight 1/4).
    fn note_failures(&mut self) {
        if self.valid.is_empty() {
            return;
        }
        let bad = self.valid.iter().filter(|ok| !**ok).count();
        let share = u32::try_from(bad.saturating_mul(1024) / self.valid.len()).unwrap_or(1024);
        self.recent_bad = (self.recent_bad.saturating_mul(3).saturating_add(share)) / 4;
    }

    /// Verdicts of the last `verify`.
    pub fn verdicts(&self) -> &[bool] {
        &self.valid
    }

    fn verify_range(&mut self, start: usize, end: usize) {
        let count = end.saturating_sub(start);
        if count < MIN_BATCH {
            for i in start..end {
                self.valid[i] = verify_one(
                    &self.keys[i],
                    self.messages[i].as_slice(),
                    &self.signatures[i],
                );
            }
            return;
        }
        self.equations.clear();
        for i in start..end {
            match Equation::new(
                &self.keys[i],
                self.messages[i].as_slice(),
                &self.signatures[i],
            ) {
                Some(equation) => self.equations.push(equation),
                // R is not a point: this one fails alone, and the batch cannot hold.
                None => break,
            }
        }
        if self.equations.len() == count && all_hold(&self.equations) {
            return;
        }
        let middle = start.saturating_add(count / 2);
        self.verify_range(start, middle);
        self.verify_range(middle, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base_types::{AccountId, Amount, SequenceNumber};
    use crate::crypto::{Domain, KeyPair};
    use crate::merkle::{Digest, TreeBuilder};
    use crate::messages::Transfer;

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
    fn a_flood_of_forgeries_switches_to_single_checks_and_back() {
        let key = KeyPair::from_seed([8; 32]);
        let public = key.public_key().unwrap();
        let mut verifier = BatchVerifier::new();
        let mut run = |bad_every: usize| {
            verifier.clear();
            for i in 0..16u64 {
                let message = SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &transfer(i));
                let mut signature = key.sign(&message);
                if bad_every > 0 && (i as usize).is_multiple_of(bad_every) {
                    signature.0[40] ^= 1;
                }
                verifier.push(&public, message, signature);
            }
            let verdicts = verifier.verify().to_vec();
            for (i, ok) in verdicts.iter().enumerate() {
                assert_eq!(*ok, bad_every == 0 || i % bad_every != 0);
            }
            verifier.recent_bad
        };
        assert_eq!(run(0), 0);
        // Half forged: the average climbs past the threshold, and verdicts stay right.
        let mut level = 0;
        for _ in 0..4 {
            level = run(2);
        }
        assert!(level > SINGLE_CHECK_ABOVE, "{level}");
        // Clean batches bring it back to batching.
        for _ in 0..8 {
            level = run(0);
        }
        assert!(level <= SINGLE_CHECK_ABOVE, "{level}");
    }

    #[test]
    fn batched_votes_check_each_root_once_and_share_its_verdict() {
        let key = KeyPair::from_seed([9; 32]);
        let public = key.public_key().unwrap();
        let name = key.authority();
        let bytes: Vec<SignedBytes> = (0..4)
            .map(|i| SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &transfer(i)))
            .collect();
        let leaves: Vec<Digest> = bytes.iter().map(leaf_hash).collect();
        let mut tree = TreeBuilder::new();
        let good = tree.sign(&leaves, &COMMITTEE, &key).unwrap();
        let mut bad = good;
        bad.0[40] ^= 1;
        let mut verifier = BatchVerifier::new();
        let queue = |verifier: &mut BatchVerifier, i: usize, signature| {
            let vote = VoteSignature::Batched(tree.proof(i, signature).unwrap());
            verifier
                .push_vote(
                    &name,
                    &public,
                    VoteScheme::Merkle,
                    &COMMITTEE,
                    bytes[i],
                    &vote,
                )
                .unwrap();
        };
        // A forged root signature: the first vote queues it, the second shares its failure.
        queue(&mut verifier, 0, bad);
        queue(&mut verifier, 1, bad);
        queue(&mut verifier, 2, good);
        queue(&mut verifier, 3, good);
        assert_eq!(verifier.len(), 4);
        assert_eq!(verifier.verify(), &[false, false, true, true]);
        // Next batch: the good root is remembered, the forged one is checked (and fails) again.
        verifier.clear();
        queue(&mut verifier, 0, good);
        assert!(verifier.is_empty());
        queue(&mut verifier, 1, bad);
        assert_eq!(verifier.verify(), &[false]);
        // The wrong form is refused before anything is queued.
        verifier.clear();
        let single = VoteSignature::Single(key.sign(&bytes[0]));
        assert!(
            verifier
                .push_vote(
                    &name,
                    &public,
                    VoteScheme::Merkle,
                    &COMMITTEE,
                    bytes[0],
                    &single
                )
                .is_err()
        );
        assert!(verifier.is_empty());
    }

    #[test]
    fn batch_finds_each_bad_signature() {
        let keys: Vec<KeyPair> = (0..16u8).map(|i| KeyPair::from_seed([i; 32])).collect();
        let mut verifier = BatchVerifier::new();
        for (i, key) in keys.iter().enumerate() {
            let message = SignedBytes::for_transfer(Domain::Vote, &COMMITTEE, &transfer(i as u64));
            let mut signature = key.sign(&message);
            if i % 5 == 3 {
                // Sign another message: well formed, but wrong.
                signature = key.sign(&SignedBytes::for_transfer(
                    Domain::Vote,
                    &COMMITTEE,
                    &transfer(99),
                ));
            }
            verifier.push(&key.public_key().unwrap(), message, signature);
        }
        let verdicts = verifier.verify().to_vec();
        let expected: Vec<bool> = (0..16).map(|i| i % 5 != 3).collect();
        assert_eq!(verdicts, expected);
        verifier.clear();
        assert!(verifier.is_empty());
    }
}
