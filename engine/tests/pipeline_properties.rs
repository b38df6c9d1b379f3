//! The per-batch pipeline fed arbitrary datagrams (random bytes, and valid messages with bytes
//! flipped) never panics, and random bytes never change a shard's state. The stable-toolchain
//! stand-in for the fuzz targets, run on every CI build, plus a replay of the fuzzers'
//! committed corpora (`fuzz/corpus`, `fuzz/regressions`): every input a fuzzer kept, and every
//! crash it ever found, stays a regression test.

use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_engine::counters::ShardCounters;
use fastpay_node::{NodeConfig, ShardNode};
use fastpay_wire::*;
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;

fn key(i: u8) -> KeyPair {
    KeyPair::from_seed([i; 32])
}

/// One authority of one shard.
fn committee() -> Arc<Committee> {
    Arc::new(Committee::equal_weights([key(200).authority()], 1).unwrap())
}

fn worker() -> ShardNode {
    let (authority, committee) = (key(200), committee());
    let genesis =
        Genesis::from_accounts((1..5).map(|i| (key(i).account(), Amount::new(100)))).unwrap();
    let shard = AuthorityShard::new(authority, committee, ShardId(0), &genesis).unwrap();
    ShardNode::new(
        shard,
        NodeConfig::in_process(1, false),
        Arc::new(ShardCounters::default()),
    )
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
        &committee().id(),
        &key(1),
    );
    let vote = SignedTransferOrder::new(order, &committee().id(), &key(200));
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

fn run(worker: &mut ShardNode, datagrams: &[Vec<u8>]) {
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut batch = Datagrams::new();
    for d in datagrams {
        batch.push(peer, d);
    }
    worker.handle_batch(std::time::Duration::ZERO, &batch);
    while let Some(replies) = worker.poll_replies() {
        worker.recycle(replies);
    }
}

/// The files of `fuzz/<dir>/<target>` (none if the directory does not exist).
fn fuzz_inputs(dir: &str, target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&path) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// The pipeline fuzz target's input format: datagrams each preceded by a two-byte
/// little-endian length, at most one batch of them.
fn split_batch(mut input: &[u8]) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    while input.len() >= 2 && datagrams.len() < 64 {
        let len = usize::from(u16::from_le_bytes([input[0], input[1]]));
        let (datagram, tail) = input[2..].split_at(len.min(input.len() - 2));
        datagrams.push(datagram.to_vec());
        input = tail;
    }
    datagrams
}

#[test]
fn fuzz_corpora_replay_cleanly() {
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        for (path, input) in fuzz_inputs(dir, "pipeline") {
            let mut w = worker();
            run(&mut w, &split_batch(&input));
            let total: i128 = w
                .shard()
                .snapshot()
                .accounts
                .iter()
                .map(|(_, a)| a.balance.units())
                .sum();
            assert_eq!(total, 400, "{} changed the supply", path.display());
            replayed += 1;
        }
        for (path, datagram) in fuzz_inputs(dir, "wire_decode") {
            if let Ok((header, message)) = decode(&datagram) {
                let again = encode_padded(&message, header.shard, header.padding).unwrap();
                assert_eq!(
                    again,
                    datagram,
                    "{} decodes but is not canonical",
                    path.display()
                );
            }
            replayed += 1;
        }
        for (path, bytes) in fuzz_inputs(dir, "store_log") {
            if let Ok(decoded) = fastpay_engine::store::decode_log(&path, &bytes) {
                if let Some((offset, length)) = decoded.torn {
                    assert_eq!(offset, decoded.end, "{}", path.display());
                    assert_eq!(offset + length, bytes.len() as u64, "{}", path.display());
                } else {
                    let end = decoded.end as usize;
                    assert!(bytes[end..].iter().all(|&b| b == 0), "{}", path.display());
                }
            }
            replayed += 1;
        }
        for (path, bytes) in fuzz_inputs(dir, "config") {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = fastpay_wire::CommitteeFile::parse(&path, text);
                let _ = fastpay_authority::Genesis::parse(text);
            }
            replayed += 1;
        }
    }
    assert!(
        replayed > 100,
        "the committed fuzz corpus is missing ({replayed} inputs)"
    );
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
