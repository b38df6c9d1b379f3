//! A new network of the same keys accepts nothing the old one signed, and an authority whose
//! data is gone does not vote again in the network it voted in (real processes, UDP on
//! 127.0.0.1): the committee is wiped, its keys kept, and it restarts.

mod common;

use common::{
    Authority, SERVER, ask, balance, check, committee, committee_id, fund_accounts, pay_one,
    wait_serving,
};
use fastpay_wire::{ConfirmationOrder, Message, TransferOrder};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AUTHORITIES: usize = 4;

/// Runs authority `index` of `dir` until it exits (a minute at most, or the test fails: it
/// should refuse to start at once); returns its stderr.
fn refused_start(dir: &Path, index: usize) -> String {
    let mut child = Command::new(SERVER)
        .current_dir(dir)
        .args(["--server", &format!("server{index}.json"), "run"])
        .args(["--initial-accounts", "initial_accounts.txt"])
        .args(["--committee", "committee.json", "--stats-interval", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                !status.success(),
                "authority {index} ran and exited cleanly"
            );
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("authority {index} started without its data in the network it voted in");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_wiped_committee_of_kept_keys_votes_again_only_as_a_new_network() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addresses = committee(dir, AUTHORITIES);
    let accounts = fund_accounts(dir, 2);
    let (payer, payee) = (&accounts[0], &accounts[1]);
    let mut authorities: Vec<Authority> = (1..=AUTHORITIES)
        .map(|i| Authority::new(dir, i, None))
        .collect();
    authorities.iter_mut().for_each(Authority::start);
    wait_serving(dir, payer);
    pay_one(dir, payer, payee, "a payment in the first network");
    assert_eq!(balance(dir, payee), "101");
    let old_network = committee_id(dir);
    let old_certificate = common::wallet_sent_certificates(dir)
        .pop()
        .expect("the wallet kept its certificate");
    authorities.iter_mut().for_each(Authority::terminate);

    // Every authority's data wiped, keys and committee file kept: no shard starts again in
    // the network it voted in.
    for i in 1..=AUTHORITIES {
        fs::remove_dir_all(dir.join(format!("server{i}.data"))).unwrap();
    }
    for i in 1..=AUTHORITIES {
        let stderr = refused_start(dir, i);
        assert!(
            stderr.contains("its votes are lost") && stderr.contains(&old_network.to_string()),
            "authority {i} refused for another reason: {stderr}"
        );
    }

    // `server check` says so before a start is tried.
    let output = Command::new(SERVER)
        .current_dir(dir)
        .args(["--server", "server1.json", "check"])
        .args([
            "--initial-accounts",
            "initial_accounts.txt",
            "--committee",
            "committee.json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("its votes are lost"),
        "{stderr}"
    );

    // A new network of the same keys (and the same genesis): a new committee file.
    let mut entries = String::new();
    for i in 1..=AUTHORITIES {
        entries += &check(
            Command::new(SERVER)
                .current_dir(dir)
                .args(["--server", &format!("server{i}.json"), "new-network"])
                .output()
                .unwrap(),
            "new-network",
        );
    }
    fs::write(dir.join("committee.json"), entries).unwrap();
    assert_ne!(committee_id(dir), old_network);
    authorities.iter_mut().for_each(Authority::start);

    // The kept wallet holds the old network's history: refused, not replayed.
    let output = common::client(dir, &["sync"]);
    assert!(
        !output.status.success(),
        "the old wallet was used in the new network"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("belong to network"), "{stderr}");
    // The same keys in a new wallet spend what the new network says they own.
    let old_wallet: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("accounts.json")).unwrap()).unwrap();
    fs::rename(dir.join("accounts.json"), dir.join("old-accounts.json")).unwrap();
    wait_serving(dir, payee);
    for account in old_wallet["accounts"].as_array().unwrap() {
        let secret = account["secret"].as_str().unwrap();
        check(
            common::client(
                dir,
                &["import", "--secret", secret, "--initial-funding", "100"],
            ),
            "import",
        );
    }
    assert_eq!(
        balance(dir, payee),
        "100",
        "the new network starts at genesis"
    );

    // The old network's confirmation and order, replayed to every authority, move nothing.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let sender = old_certificate.value.transfer.sender;
    let old_order: TransferOrder = old_certificate.value;
    for to in &addresses {
        let confirmation = Message::ConfirmationOrder(ConfirmationOrder {
            certificate: old_certificate.clone(),
        });
        let answer = ask(&socket, *to, &sender, &confirmation);
        assert!(
            matches!(answer, Message::Error(_)),
            "{}: the old network's certificate was taken: {answer:?}",
            to.0
        );
        let answer = ask(&socket, *to, &sender, &Message::TransferOrder(old_order));
        assert!(
            matches!(answer, Message::Error(_)),
            "{}: the old network's order was voted on: {answer:?}",
            to.0
        );
    }
    assert_eq!(balance(dir, payee), "100");
    assert_eq!(balance(dir, payer), "100");
    pay_one(dir, payer, payee, "a payment in the new network");
    assert_eq!(balance(dir, payee), "101");
}
