//! Helpers shared by the end-to-end tests that run the real binaries.

#![allow(dead_code)]

use fastpay_wire::{
    AccountId, CommitteeFile, CommitteeId, Message, decode, encode_request, shard_of,
};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_server");

/// The `client` binary (package `fastpay-wallet`), beside this package's binaries in the same
/// target directory: `cargo test --workspace` builds it with them. Cargo cannot name another
/// package's binary to a test, hence the search.
pub static CLIENT: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    let path = Path::new(SERVER).with_file_name("client");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p fastpay-wallet` (or run `cargo test --workspace`)",
        path.display()
    );
    path
});

/// A UDP port nobody holds right now.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nobody holds, with the `room` ports after it free too (for shard links).
pub fn free_port_with_room(room: u16) -> u16 {
    loop {
        let port = free_port();
        if port < 60_000 && (1..=room).all(|k| UdpSocket::bind(("127.0.0.1", port + k)).is_ok()) {
            return port;
        }
    }
}

/// Runs the `client` binary in `dir` with the usual committee and wallet files.
pub fn client(dir: &Path, args: &[&str]) -> Output {
    client_via(&[], dir, args)
}

/// Runs the `client` binary as [`client`] does, through `wrapper` (a command and its
/// arguments, say `ip netns exec NS`) when it is not empty.
pub fn client_via(wrapper: &[&str], dir: &Path, args: &[&str]) -> Output {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(&*CLIENT);
            command
        }
        None => Command::new(&*CLIENT),
    };
    command
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
}

/// Asserts the command succeeded; returns its stdout.
pub fn check(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts the command failed cleanly (exit code 1, no panic) mentioning `needle`.
pub fn fails_with(output: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// One `server run` process (a whole authority, or one of its shards).
pub struct Authority {
    pub dir: PathBuf,
    pub index: usize,
    /// Run only this shard (its own process).
    pub shard: Option<u32>,
    /// Extra `run` arguments.
    pub extra: Vec<String>,
    /// Where its stderr goes (discarded when `None`).
    pub log: Option<PathBuf>,
    /// A command (and its arguments) to run the server under, e.g. `faketime -f -1d`.
    pub wrapper: Vec<String>,
    /// Extra environment variables (`RUST_LOG`, say).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Authority {
    pub fn new(dir: &Path, index: usize, shard: Option<u32>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            index,
            shard,
            extra: Vec::new(),
            log: None,
            wrapper: Vec::new(),
            env: Vec::new(),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let shard: Vec<String> = match self.shard {
            Some(j) => vec!["--shard".into(), j.to_string()],
            None => Vec::new(),
        };
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(SERVER);
                command
            }
            None => Command::new(SERVER),
        };
        let child = command
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["--server", &format!("server{}.json", self.index), "run"])
            .args(shard)
            .args(["--initial-accounts", "initial_accounts.txt"])
            .args(["--committee", "committee.json", "--stats-interval", "0"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it with SIGTERM (it then prints its final counters) and waits.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn kill(&mut self) {
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
pub fn committee(dir: &Path, count: usize) -> Vec<(SocketAddr, u32)> {
    committee_with(dir, count, fastpay_wire::VoteScheme::Single)
}

/// [`committee`] with every authority signing its votes by `scheme`.
pub fn committee_with(
    dir: &Path,
    count: usize,
    scheme: fastpay_wire::VoteScheme,
) -> Vec<(SocketAddr, u32)> {
    let mut text = String::new();
    let mut addresses = Vec::new();
    for i in 1..=count {
        // Room for the link ports of split shards after the public port.
        let port = free_port_with_room(2);
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
                    "--vote-scheme",
                    &scheme.to_string(),
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

/// The id of the committee in `dir`'s `committee.json`: what the authorities started there
/// check every signature against.
pub fn committee_id(dir: &Path) -> CommitteeId {
    CommitteeFile::load(&dir.join("committee.json"))
        .unwrap()
        .committee
        .id()
}

/// A transfer order of `amount` from `from` to `to` with sequence number `sequence`, signed
/// for `committee`.
pub fn order(
    committee: &CommitteeId,
    from: &fastpay_wire::KeyPair,
    to: AccountId,
    amount: u64,
    sequence: u64,
) -> fastpay_wire::TransferOrder {
    fastpay_wire::TransferOrder::new(
        fastpay_wire::Transfer {
            sender: from.account(),
            recipient: to,
            amount: fastpay_wire::Amount::new(amount),
            sequence_number: fastpay_wire::SequenceNumber::new(sequence),
            user_data: None,
        },
        committee,
        from,
    )
}

/// Pays one unit from `from` to `to` with the `client` binary (20 s to complete), or fails the
/// test naming `what`.
pub fn pay_one(dir: &Path, from: &str, to: &str, what: &str) {
    pay_one_via(&[], dir, from, to, what);
}

/// [`pay_one`] with the `client` binary run through `wrapper` (see [`client_via`]).
pub fn pay_one_via(wrapper: &[&str], dir: &Path, from: &str, to: &str, what: &str) {
    check(
        client_via(
            wrapper,
            dir,
            &[
                "--timeout",
                "20",
                "transfer",
                "1",
                "--from",
                from,
                "--to",
                to,
            ],
        ),
        what,
    );
}

/// Waits (up to 20 s) until the committee answers a query about `account`.
pub fn wait_serving(dir: &Path, account: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !client(dir, &["query_balance", account]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the authorities never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The balance of `account` as `client query_balance` prints it.
pub fn balance(dir: &Path, account: &str) -> String {
    check(client(dir, &["query_balance", account]), "query_balance")
        .trim()
        .to_string()
}

/// Funds `count` new wallet accounts in `dir` with 100 each (the genesis file the
/// authorities read); returns their addresses.
pub fn fund_accounts(dir: &Path, count: usize) -> Vec<String> {
    let genesis = check(
        client(
            dir,
            &[
                "create_accounts",
                &count.to_string(),
                "--initial-funding",
                "100",
            ],
        ),
        "create_accounts",
    );
    fs::write(dir.join("initial_accounts.txt"), &genesis).unwrap();
    genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

/// Sends `message` about `account` to an authority until it answers; returns the answer.
/// Requests carry the padding batched votes need (authorities of either scheme take it).
pub fn ask(
    socket: &UdpSocket,
    to: (SocketAddr, u32),
    account: &AccountId,
    message: &Message,
) -> Message {
    let padding = fastpay_wire::VoteScheme::Merkle.request_padding();
    let bytes = encode_request(message, shard_of(account, to.1), padding).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 8192];
    // Replies to an earlier question (a retry's duplicate answered late by a loaded server)
    // are not this question's answer: drop what is already queued.
    socket.set_nonblocking(true).unwrap();
    while socket.recv_from(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
    while Instant::now() < deadline {
        socket.send_to(&bytes, to.0).unwrap();
        if let Ok((len, from)) = socket.recv_from(&mut buf)
            && from == to.0
        {
            return decode(&buf[..len]).unwrap().1;
        }
    }
    panic!("no answer from {}", to.0);
}

/// Sends every certificate in the wallet of `dir` to every authority, as a payer pushing its
/// receipts to authorities that missed them; panics if one is refused.
pub fn push_wallet_certificates(dir: &Path, addresses: &[(SocketAddr, u32)], socket: &UdpSocket) {
    let mut certificates = wallet_sent_certificates(dir);
    // Per sender, in sequence order, so no authority misses an earlier one.
    certificates.sort_by_key(|c| (c.value.transfer.sender, c.value.transfer.sequence_number));
    for to in addresses {
        for certificate in &certificates {
            let account = certificate.value.transfer.sender;
            let message = Message::ConfirmationOrder(fastpay_wire::ConfirmationOrder {
                certificate: certificate.clone(),
            });
            match ask(socket, *to, &account, &message) {
                Message::AccountInfoResponse(_) => {}
                other => panic!("{}: certificate refused: {other:?}", to.0),
            }
        }
    }
}

/// Every certificate the wallet of `dir` (`accounts.json`) sent, account by account.
pub fn wallet_sent_certificates(dir: &Path) -> Vec<fastpay_wire::CertifiedTransferOrder> {
    let wallet: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("accounts.json")).unwrap()).unwrap();
    wallet["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["state"]["sent_certificates"].as_array().unwrap().clone())
        .map(|c| serde_json::from_value(c).unwrap())
        .collect()
}

/// Runs `client` in `dir` with wallet `wallet`.
pub fn client_with(dir: &Path, wallet: &str, args: &[&str]) -> Output {
    Command::new(&*CLIENT)
        .current_dir(dir)
        .args(["--committee", "committee.json", "--accounts", wallet])
        .args(args)
        .output()
        .unwrap()
}

/// Four authorities of two shards with `count` funded accounts in `accounts.json`, running.
pub fn committee_with_accounts(dir: &Path, count: usize) -> (Vec<Authority>, Vec<String>) {
    committee(dir, 4);
    let accounts = fund_accounts(dir, count);
    let mut authorities: Vec<Authority> = (1..=4).map(|i| Authority::new(dir, i, None)).collect();
    for a in &mut authorities {
        a.start();
    }
    wait_serving(dir, &accounts[0]);
    (authorities, accounts)
}

/// The balance the committee agrees on, as `query_balance` prints it (no wallet sync: a
/// wallet file that does not exist).
pub fn committee_balance(dir: &Path, account: &str) -> i128 {
    let out = check(
        client_with(dir, "none.json", &["query_balance", account]),
        "query_balance",
    );
    out.trim().parse().unwrap()
}

/// Waits until the committee agrees that `account`, a payee, holds `expected`, failing if it
/// ever holds more or if 20 seconds pass. A payment's credit reaches the payee's shard a
/// moment after the payer's client has its quorum of acknowledgements: it leaves once its
/// debit is durable, and the payer's shards may be slow to send it under a loaded test run.
pub fn await_committee_balance(dir: &Path, account: &str, expected: i128) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let balance = committee_balance(dir, account);
        assert!(balance <= expected, "{account}: money made: {balance}");
        if balance == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{account}: balance {balance}, never {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh account in wallet `wallet` of `dir` that the genesis never funded.
pub fn new_account(dir: &Path, wallet: &str) -> String {
    let line = check(
        client_with(
            dir,
            wallet,
            &["create_accounts", "1", "--initial-funding", "0"],
        ),
        "create_accounts",
    );
    line.trim().split(':').next().unwrap().to_string()
}
