//! Cross-shard credits under backpressure: with queues of capacity one between shards, credits
//! pile up in the senders' backlogs, yet every credit is applied exactly once and no shard
//! deadlocks.

use fastpay_authority::Genesis;
use fastpay_client::ClientState;
use fastpay_client::Goal;
use fastpay_engine::counters::Counter;
use fastpay_engine::runtime::{Engine, EngineConfig};
use fastpay_wallet::Network;
use fastpay_wire::{Amount, Balance, CommitteeFile, KeyPair, shard_of};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SHARDS: u32 = 4;
const ACCOUNTS: u64 = 300;

#[test]
fn credits_survive_full_queues() {
    run(true);
}

#[test]
fn credits_survive_full_queues_in_memory() {
    run(false);
}

fn run(durable: bool) {
    let authority = KeyPair::from_seed([11; 32]);
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let entry = format!(
        "{{\"name\":\"{}\",\"host\":\"127.0.0.1\",\"port\":{port},\"shards\":{SHARDS}}}",
        authority.authority()
    );
    let committee = CommitteeFile::parse(Path::new("committee.json"), &entry).unwrap();
    let shared = Arc::new(committee.committee.clone());
    let keys: Vec<KeyPair> = (0..ACCOUNTS)
        .map(|i| {
            let mut seed = [5u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            KeyPair::from_seed(seed)
        })
        .collect();
    let genesis =
        Genesis::from_accounts(keys.iter().map(|k| (k.account(), Amount::new(100)))).unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::start(EngineConfig {
        key_seed: authority.seed(),
        committee: shared.clone(),
        listen: committee.authorities[0].address().unwrap(),
        genesis,
        cores: None,
        steering: true,
        only_shard: None,
        link_addresses: Vec::new(),
        queue_capacity: 1,
        data_dir: durable.then(|| data.path().to_path_buf()),
        voting_record: None,
        // Snapshot often, so compaction runs under the backlog too.
        snapshot_after_bytes: 64 << 10,
        shed_after: Some(fastpay_node::DEFAULT_SHED_AFTER),
        redeem_approver: None,
    })
    .unwrap();

    // Everyone pays one unit to the next account, most of them on another shard.
    let accounts: Vec<_> = keys.iter().map(KeyPair::account).collect();
    let mut clients: Vec<ClientState> = keys
        .into_iter()
        .map(|k| ClientState::new(k, shared.clone(), Balance::new(100)))
        .collect();
    let mut cross = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        let to = accounts[(i + 1) % accounts.len()];
        if shard_of(&to, SHARDS) != shard_of(&accounts[i], SHARDS) {
            cross += 1;
        }
        client.transfer(to, Amount::new(1), None).unwrap();
    }
    let mut network = Network::new(&committee).unwrap();
    let driven = network.drive(
        &mut clients,
        Goal::Finished,
        Duration::from_secs(30),
        |_| {},
        |_| Ok(()),
    );
    if let Err(e) = driven {
        eprint!("{}", fastpay_engine::counters::report(engine.counters()));
        panic!("transfers did not finish: {e}");
    }

    // Credits are applied asynchronously: poll until every balance is back to 100.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for account in &accounts {
        loop {
            let answers = network.query(account, Duration::from_secs(5)).unwrap();
            let balance = answers[0].1.as_ref().unwrap().balance;
            if balance == Balance::new(100) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{account} stuck at {balance}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Senders forget every credit once its recipient applied it (else memory would grow and
    // backpressure would eventually stop the shard).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while engine
        .counters()
        .iter()
        .map(|c| c.get(Counter::Outbox))
        .sum::<u64>()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "outboxes never drained"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let counters = engine.counters().to_vec();
    engine.shutdown();
    let credited: u64 = counters.iter().map(|c| c.get(Counter::Credited)).sum();
    let backlog: u64 = counters.iter().map(|c| c.get(Counter::Backlog)).sum();
    let duplicates: u64 = counters
        .iter()
        .map(|c| c.get(Counter::DuplicateCredit))
        .sum();
    eprintln!("{cross} cross-shard credits, {backlog} parked in backlogs on the way");
    assert_eq!(credited, cross);
    assert_eq!(duplicates, 0);
    assert!(backlog > 0, "queues of capacity one never filled");
}
