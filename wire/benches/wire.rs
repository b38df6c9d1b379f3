//! Ceilings for the engine: the codec per message kind, signing, single versus batch
//! verification at batch sizes 1 to 256, and what checking one certificate of batched votes
//! costs as the committee grows.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastpay_wire::*;
use std::hint::black_box;
use std::time::Duration;

fn key(i: u64) -> KeyPair {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    KeyPair::from_seed(seed)
}

fn transfer(i: u64) -> Transfer {
    Transfer {
        sender: key(i).account(),
        recipient: key(i + 1).account(),
        amount: Amount::new(1),
        sequence_number: SequenceNumber::new(i),
        user_data: None,
    }
}

/// The committee the benchmark's votes are cast in: authorities 10 to 12.
fn committee() -> Committee {
    Committee::equal_weights((10..13).map(|i| key(i).authority()), 1).unwrap()
}

fn messages() -> Vec<(&'static str, Message)> {
    let committee = committee().id();
    let order = TransferOrder::new(transfer(1), &committee, &key(1));
    let certificate = CertifiedTransferOrder {
        value: order,
        signatures: (10..13)
            .map(|i| {
                let v = SignedTransferOrder::new(order, &committee, &key(i));
                (v.authority, v.signature)
            })
            .collect(),
    };
    vec![
        ("transfer_order", Message::TransferOrder(order)),
        (
            "vote",
            Message::Vote(VoteReply::of(&SignedTransferOrder::new(
                order,
                &committee,
                &key(10),
            ))),
        ),
        (
            "confirmation_order",
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certificate.clone(),
            }),
        ),
        (
            "account_info_request",
            Message::AccountInfoRequest(AccountInfoRequest::new(key(1).account())),
        ),
        (
            "account_info_response",
            Message::AccountInfoResponse(AccountInfoResponse {
                account: key(1).account(),
                balance: Balance::new(5),
                next_sequence_number: SequenceNumber::new(1),
                pending: None,
                deposited: Balance::ZERO,
            }),
        ),
        (
            "cross_shard_update",
            Message::CrossShardUpdate(CrossShardUpdate {
                recipient_shard: ShardId(1),
                certificate,
            }),
        ),
    ]
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let mut buffer = vec![0u8; codec::MAX_DATAGRAM_SIZE];
    for (name, message) in messages() {
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| encode_into(black_box(&message), ShardId(1), &mut buffer).unwrap())
        });
        let bytes = encode(&message, ShardId(1)).unwrap();
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| decode(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    let signer = key(1);
    let value = transfer(1);
    let committee = committee().id();
    let bytes = SignedBytes::for_transfer(Domain::Vote, &committee, &value);
    c.bench_function("sign/vote", |b| b.iter(|| signer.sign(black_box(&bytes))));
    // The same signature with dalek, which `sign` (aws-lc-rs) replaced: same bytes, slower.
    c.bench_function("sign/vote_dalek", |b| {
        b.iter(|| signer.sign_with_dalek(black_box(&bytes)))
    });
    let root = [7u8; 32];
    c.bench_function("merkle/leaf_hash", |b| {
        b.iter(|| fastpay_wire::merkle::leaf_hash(black_box(&bytes)))
    });
    c.bench_function("merkle/node_hash", |b| {
        b.iter(|| fastpay_wire::merkle::node_hash(black_box(&root), black_box(&root)))
    });
    let leaves: Vec<[u8; 32]> = (0..64u8).map(|i| [i; 32]).collect();
    let mut tree = fastpay_wire::TreeBuilder::new();
    c.bench_function("merkle/build_64", |b| {
        b.iter(|| tree.build(black_box(&leaves)))
    });
    c.bench_function("signed_bytes/transfer", |b| {
        b.iter(|| SignedBytes::for_transfer(Domain::Vote, &committee, black_box(&value)))
    });
}

fn verification(c: &mut Criterion) {
    let committee = committee().id();
    let items: Vec<(PublicKey, SignedBytes, Signature)> = (0..256)
        .map(|i| {
            let k = key(i);
            let bytes = SignedBytes::for_transfer(Domain::TransferOrder, &committee, &transfer(i));
            (k.public_key().unwrap(), bytes, k.sign(&bytes))
        })
        .collect();
    let mut group = c.benchmark_group("verify");
    group.bench_function("single", |b| {
        let (key, bytes, signature) = &items[0];
        b.iter(|| key.verify(black_box(bytes), signature).unwrap())
    });
    let mut verifier = BatchVerifier::new();
    for size in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("batch", size), |b| {
            b.iter(|| {
                verifier.clear();
                for (key, bytes, signature) in &items[..size] {
                    verifier.push(key, *bytes, *signature);
                }
                assert!(verifier.verify().iter().all(|ok| *ok));
            })
        });
    }
    group.finish();
}

/// One confirmation's wire-side work at an authority, for committees of 4 to 40 signing
/// batched votes: decode the confirmation, check its signers, queue its quorum of votes and
/// verify them. Votes are signed as `bench` pre-signs them (a root per 64 consecutive orders),
/// and the certificates cycle through 4,096 orders so the root and node caches work as they do
/// under a steady stream (each root's signature is checked once per pass of 64 certificates).
fn certificates(c: &mut Criterion) {
    const ORDERS: u64 = 4096;
    let mut group = c.benchmark_group("certificate");
    for size in [4u64, 10, 20, 40] {
        let keys: Vec<KeyPair> = (100..100 + size).map(key).collect();
        let committee = Committee::equal_weights(keys.iter().map(KeyPair::authority), 1)
            .unwrap()
            .with_vote_scheme(VoteScheme::Merkle);
        let orders: Vec<TransferOrder> = (0..ORDERS)
            .map(|i| TransferOrder::new(transfer(i), &committee.id(), &key(i)))
            .collect();
        let votes: Vec<Vec<SignedTransferOrder>> = keys
            .iter()
            .map(|k| sign_votes(&orders, &committee, k))
            .collect();
        let quorum = committee.max_certificate_votes();
        let datagrams: Vec<Vec<u8>> = (0..orders.len())
            .map(|i| {
                let certificate = CertifiedTransferOrder {
                    value: orders[i],
                    signatures: votes[..quorum]
                        .iter()
                        .map(|v| (v[i].authority, v[i].signature))
                        .collect(),
                };
                let order = Message::ConfirmationOrder(ConfirmationOrder { certificate });
                encode(&order, ShardId(0)).unwrap()
            })
            .collect();
        let mut verifier = BatchVerifier::new();
        let mut next = 0;
        group.bench_function(BenchmarkId::new("merkle", size), |b| {
            b.iter(|| {
                let Ok((_, Message::ConfirmationOrder(order))) = decode(&datagrams[next]) else {
                    panic!("not a confirmation");
                };
                next = (next + 1) % datagrams.len();
                committee.check_signers(&order.certificate).unwrap();
                verifier.clear();
                let vote_bytes = order.certificate.value.vote_bytes(&committee.id());
                for (name, signature) in &order.certificate.signatures {
                    committee
                        .queue_vote(&mut verifier, name, vote_bytes, signature)
                        .unwrap();
                }
                assert!(verifier.verify().iter().all(|ok| *ok));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codec, signing, verification, certificates
}
criterion_main!(benches);
