//! The per-batch pipeline fed arbitrary datagrams (random bytes, and valid messages with bytes
//! flipped) never panics, and random bytes never change a shard's state. The stable-toolchain
//! stand-in for a fuzz target, run on every CI build.

use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_engine::counters::ShardCounters;
use fastpay_engine::pipeline::{Outputs, ShardWorker};
use fastpay_engine::udp::Datagrams;
use fastpay_wire::*;
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;

fn key(i: u8) -> KeyPair {
    KeyPair::from_seed([i; 32])
}

fn worker() -> ShardWorker {
    let authority = key(200);
    let committee = Arc::new(
        Committee::new(vec![CommitteeMember {
            name: authority.authority(),
            weight: 1,
            num_shards: 1,
        }])
        .unwrap(),
    );
    let genesis =
        Genesis::from_accounts((1..5).map(|i| (key(i).account(), Amount::new(100)))).unwrap();
    let shard = AuthorityShard::new(authority, committee, ShardId(0), &genesis).unwrap();
    ShardWorker::new(shard, 1, Arc::new(ShardCounters::default()))
}

/// Valid datagrams of every request kind, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let order = TransferOrder::new(
        Transfer {
            sender: key(1).account(),
            recipient: key(2).account(),
            amount: Amount::new(5),
            sequence_number: SequenceNumber::ZERO,
            user_data: None,
        },
        &key(1),
    );
    let vote = SignedTransferOrder::new(order, &key(200));
    let certificate = CertifiedTransferOrder {
        value: order,
        signatures: vec![(vote.authority, vote.signature)],
    };
    [
        Message::TransferOrder(order),
        Message::ConfirmationOrder(ConfirmationOrder {
            certificate: certificate.clone(),
        }),
        Message::AccountInfoRequest(AccountInfoRequest::new(key(1).account())),
        Message::CrossShardUpdate(CrossShardUpdate {
            recipient_shard: ShardId(0),
            certificate,
        }),
    ]
    .iter()
    .map(|m| encode(m, ShardId(0)).unwrap())
    .collect()
}

fn run(worker: &mut ShardWorker, datagrams: &[Vec<u8>]) {
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut batch = Datagrams::new();
    for d in datagrams {
        batch.push(peer, d);
    }
    let mut out = Outputs::default();
    worker.process(&batch, &[], &mut out);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_batches_never_panic_or_change_state(
        datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..64),
    ) {
        let mut w = worker();
        let before = w.shard().snapshot();
        run(&mut w, &datagrams);
        prop_assert_eq!(w.shard().snapshot(), before);
    }

    #[test]
    fn mutated_requests_never_panic(
        picks in prop::collection::vec((0usize..4, any::<prop::sample::Index>(), any::<u8>()), 1..64),
    ) {
        let seeds = seeds();
        let datagrams: Vec<Vec<u8>> = picks
            .into_iter()
            .map(|(kind, at, value)| {
                let mut d = seeds[kind].clone();
                let i = at.index(d.len());
                d[i] = value;
                d
            })
            .collect();
        let mut w = worker();
        run(&mut w, &datagrams);
        // Whatever was accepted kept the books balanced.
        let total: i128 = w.shard().snapshot().accounts.iter().map(|(_, a)| a.balance.units()).sum();
        prop_assert_eq!(total, 400);
    }
}
