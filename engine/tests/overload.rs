//! A real authority process offered far more orders at once than it can check within its
//! shedding budget: it answers every one, votes for those it reached in time, refuses the rest
//! as `Overloaded` without checking them (and counts them), and votes for each refused order
//! once its client sends it again at a pace the authority keeps up with.

mod common;

use common::{Authority, committee, committee_id};
use fastpay_wire::{ErrorCode, KeyPair, Message, decode, encode, shard_of};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

const ORDERS: usize = 3_000;

#[test]
fn an_overloaded_authority_sheds_stale_orders_and_answers_each() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = committee(dir.path(), 1);
    let (address, shards) = addresses[0];
    let id = committee_id(dir.path());
    let payers: Vec<KeyPair> = (0..ORDERS)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            KeyPair::from_seed(seed)
        })
        .collect();
    let payee = KeyPair::from_seed([9; 32]).account();
    let genesis: String = payers
        .iter()
        .map(|k| format!("{}:100\n", k.account()))
        .collect();
    fs::write(dir.path().join("initial_accounts.txt"), genesis).unwrap();

    let log = dir.path().join("server1.log");
    let mut authority = Authority::new(dir.path(), 1, None);
    // A 2 ms budget: the burst below takes tens of milliseconds of signature checks.
    authority.extra = vec!["--shed-after-ms".into(), "2".into()];
    authority.log = Some(log.clone());
    authority.start();

    // A receive buffer with room for every answer to the burst.
    let socket = fastpay_udp::bind_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let datagrams: Vec<Vec<u8>> = payers
        .iter()
        .map(|payer| {
            let order = common::order(&id, payer, payee, 1, 0);
            encode(
                &Message::TransferOrder(order),
                shard_of(&payer.account(), shards),
            )
            .unwrap()
        })
        .collect();
    let index: HashMap<_, _> = payers
        .iter()
        .enumerate()
        .map(|(i, k)| (k.account(), i))
        .collect();

    // Wait until it serves: one order answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 8192];
    let mut voted = HashSet::new();
    while voted.is_empty() {
        assert!(Instant::now() < deadline, "the authority never answered");
        socket.send_to(&datagrams[0], address).unwrap();
        if let Ok((len, _)) = socket.recv_from(&mut buf)
            && let Ok((_, Message::Vote(vote))) = decode(&buf[..len])
        {
            voted.insert(index[&vote.sender]);
        }
    }

    // The burst: every order at once.
    for datagram in &datagrams[1..] {
        socket.send_to(datagram, address).unwrap();
    }
    let mut shed = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while voted.len() + shed.len() < ORDERS && Instant::now() < deadline {
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        match decode(&buf[..len]).unwrap().1 {
            Message::Vote(vote) => {
                voted.insert(index[&vote.sender]);
            }
            Message::Error(refusal) => {
                assert_eq!(refusal.code, ErrorCode::Overloaded, "{refusal:?}");
                shed.insert(index[&refusal.account]);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        voted.len() + shed.len(),
        ORDERS,
        "every order is answered: {} votes, {} shed",
        voted.len(),
        shed.len()
    );
    assert!(!shed.is_empty(), "nothing was shed");
    let shed_in_burst = shed.len();

    // Sent again one at a time, each refused order gets its vote.
    for &i in &shed {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "order {i} never got a vote");
            socket.send_to(&datagrams[i], address).unwrap();
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => match decode(&buf[..len]).unwrap().1 {
                    Message::Vote(vote) if vote.sender == payers[i].account() => break,
                    _ => {}
                },
                Err(_) => continue,
            }
        }
    }

    authority.terminate();
    let stderr = fs::read_to_string(&log).unwrap();
    let counted: u64 = stderr
        .lines()
        .filter_map(|line| line.split("shed_orders=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(
        counted >= shed_in_burst as u64,
        "counters say {counted} shed, the client saw {shed_in_burst}:\n{stderr}"
    );
}
