//! What the fuzz targets share: a small shard to feed, and the batch format of the pipeline
//! target's inputs.

#![forbid(unsafe_code)]

use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_engine::counters::ShardCounters;
use fastpay_node::{NodeConfig, ShardNode};
use fastpay_wire::{Amount, Committee, KeyPair, ShardId};
use std::sync::Arc;

/// Accounts 1..=4 hold 100 each at genesis.
pub const GENESIS_SUPPLY: i128 = 400;

/// The key of account `i` (1..=4), or of the authority (200).
pub fn key(i: u8) -> KeyPair {
    KeyPair::from_seed([i; 32])
}

/// The committee of one: the authority (key 200) with one shard.
pub fn committee() -> Arc<Committee> {
    Arc::new(Committee::equal_weights([key(200).authority()], 1).expect("a committee of one"))
}

/// A one-shard authority (key 200) of [`committee`], with accounts 1..=4 funded.
pub fn worker(durable: bool) -> ShardNode {
    let (authority, committee) = (key(200), committee());
    let genesis = Genesis::from_accounts((1..=4).map(|i| (key(i).account(), Amount::new(100))))
        .expect("four funded accounts");
    let shard =
        AuthorityShard::new(authority, committee, ShardId(0), &genesis).expect("a valid shard");
    ShardNode::new(
        shard,
        NodeConfig::in_process(1, durable),
        Arc::new(ShardCounters::default()),
    )
}

/// Most datagrams one batch carries (the engine's recvmmsg batch).
pub const MAX_BATCH: usize = 64;

/// Splits a pipeline input into datagrams: each is preceded by its length as two
/// little-endian bytes; a short last one takes what is left.
pub fn split_batch(mut input: &[u8]) -> Vec<&[u8]> {
    let mut datagrams = Vec::new();
    while input.len() >= 2 && datagrams.len() < MAX_BATCH {
        let len = usize::from(u16::from_le_bytes([input[0], input[1]]));
        let rest = &input[2..];
        let (datagram, tail) = rest.split_at(len.min(rest.len()));
        datagrams.push(datagram);
        input = tail;
    }
    datagrams
}

/// The input that [`split_batch`] turns into `datagrams`.
pub fn join_batch<'a>(datagrams: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut input = Vec::new();
    for datagram in datagrams {
        let len = u16::try_from(datagram.len()).expect("a datagram fits in 64 KiB");
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(datagram);
    }
    input
}
