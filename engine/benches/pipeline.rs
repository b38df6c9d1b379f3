//! The pure per-batch pipeline without sockets: one shard processing a batch of 64 transfer
//! orders (cheap checks, one batch verification, 64 votes signed and encoded), and a batch of
//! 64 confirmations from a committee of four (two signatures each left to verify after
//! skipping our own vote and the owner signature we verified when voting).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_engine::counters::ShardCounters;
use fastpay_node::{NodeConfig, ShardNode};
use fastpay_wire::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches per freshly built shard: each account orders once, so a shard serves this many
/// batches before it must be rebuilt (outside the timed part).
const BATCHES_PER_SHARD: usize = 64;

fn key(tag: u8, i: u64) -> KeyPair {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    KeyPair::from_seed(seed)
}

struct Fixture {
    authorities: Vec<KeyPair>,
    committee: Arc<Committee>,
    accounts: Vec<KeyPair>,
    genesis: Genesis,
    orders: Vec<TransferOrder>,
}

fn fixture() -> Fixture {
    let authorities: Vec<KeyPair> = (0..4).map(|i| key(1, i)).collect();
    let committee =
        Arc::new(Committee::equal_weights(authorities.iter().map(KeyPair::authority), 1).unwrap());
    let accounts: Vec<KeyPair> = (0..(BATCH * BATCHES_PER_SHARD) as u64)
        .map(|i| key(2, i))
        .collect();
    let genesis =
        Genesis::from_accounts(accounts.iter().map(|k| (k.account(), Amount::new(100)))).unwrap();
    let orders = accounts
        .iter()
        .enumerate()
        .map(|(i, k)| {
            TransferOrder::new(
                Transfer {
                    sender: k.account(),
                    recipient: accounts[(i + 1) % accounts.len()].account(),
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::ZERO,
                    user_data: None,
                },
                &committee.id(),
                k,
            )
        })
        .collect();
    Fixture {
        authorities,
        committee,
        accounts,
        genesis,
        orders,
    }
}

impl Fixture {
    fn worker(&self) -> ShardNode {
        let shard = AuthorityShard::new(
            KeyPair::from_seed(self.authorities[0].seed()),
            self.committee.clone(),
            ShardId(0),
            &self.genesis,
        )
        .unwrap();
        ShardNode::new(
            shard,
            NodeConfig::in_process(1, false),
            Arc::new(ShardCounters::default()),
        )
    }

    fn batch(&self, messages: impl Iterator<Item = Message>) -> Datagrams {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut batch = Datagrams::new();
        for message in messages {
            assert!(batch.push(peer, &encode(&message, ShardId(0)).unwrap()));
        }
        batch
    }

    fn order_batch(&self, b: usize) -> Datagrams {
        self.batch(
            self.orders[b * BATCH..(b + 1) * BATCH]
                .iter()
                .map(|o| Message::TransferOrder(*o)),
        )
    }

    fn confirmation_batch(&self, b: usize) -> Datagrams {
        self.batch(self.orders[b * BATCH..(b + 1) * BATCH].iter().map(|o| {
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: CertifiedTransferOrder {
                    value: *o,
                    signatures: self.authorities[..3]
                        .iter()
                        .map(|k| {
                            let v = SignedTransferOrder::new(*o, &self.committee.id(), k);
                            (v.authority, v.signature)
                        })
                        .collect(),
                },
            })
        }))
    }
}

/// Processes `iters` batches of `timed` (each after its untimed twin from `before`, if any),
/// with a fresh worker each time the batches run out; returns the time spent on `timed`.
fn time_batches(
    fx: &Fixture,
    iters: u64,
    before: Option<&[Datagrams]>,
    timed: &[Datagrams],
) -> Duration {
    let mut total = Duration::ZERO;
    let mut worker = fx.worker();
    for i in 0..iters as usize {
        let batch = i % BATCHES_PER_SHARD;
        if batch == 0 && i > 0 {
            worker = fx.worker();
        }
        if let Some(before) = before {
            worker.handle_batch(Duration::ZERO, &before[batch]);
            while let Some(replies) = worker.poll_replies() {
                worker.recycle(replies);
            }
        }
        let start = Instant::now();
        worker.handle_batch(Duration::ZERO, &timed[batch]);
        let replies = worker.poll_replies().expect("the batch's replies");
        total += start.elapsed();
        assert_eq!(replies.len(), BATCH);
        worker.recycle(replies);
    }
    total
}

fn pipeline(c: &mut Criterion) {
    let fx = fixture();
    assert_eq!(fx.accounts.len(), BATCH * BATCHES_PER_SHARD);
    let order_batches: Vec<Datagrams> = (0..BATCHES_PER_SHARD).map(|b| fx.order_batch(b)).collect();
    let confirmation_batches: Vec<Datagrams> = (0..BATCHES_PER_SHARD)
        .map(|b| fx.confirmation_batch(b))
        .collect();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("orders_batch_64", |b| {
        b.iter_custom(|iters| time_batches(&fx, iters, None, &order_batches))
    });
    // Vote first (untimed), as in a real payment.
    group.bench_function("confirmations_batch_64", |b| {
        b.iter_custom(|iters| time_batches(&fx, iters, Some(&order_batches), &confirmation_batches))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = pipeline
}
criterion_main!(benches);
