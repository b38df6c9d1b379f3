//! Authorities keep certificates, and clients recover from the committee (issue 12), with
//! real processes on 127.0.0.1: a payment to another wallet is spendable there; a recipient
//! spends money received while an authority was down after it returns and another fails; a
//! `client transfer` SIGKILLed at random moments never leaves the account unusable nor
//! changes the total; a wallet that lost its certificate recovers it; an authority restarted
//! from a wiped data directory is brought up to date by clients' syncs; one client process
//! per wallet.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{
    Authority, CLIENT, check, client_with, committee_balance, committee_with_accounts, fails_with,
    new_account,
};
use fastpay_wire::{AccountId, AccountInfoRequest, KeyPair, Message, SequenceNumber};

#[test]
fn a_payment_to_another_wallet_is_spendable_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_authorities, accounts) = committee_with_accounts(dir, 2);
    let bob = new_account(dir, "bob.json");
    common::pay_one(dir, &accounts[0], &bob, "pay bob");
    check(
        common::client(
            dir,
            &["transfer", "29", "--from", &accounts[0], "--to", &bob],
        ),
        "pay bob more",
    );
    // Bob's wallet knows nothing of it, but learns it from the committee and spends it.
    let sync = check(client_with(dir, "bob.json", &["sync"]), "bob's sync");
    assert!(sync.contains("\"received\":2"), "{sync}");
    assert!(sync.contains("\"balance\":30"), "{sync}");
    check(
        client_with(
            dir,
            "bob.json",
            &["transfer", "25", "--from", &bob, "--to", &accounts[1]],
        ),
        "bob spends what he received",
    );
    assert_eq!(committee_balance(dir, &bob), 5);
    common::await_committee_balance(dir, &accounts[1], 125);
    // Nothing is learned twice.
    let again = check(client_with(dir, "bob.json", &["sync", &bob]), "sync again");
    assert!(
        again.contains("\"received\":0") && again.contains("\"balance\":5"),
        "{again}"
    );

    // An account imported with its secret from another wallet can pay there; a watched one
    // sees its payments and cannot.
    let key = KeyPair::generate().unwrap();
    let carol = key.account().to_string();
    common::pay_one(dir, &accounts[1], &carol, "pay carol");
    let secret = hex::encode(key.seed());
    check(
        client_with(dir, "carol.json", &["import", "--secret", &secret]),
        "import carol",
    );
    check(
        client_with(
            dir,
            "carol.json",
            &["transfer", "1", "--from", &carol, "--to", &bob],
        ),
        "carol pays from her imported account",
    );
    let watched = check(
        client_with(dir, "watch.json", &["import", "--watch", &bob]),
        "watch bob",
    );
    assert_eq!(watched.trim(), bob);
    // It learns Bob's payments (30 + 1) and his own transfer (25) from the committee.
    let seen = check(client_with(dir, "watch.json", &["sync"]), "watcher's sync");
    assert!(
        seen.contains("\"balance\":6") && seen.contains("\"watch_only\":true"),
        "{seen}"
    );
    fails_with(
        client_with(
            dir,
            "watch.json",
            &["transfer", "1", "--from", &bob, "--to", &carol],
        ),
        "watch-only",
    );
}

#[test]
fn a_recipient_spends_what_it_received_while_an_authority_was_down_after_another_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut authorities, accounts) = committee_with_accounts(dir, 3);
    let bob = new_account(dir, "bob.json");
    // Authority 4 is down while Alice pays Bob (from both shards' accounts, so the
    // confirmations Bob pushes later go to the payers' shards, not his own).
    authorities[3].kill();
    for payer in &accounts {
        check(
            common::client(dir, &["transfer", "20", "--from", payer, "--to", &bob]),
            "pay bob",
        );
    }
    // It comes back knowing nothing of those payments; then authority 1 fails.
    authorities[3].start();
    common::wait_serving(dir, &accounts[0]);
    authorities[0].kill();
    // Bob's transfer needs authority 4's vote, which needs the credits: Bob's wallet learns
    // the payments and pushes each confirmation to the payer's shard of authority 4.
    check(
        client_with(
            dir,
            "bob.json",
            &[
                "--timeout",
                "20",
                "transfer",
                "55",
                "--from",
                &bob,
                "--to",
                &accounts[0],
            ],
        ),
        "bob spends with authority 1 down and authority 4 lagging",
    );
    assert_eq!(committee_balance(dir, &bob), 5);
}

/// SIGKILLs `client transfer` at random moments, many times: the account stays usable and
/// the total of the accounts involved never changes.
#[test]
fn a_transfer_killed_at_random_moments_never_leaves_the_account_unusable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_authorities, accounts) = committee_with_accounts(dir, 2);
    let (alice, bob) = (&accounts[0], &accounts[1]);
    let mut seed = 0x9e37_79b9_u64;
    let mut killed = 0;
    for round in 0..25 {
        let mut child = Command::new(&*CLIENT)
            .current_dir(dir)
            .args([
                "--committee",
                "committee.json",
                "--accounts",
                "accounts.json",
            ])
            .args(["transfer", "1", "--from", alice, "--to", bob])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A moment anywhere in a transfer (which takes a few milliseconds here).
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_micros((seed >> 33) % 40_000);
        let start = Instant::now();
        while start.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Every few kills: the account is usable (a sync finishes whatever was cut short)
        // and the two accounts still hold 200 between them (credits land within moments;
        // more than 200 would be money made).
        if round % 5 == 4 {
            check(common::client(dir, &["sync", alice]), "sync after a kill");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let total = committee_balance(dir, alice) + committee_balance(dir, bob);
                assert!(total <= 200, "money made: {total}");
                if total == 200 {
                    break;
                }
                assert!(Instant::now() < deadline, "money lost: {total}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(killed > 5, "only {killed} runs were killed mid-transfer");
    // The next run finishes whatever was interrupted and pays.
    check(
        common::client(dir, &["transfer", "1", "--from", alice, "--to", bob]),
        "a transfer after the kills",
    );
    let a = committee_balance(dir, alice);
    common::await_committee_balance(dir, bob, 200 - a);
    assert!(a < 100, "alice paid");
    let sync = check(common::client(dir, &["sync", alice]), "sync alice");
    assert!(sync.contains(&format!("\"balance\":{a}")), "{sync} vs {a}");
}

#[test]
fn a_wallet_that_lost_its_certificate_recovers_it_from_the_committee() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_authorities, accounts) = committee_with_accounts(dir, 2);
    let (alice, bob) = (&accounts[0], &accounts[1]);
    common::pay_one(dir, alice, bob, "first payment");
    // The wallet as a crash before it saved the certificate leaves it: still voting on the
    // order, balance and sequence number before the payment.
    let path = dir.join("accounts.json");
    let mut wallet: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    for account in wallet["accounts"].as_array_mut().unwrap() {
        let state = &mut account["state"];
        if state["account"].as_str() != Some(alice.as_str()) {
            continue;
        }
        let certificate = state["sent_certificates"]
            .as_array_mut()
            .unwrap()
            .pop()
            .unwrap();
        state["balance"] = serde_json::json!(100);
        state["next_sequence_number"] = serde_json::json!(0);
        state["pending"] =
            serde_json::json!({"Voting": {"order": certificate["value"], "votes": {}}});
        state["acknowledged"] = serde_json::json!({});
    }
    fs::write(&path, serde_json::to_string(&wallet).unwrap()).unwrap();
    // The committee applied it and cleared its votes: only its stores can finish it.
    check(
        common::client(dir, &["transfer", "1", "--from", alice, "--to", bob]),
        "a transfer after the lost certificate",
    );
    assert_eq!(committee_balance(dir, alice), 98);
    let sync = check(common::client(dir, &["sync", alice]), "sync alice");
    assert!(
        sync.contains("\"balance\":98") && sync.contains("\"next_sequence_number\":2"),
        "{sync}"
    );
}

#[test]
fn an_authority_restarted_from_a_wiped_data_directory_is_brought_up_to_date_by_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut authorities, accounts) = committee_with_accounts(dir, 2);
    let (alice, bob) = (&accounts[0], &accounts[1]);
    for _ in 0..3 {
        common::pay_one(dir, alice, bob, "payment");
    }
    // A replaced machine: authority 4 loses its data directory. It refuses to vote again in
    // the network it voted in (network_instances.rs) unless its operator points it at a new
    // voting record, accepting it as one of the f faulty authorities it may now be.
    authorities[3].kill();
    fs::remove_dir_all(dir.join("server4.data")).unwrap();
    authorities[3].extra = vec!["--voting-record".into(), "server4.replaced.voted".into()];
    authorities[3].start();
    let addresses = committee_addresses(dir);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let alice_id: AccountId = alice.parse().unwrap();
    let bob_id: AccountId = bob.parse().unwrap();
    let state = |account: &AccountId| match common::ask(
        &socket,
        addresses[3],
        account,
        &Message::AccountInfoRequest(AccountInfoRequest::new(*account)),
    ) {
        Message::AccountInfoResponse(info) => (info.balance.units(), info.next_sequence_number),
        other => panic!("{other:?}"),
    };
    assert_eq!(state(&alice_id), (100, SequenceNumber::ZERO), "wiped");
    check(common::client(dir, &["sync"]), "the wallet's sync");
    assert_eq!(state(&alice_id), (97, SequenceNumber::new(3)));
    assert_eq!(state(&bob_id).0, 103);
    // And it serves the certificates it was given.
    let query = AccountInfoRequest::certificate(alice_id, SequenceNumber::new(2), 0);
    match common::ask(
        &socket,
        addresses[3],
        &alice_id,
        &Message::AccountInfoRequest(query),
    ) {
        Message::Certificates(response) => assert!(
            matches!(
                response.answer,
                fastpay_wire::CertificateAnswer::Certificate(_)
            ),
            "{response:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn certificates_survive_snapshots_and_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::committee(dir, 4);
    let accounts = common::fund_accounts(dir, 2);
    let mut authorities: Vec<Authority> = (1..=4)
        .map(|i| {
            let mut a = Authority::new(dir, i, None);
            // Snapshots every few payments: the logs holding the certificates are deleted.
            a.extra = vec!["--snapshot-after-bytes".into(), "2048".into()];
            a
        })
        .collect();
    for a in &mut authorities {
        a.start();
    }
    common::wait_serving(dir, &accounts[0]);
    for _ in 0..12 {
        common::pay_one(dir, &accounts[0], &accounts[1], "payment");
    }
    std::thread::sleep(Duration::from_millis(300));
    let snapshots = (1..=4)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .filter(|(i, j)| {
            dir.join(format!("server{i}.data/shard-{j}/snapshot"))
                .exists()
        })
        .count();
    assert!(snapshots >= 4, "only {snapshots} shards took a snapshot");
    for a in &mut authorities {
        a.kill();
        a.start();
    }
    common::wait_serving(dir, &accounts[0]);
    let alice: AccountId = accounts[0].parse().unwrap();
    let bob: AccountId = accounts[1].parse().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for address in committee_addresses(dir) {
        for sequence in [0, 5, 11] {
            let query = AccountInfoRequest::certificate(alice, SequenceNumber::new(sequence), 0);
            match common::ask(
                &socket,
                address,
                &alice,
                &Message::AccountInfoRequest(query),
            ) {
                Message::Certificates(response) => match response.answer {
                    fastpay_wire::CertificateAnswer::Certificate(c) => {
                        assert_eq!(c.value.transfer.sequence_number.value(), sequence)
                    }
                    other => panic!("{}: {other:?}", address.0),
                },
                other => panic!("{other:?}"),
            }
        }
        // Bob's twelve payments, each once.
        let mut from = 0;
        let mut got = 0;
        loop {
            let query = AccountInfoRequest::received(bob, from, 0);
            let Message::Certificates(response) =
                common::ask(&socket, address, &bob, &Message::AccountInfoRequest(query))
            else {
                panic!("no page");
            };
            let fastpay_wire::CertificateAnswer::Received {
                certificates,
                next,
                end,
            } = response.answer
            else {
                panic!("{:?}", response.answer);
            };
            got += certificates.len();
            if next >= end {
                break;
            }
            from = next;
        }
        assert_eq!(got, 12, "{}", address.0);
    }
    let sync = check(common::client(dir, &["sync", &accounts[1]]), "bob's sync");
    assert!(sync.contains("\"balance\":112"), "{sync}");
}

#[test]
fn one_client_process_per_wallet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::committee(dir, 4);
    let accounts = common::fund_accounts(dir, 2);
    let lock = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("accounts.json.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    fs::write(dir.join("accounts.json.lock"), "4242").unwrap();
    fails_with(
        common::client(
            dir,
            &[
                "transfer",
                "1",
                "--from",
                &accounts[0],
                "--to",
                &accounts[1],
            ],
        ),
        "in use by pid 4242",
    );
    drop(lock);
    // Free again: this one gets as far as the network (no authority runs here).
    let free = common::client(
        dir,
        &[
            "--timeout",
            "1",
            "transfer",
            "1",
            "--from",
            &accounts[0],
            "--to",
            &accounts[1],
        ],
    );
    let stderr = String::from_utf8_lossy(&free.stderr);
    assert!(!stderr.contains("in use"), "{stderr}");
}

/// The authorities' addresses and shard counts from `committee.json`.
fn committee_addresses(dir: &Path) -> Vec<(std::net::SocketAddr, u32)> {
    let file = fastpay_wire::CommitteeFile::load(&dir.join("committee.json")).unwrap();
    file.authorities
        .iter()
        .map(|a| (a.address().unwrap(), a.shards))
        .collect()
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A shard with a million certificates in its store runs in the memory of one with none
/// (same accounts): the store's page cache is bounded. Prints both sizes and the store's
/// disk use. `FASTPAY_CERT_ACCOUNTS` / `FASTPAY_CERTS` change the sizes (default 1,000,000
/// each).
#[test]
#[ignore = "stress: builds a million-account genesis and a million-certificate store"]
fn stress_a_million_certificates_cost_no_memory() {
    use fastpay_engine::certificates::CertificateStore;
    use fastpay_node::AppliedCertificate;
    use fastpay_wire::{
        Amount, AuthorityName, CertifiedTransferOrder, Signature, Transfer, TransferOrder,
    };
    let size = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let (count, certificates) = (size("FASTPAY_CERT_ACCOUNTS"), size("FASTPAY_CERTS"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = common::free_port_with_room(1);
    let committee = check(
        Command::new(common::SERVER)
            .current_dir(dir)
            .args([
                "--server",
                "server1.json",
                "generate",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string(), "--shards", "1"])
            .output()
            .unwrap(),
        "generate",
    );
    fs::write(dir.join("committee.json"), committee).unwrap();
    let accounts: Vec<AccountId> = (0..count)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            KeyPair::from_seed(seed).account()
        })
        .collect();
    let genesis: String = accounts.iter().map(|a| format!("{a}:100\n")).collect();
    fs::write(dir.join("initial_accounts.txt"), genesis).unwrap();
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    let mut results = Vec::new();
    for filled in [false, true] {
        let data = dir.join(if filled { "data-full" } else { "data-empty" });
        if filled {
            let started = Instant::now();
            fs::create_dir_all(data.join("shard-0")).unwrap();
            let mut store = CertificateStore::open(&data.join("shard-0")).unwrap();
            let votes: Vec<(AuthorityName, fastpay_wire::VoteSignature)> = (0..3u8)
                .map(|i| {
                    (
                        AuthorityName([i; 32]),
                        fastpay_wire::VoteSignature::Single(Signature([i; 64])),
                    )
                })
                .collect();
            let senders = (certificates / 100).max(1);
            let mut batch = Vec::new();
            for n in 0..certificates {
                let (sender, sequence) = (n % senders, n / senders);
                let transfer = Transfer {
                    sender: accounts[sender as usize % accounts.len()],
                    recipient: accounts[(n as usize * 7919) % accounts.len()],
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::new(sequence),
                    user_data: None,
                };
                batch.push(AppliedCertificate {
                    certificate: CertifiedTransferOrder {
                        value: TransferOrder {
                            transfer,
                            signature: Signature([9; 64]),
                        },
                        signatures: votes.clone(),
                    },
                    arrival: Some(n),
                });
                if batch.len() == 10_000 {
                    store.store(&batch).unwrap();
                    batch.clear();
                }
            }
            store.store(&batch).unwrap();
            store.sync().unwrap();
            eprintln!(
                "stored {} certificates in {:.1} s: {} bytes on disk",
                store.stored(),
                started.elapsed().as_secs_f64(),
                store.file_bytes()
            );
        }
        let mut server = Command::new(common::SERVER)
            .current_dir(dir)
            .args(["--server", "server1.json", "run"])
            .args(["--initial-accounts", "initial_accounts.txt"])
            .args(["--committee", "committee.json", "--stats-interval", "0"])
            .args(["--data-dir", data.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Serving, then reading payments of many accounts (the store's pages go through its
        // cache; the empty store answers the same queries with empty pages).
        let mut served = 0;
        for i in 0..2_000usize {
            let account = accounts[(i * 104_729) % accounts.len()];
            let query = AccountInfoRequest::received(account, 0, 0);
            if let Message::Certificates(_) = common::ask(
                &socket,
                (address, 1),
                &account,
                &Message::AccountInfoRequest(query),
            ) {
                served += 1;
            }
        }
        assert_eq!(served, 2_000);
        let rss = rss_kib(server.id());
        eprintln!(
            "{} certificates stored: RSS {rss} KiB",
            if filled { certificates } else { 0 }
        );
        results.push(rss);
        let _ = server.kill();
        let _ = server.wait();
    }
    let (empty, full) = (results[0], results[1]);
    assert!(
        full * 10 <= empty * 11,
        "a million certificates cost memory: {full} KiB against {empty} KiB"
    );
}

/// A committee of 40 members signing batched votes: a payment is confirmed, every authority
/// serves its certificate (trimmed to a quorum of 27) to a query of the size clients send, and
/// the payee's wallet learns it and spends it. The votes of one payment come from batches of
/// one (short proofs); the largest certificate such a committee forms, 27 votes with the
/// deepest proofs (about 8 KB), is sized against one datagram in `wire/src/committee.rs`.
#[test]
fn a_committee_of_40_with_batched_votes_confirms_and_serves_its_certificates() {
    const SIZE: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::committee_with(dir, SIZE, fastpay_wire::VoteScheme::Merkle);
    let accounts = common::fund_accounts(dir, 2);
    let mut authorities: Vec<Authority> =
        (1..=SIZE).map(|i| Authority::new(dir, i, None)).collect();
    for a in &mut authorities {
        a.start();
    }
    common::wait_serving(dir, &accounts[0]);
    let bob = new_account(dir, "bob.json");
    common::pay_one(dir, &accounts[0], &bob, "pay bob in a committee of 40");
    // Every authority serves the certificate, whole, to a query of the size clients send.
    let file = fastpay_wire::CommitteeFile::load(&dir.join("committee.json")).unwrap();
    let size = fastpay_client::certificate_query_size(&file.committee);
    let bob_id: AccountId = bob.parse().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for entry in &file.authorities {
        let to = (entry.address().unwrap(), entry.shards);
        let query = AccountInfoRequest::received(bob_id, 0, size);
        // The payer's client stops at a quorum's acknowledgements: an authority outside it
        // may apply the confirmation a moment later (it knows Bob only then).
        let deadline = Instant::now() + Duration::from_secs(20);
        let page = loop {
            let answer = common::ask(
                &socket,
                to,
                &bob_id,
                &Message::AccountInfoRequest(query.clone()),
            );
            match answer {
                Message::Certificates(page) => break page,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "{}: no page: {other:?}",
                        entry.name
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let fastpay_wire::CertificateAnswer::Received { certificates, .. } = page.answer else {
            panic!("{}: {:?}", entry.name, page.answer);
        };
        let [certificate] = certificates.as_slice() else {
            panic!("{}: {} certificates", entry.name, certificates.len());
        };
        assert_eq!(file.committee.check_signers(certificate), Ok(()));
        assert_eq!(certificate.signatures.len(), 27, "trimmed to a quorum");
    }
    let sync = check(client_with(dir, "bob.json", &["sync"]), "bob's sync");
    assert!(sync.contains("\"received\":1"), "{sync}");
    check(
        client_with(
            dir,
            "bob.json",
            &["transfer", "1", "--from", &bob, "--to", &accounts[1]],
        ),
        "bob spends what he received",
    );
    common::await_committee_balance(dir, &accounts[1], 101);
}
