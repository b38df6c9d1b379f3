//! What loadgen prepares before the clock starts: the authorities' keys (for offline
//! certificates), the benchmark accounts (keys derived from a seed, so `loadgen genesis` and a
//! run agree without sharing files), and pre-signed orders and certificates.

use anyhow::{Context, Result};
use fastpay_wire::{
    AccountId, Amount, CertifiedTransferOrder, Committee, CommitteeId, KeyPair, SequenceNumber,
    ServerFile, SignedTransferOrder, Transfer, TransferOrder, VoteSignature, shard_of, sign_votes,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// Votes loadgen waits for: the quorum of `committee` with every weight one. Loadgen counts
/// votes, not weights; with equal weights (as benchmark committees have) these agree.
pub fn vote_quorum(committee: &Committee) -> Result<usize> {
    let names = committee.members().iter().map(|m| m.name);
    let threshold = Committee::equal_weights(names, 1)?.quorum_threshold();
    Ok(usize::try_from(threshold)?)
}

/// Reads an authority's server file (for `--offline-certificates`) and returns its key. The
/// file's permissions are the authority's concern; loadgen only borrows the key.
pub fn load_authority_key(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let (_, key) = ServerFile::parse(path, &text)?;
    Ok(key)
}

/// The key of benchmark account `index` under `seed`.
pub fn account_key(seed: u64, index: u64) -> KeyPair {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    bytes[16..24].copy_from_slice(b"loadgen!");
    KeyPair::from_seed(bytes)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs `f` over `0..count` on every core, in order, with a progress bar.
fn parallel<T: Send>(count: usize, what: &str, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let bar = progress(count as u64, what);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let mut out: Vec<T> = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let (f, bar) = (&f, &bar);
                scope.spawn(move || {
                    let end = (start + chunk).min(count);
                    let mut part = Vec::with_capacity(end - start);
                    for i in start..end {
                        part.push(f(i));
                        if i % 1024 == 0 {
                            bar.inc(1024.min((end - i) as u64));
                        }
                    }
                    part
                })
            })
            .collect();
        for handle in handles {
            out.extend(handle.join().unwrap_or_default());
        }
    });
    bar.finish_and_clear();
    out
}

/// The genesis lines for `count` accounts from `first`, each funded with `funding`.
pub fn genesis(seed: u64, first: u64, count: u64, funding: u64) -> Vec<String> {
    parallel(count as usize, "deriving accounts", |i| {
        let account = account_key(seed, first + i as u64).account();
        format!("{account}:{funding}")
    })
}

/// The ids of the accounts `0..count` under `seed`.
pub fn genesis_accounts(seed: u64, count: u64) -> Vec<AccountId> {
    parallel(count as usize, "deriving accounts", |i| {
        account_key(seed, i as u64).account()
    })
}

/// A benchmark account and its pre-signed order.
#[derive(Clone)]
pub struct Prepared {
    /// The paying account.
    pub account: AccountId,
    /// Its order: one unit to the next account.
    pub order: TransferOrder,
}

/// Derives the accounts `first..first + count` and signs one order each for `committee` (one
/// unit to the next account of the genesis set of `total`, at `sequence`: the accounts' next
/// sequence number, 0 unless earlier runs used them).
pub fn prepare_orders(
    seed: u64,
    committee: &CommitteeId,
    first: u64,
    count: u64,
    total: u64,
    sequence: SequenceNumber,
) -> Vec<Prepared> {
    parallel(count as usize, "pre-signing orders", |i| {
        let index = first + i as u64;
        let key = account_key(seed, index);
        let recipient = account_key(seed, (index + 1) % total.max(1)).account();
        let order = TransferOrder::new(
            Transfer {
                sender: key.account(),
                recipient,
                amount: Amount::new(1),
                sequence_number: sequence,
                user_data: None,
            },
            committee,
            &key,
        );
        Prepared {
            account: key.account(),
            order,
        }
    })
}

/// Signs a certificate for every order with the keys of `committee`'s members, as the
/// authorities would: per-vote signatures (deterministic, so byte-identical to live ones), or
/// for authorities that batch their votes, one root per run of
/// [`MAX_LEAVES`](fastpay_wire::merkle::MAX_LEAVES) consecutive orders of one of its shards
/// (as a shard under load signs a full receive batch of its own accounts' orders).
pub fn offline_certificates(
    orders: &[Prepared],
    committee: &Committee,
    keys: &[KeyPair],
    quorum: usize,
) -> Vec<CertifiedTransferOrder> {
    let voters = &keys[..quorum.min(keys.len())];
    // Runs of (voter, order indices): each voter's orders split by its shards, then by batch.
    let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
    for (v, key) in voters.iter().enumerate() {
        let shards = committee
            .member(&key.authority())
            .map_or(1, |m| m.num_shards);
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards.max(1) as usize];
        for (i, prepared) in orders.iter().enumerate() {
            by_shard[shard_of(&prepared.account, shards).0 as usize].push(i);
        }
        for indices in &by_shard {
            for run in indices.chunks(fastpay_wire::merkle::MAX_LEAVES) {
                runs.push((v, run.to_vec()));
            }
        }
    }
    let signed = parallel(runs.len(), "signing certificates", |r| {
        let (v, run) = &runs[r];
        let chunk: Vec<TransferOrder> = run.iter().map(|&i| orders[i].order).collect();
        sign_votes(&chunk, committee, &voters[*v])
    });
    let mut votes: Vec<Vec<Option<SignedTransferOrder>>> =
        vec![vec![None; voters.len()]; orders.len()];
    for ((v, run), signed) in runs.iter().zip(signed) {
        for (&i, vote) in run.iter().zip(signed) {
            votes[i][*v] = Some(vote);
        }
    }
    orders
        .iter()
        .zip(votes)
        .map(|(prepared, by_voter)| CertifiedTransferOrder {
            value: prepared.order,
            signatures: by_voter
                .into_iter()
                .flatten()
                .map(|vote| (vote.authority, vote.signature))
                .collect(),
        })
        .collect()
}

/// A query for the payments `recipient` received, from the first on, of exactly
/// [`MIN_QUERY_BYTES`](fastpay_wire::MIN_QUERY_BYTES): the smallest an authority answers,
/// with room for no certificate.
pub fn smallest_received_query(recipient: AccountId) -> fastpay_wire::Message {
    let mut query = fastpay_wire::AccountInfoRequest {
        account: recipient,
        query: fastpay_wire::AccountQuery::Received(0),
        padding: Vec::new(),
    };
    let bare = fastpay_wire::encode(
        &fastpay_wire::Message::AccountInfoRequest(query.clone()),
        fastpay_wire::ShardId(0),
    )
    .map_or(0, |bytes| bytes.len());
    // The padding's length prefix grows by a byte or two with it: aim short, then top up.
    query.padding = vec![0; fastpay_wire::MIN_QUERY_BYTES.saturating_sub(bare + 2)];
    while fastpay_wire::encode(
        &fastpay_wire::Message::AccountInfoRequest(query.clone()),
        fastpay_wire::ShardId(0),
    )
    .is_ok_and(|bytes| bytes.len() < fastpay_wire::MIN_QUERY_BYTES)
    {
        query.padding.push(0);
    }
    fastpay_wire::Message::AccountInfoRequest(query)
}

/// `count` confirmation orders that forge a quorum of `names`' signatures (and the owner's)
/// on transfers of 1 from distinct fresh accounts at sequence number 0, for the committee
/// `committee`: each passes an authority's cheap checks (the signatures are well formed: real
/// signatures, of other bytes or by other keys) and is refused only after its signatures are
/// verified.
pub fn forged_confirmations(
    names: &[fastpay_wire::AuthorityName],
    quorum: usize,
    committee: &fastpay_wire::CommitteeId,
    count: usize,
) -> Vec<fastpay_wire::Message> {
    use fastpay_wire::{Domain, SignedBytes, Transfer};
    let stranger = KeyPair::from_seed([0xf1; 32]);
    parallel(count, "forging confirmations", |i| {
        let mut seed = [0xf0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let owner = KeyPair::from_seed(seed);
        let transfer = Transfer {
            sender: owner.account(),
            recipient: owner.account(),
            amount: fastpay_wire::Amount::new(1),
            sequence_number: fastpay_wire::SequenceNumber::ZERO,
            user_data: None,
        };
        // The owner signs another amount; a stranger signs the votes in members' names.
        let other = Transfer {
            amount: fastpay_wire::Amount::new(2),
            ..transfer
        };
        let order = fastpay_wire::TransferOrder {
            transfer,
            signature: owner.sign(&SignedBytes::for_transfer(
                Domain::TransferOrder,
                committee,
                &other,
            )),
        };
        let vote = stranger.sign(&SignedBytes::for_transfer(
            Domain::Vote,
            committee,
            &transfer,
        ));
        fastpay_wire::Message::ConfirmationOrder(fastpay_wire::ConfirmationOrder {
            certificate: CertifiedTransferOrder {
                value: order,
                signatures: names
                    .iter()
                    .take(quorum)
                    .map(|name| (*name, VoteSignature::Single(vote)))
                    .collect(),
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_received_query_is_exactly_the_minimum_query_size() {
        let query = smallest_received_query(account_key(7, 3).account());
        let bytes = fastpay_wire::encode(&query, fastpay_wire::ShardId(0)).unwrap();
        assert_eq!(bytes.len(), fastpay_wire::MIN_QUERY_BYTES);
    }

    #[test]
    fn the_vote_quorum_is_two_thirds_and_one_of_the_authorities() {
        for (authorities, quorum) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 3),
            (5, 4),
            (6, 5),
            (7, 5),
            (10, 7),
        ] {
            let names = (0..authorities).map(|i| KeyPair::from_seed([i as u8 + 1; 32]).authority());
            let committee = Committee::equal_weights(names, 1).unwrap();
            assert_eq!(
                vote_quorum(&committee).unwrap(),
                quorum,
                "{authorities} authorities"
            );
        }
    }
}
