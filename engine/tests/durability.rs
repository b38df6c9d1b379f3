//! Durable authority state with real processes: an authority killed with SIGKILL and
//! restarted remembers its votes (it refuses a conflicting order for a sequence number it
//! voted on) and its confirmations; and a committee whose members are killed at random moments
//! during a benchmark ends with every authority holding the genesis supply, every payment
//! credited once, and no vote contradicting another.

mod common;

use common::{Authority, ask, check, committee, committee_id};
use fastpay_wire::{
    AccountId, AccountInfoRequest, Amount, CertifiedTransferOrder, ConfirmationOrder, ErrorCode,
    KeyPair, Message, SequenceNumber, Transfer, TransferOrder, encode, shard_of,
};
use std::fs;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

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
    let mut authority = Authority::new(dir, 1, None);
    authority.start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = addresses[0];
    let committee = committee_id(dir);
    let order = |amount: u64, recipient: AccountId, sequence: u64| {
        TransferOrder::new(
            Transfer {
                sender: payer.account(),
                recipient,
                amount: Amount::new(amount),
                sequence_number: SequenceNumber::new(sequence),
                user_data: None,
            },
            &committee,
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

    // The reference prototype's hole: credits sent to the public port. A forged one (no
    // quorum behind its amount) and a replay of the genuine certificate's credit are both
    // ignored: balances below are exactly those of the one confirmed transfer.
    let Message::ConfirmationOrder(ConfirmationOrder { certificate }) = &confirm else {
        unreachable!()
    };
    let mut forged = certificate.clone();
    forged.value.transfer.amount = Amount::new(1_000_000);
    for credit in [forged, certificate.clone()] {
        let recipient = credit.value.transfer.recipient;
        let update = fastpay_wire::CrossShardUpdate {
            recipient_shard: shard_of(&recipient, 2),
            certificate: credit,
        };
        let bytes = encode(&Message::CrossShardUpdate(update), shard_of(&recipient, 2)).unwrap();
        for _ in 0..3 {
            socket.send_to(&bytes, to.0).unwrap();
        }
    }

    // A query without its padding would get an answer larger than itself: none comes.
    // (First drain late duplicates of earlier answers.)
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 8192];
    while socket.recv_from(&mut buf).is_ok() {}
    let unpadded = Message::AccountInfoRequest(AccountInfoRequest {
        account,
        query: fastpay_wire::AccountQuery::State,
        padding: Vec::new(),
    });
    let bytes = encode(&unpadded, shard_of(&account, 2)).unwrap();
    socket.send_to(&bytes, to.0).unwrap();
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            panic!(
                "an unpadded query got {len} bytes back (it was {} bytes)",
                bytes.len()
            );
        }
    }
    authority.kill();
    authority.start();
    let query = |id: AccountId| match ask(
        &socket,
        to,
        &id,
        &Message::AccountInfoRequest(AccountInfoRequest::new(id)),
    ) {
        Message::AccountInfoResponse(info) => info,
        other => panic!("{other:?}"),
    };
    let info = query(payer.account());
    assert_eq!(info.balance.units(), 90);
    assert_eq!(info.next_sequence_number, SequenceNumber::new(1));
    assert_eq!(query(other.account()).balance.units(), 110);

    // Again with a snapshot after every commit: recovery from the snapshot alone.
    authority.kill();
    authority.extra = vec!["--snapshot-after-bytes".into(), "1".into()];
    authority.start();
    let a1 = order(5, other.account(), 1);
    let Message::Vote(vote) = ask(&socket, to, &account, &Message::TransferOrder(a1)) else {
        panic!("no vote");
    };
    let shard_dir = dir
        .join("server1.data")
        .join(format!("shard-{}", shard_of(&account, 2)));
    // The snapshot is written in the background once the certificate store caught up: wait
    // for it to land (a loaded machine takes its time) before the crash it must survive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !shard_dir.join("snapshot").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    authority.kill();
    authority.start();
    let b1 = order(6, other.account(), 1);
    match ask(&socket, to, &account, &Message::TransferOrder(b1)) {
        Message::Error(error) => assert_eq!(error.code, ErrorCode::ConflictingOrder),
        other => panic!("voted twice after recovering from a snapshot: {other:?}"),
    }
    let Message::Vote(again) = ask(&socket, to, &account, &Message::TransferOrder(a1)) else {
        panic!("no vote");
    };
    assert_eq!(again, vote);
    assert_eq!(query(other.account()).balance.units(), 110);
    assert!(
        shard_dir.join("snapshot").exists(),
        "no snapshot in {}",
        shard_dir.display()
    );
}

/// Runs three benchmarks over 200 accounts while `victims` are SIGKILLed and restarted at
/// random moments, then checks every authority's supply and a quorum's agreement.
fn crash_during_payments(split_first: bool, kills: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, 4);
    let client = |args: &[&str]| common::client(dir, args);
    let genesis = check(
        client(&["create_accounts", "200", "--initial-funding", "100"]),
        "accounts",
    );
    fs::write(dir.join("initial_accounts.txt"), &genesis).unwrap();
    let accounts: Vec<AccountId> = genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    // Authority 1 runs one process per shard when `split_first`; the victims are those.
    let mut processes: Vec<Authority> = Vec::new();
    if split_first {
        processes.push(Authority::new(dir, 1, Some(0)));
        processes.push(Authority::new(dir, 1, Some(1)));
    } else {
        processes.push(Authority::new(dir, 1, None));
    }
    let victims = processes.len();
    for i in 2..=4 {
        processes.push(Authority::new(dir, i, None));
    }
    let victims = if split_first {
        victims
    } else {
        processes.len()
    };
    for p in &mut processes {
        // Snapshots every few dozen records, so that kills land while background snapshots
        // are being written and logs change generation.
        p.extra = vec!["--snapshot-after-bytes".into(), "20000".into()];
        p.start();
    }
    std::thread::sleep(Duration::from_millis(500));

    let runner = {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for round in 0..3 {
                let out = common::client(&dir, &["--timeout", "60", "benchmark"]);
                check(out, &format!("benchmark round {round}"));
            }
        })
    };
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for kill in 0..kills {
        std::thread::sleep(Duration::from_millis(100 + next() % 400));
        let victim = (next() % victims as u64) as usize;
        eprintln!("kill {kill}: process {victim}");
        processes[victim].kill();
        std::thread::sleep(Duration::from_millis(50 + next() % 200));
        processes[victim].start();
    }
    runner.join().unwrap();

    // Every authority holds exactly the genesis supply (credits in flight at a crash were
    // resent and applied once), and every account is back at 100.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut agree = vec![0usize; accounts.len()];
    for (a, to) in addresses.iter().enumerate() {
        // Credits between shard processes may still be on the link: give them a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut total: i128 = 0;
            let mut at_100 = vec![false; accounts.len()];
            for (i, account) in accounts.iter().enumerate() {
                let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
                match ask(&socket, *to, account, &request) {
                    Message::AccountInfoResponse(info) => {
                        total += info.balance.units();
                        at_100[i] = info.balance.units() == 100;
                    }
                    other => panic!("authority {a}: {other:?}"),
                }
            }
            if total == 200 * 100 {
                for (i, ok) in at_100.iter().enumerate() {
                    agree[i] += usize::from(*ok);
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "authority {} holds {total}, not the genesis supply {}",
                a + 1,
                200 * 100
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Each payment was acknowledged by a quorum, so any two quorums share two authorities:
    // at least two agree on every account before anyone catches up...
    for (i, n) in agree.iter().enumerate() {
        assert!(*n >= 2, "only {n} authorities agree on account {i}");
    }
    // ...and once the payers push their certificates to everyone, all four do.
    // (Credits between shard processes travel asynchronously: allow them a moment.)
    common::push_wallet_certificates(dir, &addresses, &socket);
    for (a, to) in addresses.iter().enumerate() {
        for account in &accounts {
            let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let balance = match ask(&socket, *to, account, &request) {
                    Message::AccountInfoResponse(info) => info.balance.units(),
                    other => panic!("authority {a}: {other:?}"),
                };
                if balance == 100 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "authority {}: {account} at {balance}",
                    a + 1
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_committee_survives_random_crashes_during_payments() {
    crash_during_payments(false, 6);
}

#[test]
fn shard_processes_survive_random_crashes_during_payments() {
    crash_during_payments(true, 6);
}

/// The long version: many more kills. Run with `scripts/stress.sh` or
/// `cargo test -p fastpay-engine --test durability -- --ignored`.
#[test]
#[ignore]
fn stress_crashes_during_payments() {
    for _ in 0..5 {
        crash_during_payments(false, 20);
        crash_during_payments(true, 20);
    }
}
