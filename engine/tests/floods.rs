//! A real authority process under a flood of garbage bytes, forged signatures and unpadded
//! queries, sent as fast as one thread can: honest transfers still complete, no reply is ever
//! larger than the smallest datagram the flooder sent, and the authority's memory stays
//! bounded (its queues are capped; what does not fit is dropped and counted).

mod common;

use common::{Authority, balance, committee, committee_id, fund_accounts, pay_one, wait_serving};
use fastpay_wire::{
    AccountId, AccountInfoRequest, Amount, CommitteeId, KeyPair, Message, SequenceNumber, ShardId,
    Signature, Transfer, TransferOrder, encode,
};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the flooder saw. Each kind of datagram goes out from its own socket, so a reply is
/// matched to the kind of request that caused it.
#[derive(Debug, Default)]
struct FloodReport {
    sent: u64,
    replies: u64,
    /// Per socket: (its datagrams' size, the largest reply it got).
    sizes: Vec<(usize, usize)>,
}

fn flood(
    target: (SocketAddr, u32),
    committee: CommitteeId,
    victim: AccountId,
    stop: Arc<AtomicBool>,
) -> FloodReport {
    let forger = KeyPair::from_seed([66; 32]);
    let mut forged = TransferOrder::new(
        Transfer {
            sender: victim,
            recipient: forger.account(),
            amount: Amount::new(1),
            sequence_number: SequenceNumber::new(0),
            user_data: None,
        },
        &committee,
        &forger,
    );
    forged.signature = Signature([5; 64]);
    let mut templates: Vec<Vec<u8>> = (0..target.1)
        .flat_map(|shard| {
            let shard = ShardId(shard);
            let unpadded = AccountInfoRequest {
                account: victim,
                query: fastpay_wire::AccountQuery::State,
                padding: Vec::new(),
            };
            [
                encode(&Message::TransferOrder(forged), shard).unwrap(),
                encode(&Message::AccountInfoRequest(unpadded), shard).unwrap(),
            ]
        })
        .collect();
    let mut garbage = templates[0].clone();
    for (i, byte) in garbage.iter_mut().enumerate().skip(8) {
        *byte = (i as u8).wrapping_mul(151);
    }
    templates.push(garbage);
    let sockets: Vec<UdpSocket> = templates
        .iter()
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            socket
        })
        .collect();
    let mut report = FloodReport {
        sizes: templates.iter().map(|t| (t.len(), 0)).collect(),
        ..FloodReport::default()
    };
    let mut buf = [0u8; 8192];
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let k = n % templates.len();
        n += 1;
        if sockets[k].send_to(&templates[k], target.0).is_ok() {
            report.sent += 1;
        }
        while let Ok(len) = sockets[k].recv(&mut buf) {
            report.replies += 1;
            report.sizes[k].1 = report.sizes[k].1.max(len);
        }
    }
    report
}

fn rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn honest_transfers_complete_during_a_flood() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, 1);
    let accounts = fund_accounts(dir, 2);
    let mut authority = Authority::new(dir, 1, None);
    authority.start();
    let pid = authority.pid().unwrap();
    wait_serving(dir, &accounts[0]);
    let before = rss_kb(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let victim: AccountId = accounts[0].parse().unwrap();
    let flooder = {
        let stop = stop.clone();
        let (target, committee) = (addresses[0], committee_id(dir));
        std::thread::spawn(move || flood(target, committee, victim, stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    let transfers = 5;
    for _ in 0..transfers {
        pay_one(dir, &accounts[0], &accounts[1], "transfer during the flood");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let report = flooder.join().unwrap();
    let after = rss_kb(pid);
    eprintln!("flood: {report:?}; authority RSS {before} kB -> {after} kB");

    assert!(report.sent > 10_000, "the flood was too weak: {report:?}");
    for (sent, reply) in &report.sizes {
        assert!(
            reply <= sent,
            "amplification: a {reply} byte reply to {sent} byte datagrams"
        );
    }
    // Queues are capped: the flood may fill them, but not grow memory without bound.
    assert!(
        after < before + 64 * 1024,
        "authority RSS grew from {before} kB to {after} kB under the flood"
    );
    assert_eq!(balance(dir, &accounts[0]), (100 - transfers).to_string());
    assert_eq!(balance(dir, &accounts[1]), (100 + transfers).to_string());
}

/// The value of counter `name` in a shard process's final report.
fn final_counter(log: &str, name: &str) -> u64 {
    let report = log.rsplit("final counters").next().unwrap_or("");
    report
        .split_whitespace()
        .filter_map(|field| field.strip_prefix(&format!("{name}=")))
        .filter_map(|value| value.parse::<u64>().ok())
        .sum()
}

#[test]
fn cross_shard_payments_complete_during_a_link_flood() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = committee(dir, 1)[0].0.port();
    let accounts = fund_accounts(dir, 40);
    let mut shards: Vec<Authority> = (0..2)
        .map(|j| {
            let mut shard = Authority::new(dir, 1, Some(j));
            shard.log = Some(dir.join(format!("shard-{j}.log")));
            // The links on a private address of their own, apart from the public port.
            shard.extra = vec!["--link-host".into(), "127.0.0.2".into()];
            shard.start();
            shard
        })
        .collect();
    wait_serving(dir, &accounts[0]);
    // A payer and a payee on different shards: every payment's credit crosses the link.
    let shard = |a: &String| fastpay_wire::shard_of(&a.parse().unwrap(), 2);
    let payer = accounts[0].clone();
    let payee = accounts
        .iter()
        .find(|a| shard(a) != shard(&payer))
        .unwrap()
        .clone();

    // Junk and well-formed frames with a wrong tag, from strangers, at both link ports (a
    // stranger on the same host can reach the private address too).
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            let forged = encode(
                &Message::ShardLink(fastpay_wire::ShardLink {
                    frame: fastpay_wire::LinkFrame {
                        from: ShardId(0),
                        to: ShardId(1),
                        ack: u64::MAX,
                        payload: fastpay_wire::LinkPayload::Ack,
                    },
                    tag: [7; 32],
                }),
                ShardId(1),
            )
            .unwrap();
            let junk = vec![0xa5u8; 1200];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for link in [port + 1, port + 2] {
                    for datagram in [&forged, &junk] {
                        if socket.send_to(datagram, ("127.0.0.2", link)).is_ok() {
                            sent += 1;
                        }
                    }
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let transfers = 5;
    for _ in 0..transfers {
        pay_one(dir, &payer, &payee, "transfer during the link flood");
    }
    // The credits arrive over the flooded link: wait for the payee's balance.
    let want = (100 + transfers).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while balance(dir, &payee) != want {
        assert!(
            Instant::now() < deadline,
            "credits never crossed the flooded link"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    assert_eq!(balance(dir, &payer), (100 - transfers).to_string());
    let mut strangers = 0;
    for (j, shard) in shards.iter_mut().enumerate() {
        shard.terminate();
        let log = fs::read_to_string(dir.join(format!("shard-{j}.log"))).unwrap();
        assert!(!log.contains("panicked"), "{log}");
        strangers += final_counter(&log, "link_stranger");
    }
    eprintln!("{sent} junk datagrams sent at the link ports; {strangers} dropped as strangers");
    assert!(sent > 10_000, "the flood was too weak: {sent}");
    assert!(strangers > 0, "junk from strangers was not dropped as such");
}
