//! A shard's per-batch pipeline fed arbitrary datagrams (the input is a batch: each datagram
//! preceded by its length as two little-endian bytes). Nothing panics, and whatever the batch
//! does, the shard's books and its supply report still hold the genesis supply.

#![no_main]
#![forbid(unsafe_code)]

use fastpay_wire::Datagrams;
use fastpay_fuzz::{GENESIS_SUPPLY, split_batch, worker};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|input: &[u8]| {
    let mut worker = worker(false);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut batch = Datagrams::new();
    for datagram in split_batch(input) {
        batch.push(peer, datagram);
    }
    worker.handle_batch(std::time::Duration::ZERO, &batch);
    let total: i128 = worker
        .shard()
        .snapshot()
        .accounts
        .iter()
        .map(|(_, account)| account.balance.units())
        .sum();
    assert_eq!(total, GENESIS_SUPPLY, "a batch created or destroyed money");
    // The supply report that `client audit` reads says the same (one shard: nothing sent).
    let supply = worker.shard().supply();
    assert_eq!(supply.held.units(), total);
    assert_eq!((supply.genesis, supply.sent, supply.received), (400, 0, 0));
});
