//! Datagrams for every shard reach their owner, with the BPF steering program and with plain
//! flow-hash spreading (where misrouted datagrams are handed over between shards), and the
//! answers are the same either way.

use fastpay_authority::Genesis;
use fastpay_engine::counters::Counter;
use fastpay_engine::runtime::{Engine, EngineConfig};
use fastpay_wire::{
    AccountId, AccountInfoRequest, Amount, Committee, KeyPair, Message, decode, encode, shard_of,
};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: u32 = 4;
const ACCOUNTS: usize = 200;
const CLIENT_SOCKETS: usize = 32;

/// Runs one authority and queries every account from many source ports; returns the answers
/// by account and the fraction of datagrams that needed an in-process hop.
fn query_all(steering: bool) -> (BTreeMap<AccountId, String>, f64) {
    let key = KeyPair::from_seed([7; 32]);
    let committee = Arc::new(Committee::equal_weights([key.authority()], SHARDS).unwrap());
    let accounts: Vec<AccountId> = (0..ACCOUNTS as u64)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            KeyPair::from_seed(seed).account()
        })
        .collect();
    let genesis = Genesis::from_accounts(
        accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, Amount::new(1000 + i as u64))),
    )
    .unwrap();
    let engine = Engine::start(EngineConfig {
        key_seed: key.seed(),
        committee,
        listen: "127.0.0.1:0".parse().unwrap(),
        genesis,
        cores: None,
        steering,
        only_shard: None,
        link_addresses: Vec::new(),
        queue_capacity: fastpay_engine::runtime::QUEUE_CAPACITY,
        data_dir: None,
        voting_record: None,
        snapshot_after_bytes: fastpay_engine::store::SNAPSHOT_AFTER_BYTES,
        shed_after: Some(fastpay_node::DEFAULT_SHED_AFTER),
        redeem_approver: None,
    })
    .unwrap();
    let server = engine.local_addr();
    let sockets: Vec<UdpSocket> = (0..CLIENT_SOCKETS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            s
        })
        .collect();

    let mut answers = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answers.len() < ACCOUNTS && Instant::now() < deadline {
        for (i, account) in accounts.iter().enumerate() {
            if answers.contains_key(account) {
                continue;
            }
            let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
            let bytes = encode(&request, shard_of(account, SHARDS)).unwrap();
            sockets[i % CLIENT_SOCKETS].send_to(&bytes, server).unwrap();
        }
        let mut buf = [0u8; 2048];
        for socket in &sockets {
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                match decode(&buf[..len]).unwrap() {
                    (header, Message::AccountInfoResponse(info)) => {
                        assert_eq!(header.shard, shard_of(&info.account, SHARDS));
                        answers.insert(info.account, format!("{info:?}"));
                    }
                    other => panic!("unexpected reply {other:?}"),
                }
            }
        }
    }
    let counters = engine.counters().to_vec();
    engine.shutdown();
    assert_eq!(answers.len(), ACCOUNTS, "some accounts never answered");
    let received: u64 = counters.iter().map(|c| c.get(Counter::Received)).sum();
    let hops: u64 = counters.iter().map(|c| c.get(Counter::WrongShard)).sum();
    for (shard, c) in counters.iter().enumerate() {
        assert!(
            c.get(Counter::Queried) > 0,
            "shard {shard} answered nothing"
        );
    }
    (answers, hops as f64 / received as f64)
}

#[test]
fn every_shard_is_reached_with_and_without_steering() {
    let (steered, steered_hops) = query_all(true);
    let (spread, spread_hops) = query_all(false);
    eprintln!(
        "in-process hops: {:.1}% with BPF steering, {:.1}% with flow-hash spreading",
        steered_hops * 100.0,
        spread_hops * 100.0
    );
    assert_eq!(steered, spread, "answers differ between the two routings");
    assert_eq!(
        steered_hops, 0.0,
        "BPF steering let datagrams land on the wrong shard"
    );
    assert!(spread_hops > 0.0, "flow-hash spreading never needed a hop");
}
