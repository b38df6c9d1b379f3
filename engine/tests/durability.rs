//! Durable authority state with real processes: an authority killed with SIGKILL and
//! restarted remembers its votes (it refuses a conflicting order for a sequence number it
//! voted on) and its confirmations; and a committee whose members are killed at random moments
//! during a benchmark ends with every authority holding the genesis supply, every payment
//! credited once, and no vote contradicting another.

mod common;

use common::{CLIENT, SERVER, check, free_port};
use fastpay_wire::{
    AccountId, AccountInfoRequest, Amount, CertifiedTransferOrder, ConfirmationOrder, ErrorCode,
    KeyPair, Message, SequenceNumber, Transfer, TransferOrder, decode, encode, shard_of,
};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Authority {
    dir: PathBuf,
    index: usize,
    child: Option<Child>,
}

impl Authority {
    fn start(&mut self) {
        let child = Command::new(SERVER)
            .current_dir(&self.dir)
            .args(["--server", &format!("server{}.json", self.index), "run"])
            .args(["--initial-accounts", "initial_accounts.txt"])
            .args(["--committee", "committee.json", "--stats-interval", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: no chance to flush anything.
            let _ = child.wait();
        }
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Generates `count` authorities with 2 shards each into `dir`; returns their addresses.
fn committee(dir: &Path, count: usize) -> Vec<(SocketAddr, u32)> {
    let mut text = String::new();
    let mut addresses = Vec::new();
    for i in 1..=count {
        let port = free_port();
        text += &check(
            Command::new(SERVER)
                .current_dir(dir)
                .args(["--server", &format!("server{i}.json"), "generate"])
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--shards",
                    "2",
                ])
                .output()
                .unwrap(),
            "generate",
        );
        addresses.push((SocketAddr::from(([127, 0, 0, 1], port)), 2));
    }
    fs::write(dir.join("committee.json"), text).unwrap();
    addresses
}

/// Sends `message` about `account` to an authority until it answers; returns the answer.
fn ask(
    socket: &UdpSocket,
    to: (SocketAddr, u32),
    account: &AccountId,
    message: &Message,
) -> Message {
    let bytes = encode(message, shard_of(account, to.1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        socket.send_to(&bytes, to.0).unwrap();
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            if from == to.0 {
                return decode(&buf[..len]).unwrap().1;
            }
        }
    }
    panic!("no answer from {}", to.0);
}

#[test]
fn a_restarted_authority_remembers_its_votes_and_confirmations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, 1);
    let payer = KeyPair::from_seed([1; 32]);
    let other = KeyPair::from_seed([2; 32]);
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("{}:100\n{}:100\n", payer.account(), other.account()),
    )
    .unwrap();
    let mut authority = Authority {
        dir: dir.to_path_buf(),
        index: 1,
        child: None,
    };
    authority.start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = addresses[0];
    let order = |amount: u64, recipient: AccountId, sequence: u64| {
        TransferOrder::new(
            Transfer {
                sender: payer.account(),
                recipient,
                amount: Amount::new(amount),
                sequence_number: SequenceNumber::new(sequence),
                user_data: None,
            },
            &payer,
        )
    };
    let account = payer.account();

    // Vote for A, crash, restart: a conflicting B for the same sequence number is refused,
    // and A gets the very same vote again.
    let a = order(10, other.account(), 0);
    let Message::Vote(first) = ask(&socket, to, &account, &Message::TransferOrder(a)) else {
        panic!("no vote");
    };
    authority.kill();
    authority.start();
    let b = order(90, AccountId([7; 32]), 0);
    match ask(&socket, to, &account, &Message::TransferOrder(b)) {
        Message::Error(error) => assert_eq!(error.code, ErrorCode::ConflictingOrder),
        other => panic!("a restarted authority voted for a conflicting order: {other:?}"),
    }
    let Message::Vote(again) = ask(&socket, to, &account, &Message::TransferOrder(a)) else {
        panic!("no vote after restart");
    };
    assert_eq!(again, first);

    // Confirm A (a committee of one: its own vote is the quorum), crash, restart: the debit
    // and the credit (on the other shard, or the same) are still there.
    let certificate = CertifiedTransferOrder {
        value: a,
        signatures: vec![(first.authority, first.signature)],
    };
    let confirm = Message::ConfirmationOrder(ConfirmationOrder { certificate });
    assert!(matches!(
        ask(&socket, to, &account, &confirm),
        Message::AccountInfoResponse(_)
    ));
    authority.kill();
    authority.start();
    let query = |id: AccountId| match ask(
        &socket,
        to,
        &id,
        &Message::AccountInfoRequest(AccountInfoRequest { account: id }),
    ) {
        Message::AccountInfoResponse(info) => info,
        other => panic!("{other:?}"),
    };
    let info = query(payer.account());
    assert_eq!(info.balance.units(), 90);
    assert_eq!(info.next_sequence_number, SequenceNumber::new(1));
    assert_eq!(query(other.account()).balance.units(), 110);
}

#[test]
fn a_committee_survives_random_crashes_during_payments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, 4);
    let client = |args: &[&str]| {
        Command::new(CLIENT)
            .current_dir(dir)
            .args([
                "--committee",
                "committee.json",
                "--accounts",
                "accounts.json",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let genesis = check(
        client(&["create_accounts", "200", "--initial-funding", "100"]),
        "accounts",
    );
    fs::write(dir.join("initial_accounts.txt"), &genesis).unwrap();
    let accounts: Vec<AccountId> = genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    let mut authorities: Vec<Authority> = (1..=4)
        .map(|index| Authority {
            dir: dir.to_path_buf(),
            index,
            child: None,
        })
        .collect();
    for a in &mut authorities {
        a.start();
    }
    std::thread::sleep(Duration::from_millis(500));

    // Benchmarks run in the background (each account pays one unit to the next, three
    // times over) while one authority at a time is killed and restarted.
    let runner = {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for round in 0..3 {
                let out = Command::new(CLIENT)
                    .current_dir(&dir)
                    .args([
                        "--committee",
                        "committee.json",
                        "--accounts",
                        "accounts.json",
                    ])
                    .args(["--timeout", "60", "benchmark"])
                    .output()
                    .unwrap();
                check(out, &format!("benchmark round {round}"));
            }
        })
    };
    let mut seed = std::process::id() as u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for kill in 0..6 {
        std::thread::sleep(Duration::from_millis(100 + next() % 400));
        let victim = (next() % 4) as usize;
        eprintln!("kill {kill}: authority {}", victim + 1);
        authorities[victim].kill();
        std::thread::sleep(Duration::from_millis(50 + next() % 200));
        authorities[victim].start();
    }
    runner.join().unwrap();

    // Every authority holds exactly the genesis supply (credits in flight at a crash were
    // resent and applied once), and a quorum agrees every account is back at 100.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut agree = vec![0usize; accounts.len()];
    for (a, to) in addresses.iter().enumerate() {
        let mut total: i128 = 0;
        for (i, account) in accounts.iter().enumerate() {
            let request = Message::AccountInfoRequest(AccountInfoRequest { account: *account });
            match ask(&socket, *to, account, &request) {
                Message::AccountInfoResponse(info) => {
                    total += info.balance.units();
                    if info.balance.units() == 100 {
                        agree[i] += 1;
                    }
                }
                other => panic!("authority {a}: {other:?}"),
            }
        }
        assert_eq!(
            total,
            200 * 100,
            "authority {} does not hold the genesis supply",
            a + 1
        );
    }
    for (i, n) in agree.iter().enumerate() {
        assert!(*n >= 3, "only {n} authorities agree on account {i}");
    }
}
