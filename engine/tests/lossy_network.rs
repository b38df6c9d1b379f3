//! Payments over a bad network: a UDP proxy between the client and every authority drops,
//! duplicates, delays and reorders datagrams in both directions. The client's retries still
//! complete every payment, and every authority ends with the genesis supply.

mod common;

use common::{Authority, ask, check, committee};
use fastpay_wire::{AccountId, AccountInfoRequest, Message};
use std::collections::BinaryHeap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Datagrams lost, in percent.
const DROP: u64 = 20;
/// Datagrams delivered twice, in percent.
const DUPLICATE: u64 = 10;
/// Largest added delay; random delays reorder datagrams.
const MAX_DELAY_MS: u64 = 15;

/// A datagram held back: (due, sequence, to upstream?, destination, bytes); earliest first.
type Delayed = (Instant, u64, bool, SocketAddr, Vec<u8>);

/// A faulty proxy for one authority: clients send to `front`, the proxy relays to `back` and
/// relays the answers back, mistreating datagrams both ways.
fn spawn_proxy(back: SocketAddr, stop: Arc<AtomicBool>, seed: u64) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    front.set_nonblocking(true).unwrap();
    upstream.set_nonblocking(true).unwrap();
    let address = front.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut queue: BinaryHeap<std::cmp::Reverse<Delayed>> = BinaryHeap::new();
        let mut client: Option<SocketAddr> = None;
        let mut sequence = 0u64;
        let mut buf = [0u8; 9000];
        while !stop.load(Ordering::Relaxed) {
            let mut arrived = Vec::new();
            while let Ok((len, from)) = front.recv_from(&mut buf) {
                client = Some(from);
                arrived.push((true, back, buf[..len].to_vec()));
            }
            while let Ok((len, _)) = upstream.recv_from(&mut buf) {
                if let Some(c) = client {
                    arrived.push((false, c, buf[..len].to_vec()));
                }
            }
            for (up, to, bytes) in arrived {
                if next() % 100 < DROP {
                    continue;
                }
                let copies = if next() % 100 < DUPLICATE { 2 } else { 1 };
                for _ in 0..copies {
                    let due = Instant::now() + Duration::from_millis(next() % (MAX_DELAY_MS + 1));
                    sequence += 1;
                    queue.push(std::cmp::Reverse((due, sequence, up, to, bytes.clone())));
                }
            }
            while queue.peek().is_some_and(|e| e.0.0 <= Instant::now()) {
                let Some(std::cmp::Reverse((_, _, up, to, bytes))) = queue.pop() else {
                    break;
                };
                let socket = if up { &upstream } else { &front };
                let _ = socket.send_to(&bytes, to);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    address
}

#[test]
fn payments_complete_over_a_lossy_reordering_network() {
    lossy_payments(100, 1);
}

/// The long version: 1000 accounts, five rounds of payments through the proxies.
#[test]
#[ignore]
fn stress_payments_over_a_lossy_reordering_network() {
    lossy_payments(1000, 5);
}

/// `rounds` benchmark runs (each account pays one unit to the next, so balances come back to
/// 100) of `accounts` accounts through lossy proxies, with the supply checked after each.
fn lossy_payments(accounts: usize, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, 4);
    let count = accounts.to_string();
    let genesis = check(
        common::client(
            dir,
            &["create_accounts", &count, "--initial-funding", "100"],
        ),
        "accounts",
    );
    fs::write(dir.join("initial_accounts.txt"), &genesis).unwrap();
    let accounts_list: Vec<AccountId> = genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    let mut processes: Vec<Authority> = (1..=4).map(|i| Authority::new(dir, i, None)).collect();
    for p in &mut processes {
        p.start();
    }

    // The client's committee file points at the proxies.
    let stop = Arc::new(AtomicBool::new(false));
    let real = fs::read_to_string(dir.join("committee.json")).unwrap();
    let mut proxied = String::new();
    for (i, line) in real.lines().enumerate() {
        let mut entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let front = spawn_proxy(addresses[i].0, stop.clone(), 0x9e37_79b9 * (i as u64 + 1));
        entry["port"] = front.port().into();
        proxied += &format!("{entry}\n");
    }
    fs::write(dir.join("proxied.json"), proxied).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..rounds {
        let out = std::process::Command::new(&*common::CLIENT)
            .current_dir(dir)
            .args(["--committee", "proxied.json", "--accounts", "accounts.json"])
            .args(["--timeout", "60", "benchmark"])
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_str(check(out, "benchmark over the lossy network").trim()).unwrap();
        assert_eq!(report["transfers"], accounts);
        // Every authority holds the genesis supply even before any catch-up.
        supply_and_balances(&addresses, &accounts_list, &socket, false);
    }
    stop.store(true, Ordering::Relaxed);
    // Authorities that missed a confirmation (the client stops at a quorum of
    // acknowledgements) catch up when the payer pushes its certificates; then every account
    // is back at 100 everywhere.
    common::push_wallet_certificates(dir, &addresses, &socket);
    supply_and_balances(&addresses, &accounts_list, &socket, true);
}

fn supply_and_balances(
    addresses: &[(SocketAddr, u32)],
    accounts: &[AccountId],
    socket: &UdpSocket,
    settled: bool,
) {
    let mut at_100 = vec![0; accounts.len()];
    for (a, to) in addresses.iter().enumerate() {
        let mut total = 0;
        for (i, account) in accounts.iter().enumerate() {
            let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
            match ask(socket, *to, account, &request) {
                Message::AccountInfoResponse(info) => {
                    total += info.balance.units();
                    at_100[i] += usize::from(info.balance.units() == 100);
                }
                other => panic!("authority {a}: {other:?}"),
            }
        }
        assert_eq!(total, 100 * 100, "authority {} lost or made money", a + 1);
    }
    if settled {
        assert!(at_100.iter().all(|n| *n == 4), "{at_100:?}");
    }
}
