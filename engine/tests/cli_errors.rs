//! The binaries refuse broken input with a clear message and a failing exit code, never a
//! panic; and the server shuts down cleanly on SIGTERM.

use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::{SERVER, committee, fails_with};

fn server(dir: &Path, args: &[&str]) -> Output {
    Command::new(SERVER)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A one-authority set-up: server1.json, committee.json, initial_accounts.txt.
fn set_up(dir: &Path) -> u16 {
    let port = committee(dir, 1)[0].0.port();
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("{}:100\n", "ab".repeat(32)),
    )
    .unwrap();
    port
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--server",
        "server1.json",
        "run",
        "--initial-accounts",
        "initial_accounts.txt",
        "--committee",
        "committee.json",
    ];
    args.extend_from_slice(extra);
    server(dir, &args)
}

#[test]
fn server_refuses_broken_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = set_up(dir);

    fails_with(
        server(
            dir,
            &[
                "--server",
                "server1.json",
                "generate",
                "--host",
                "h",
                "--port",
                "1",
            ],
        ),
        "refusing to overwrite",
    );
    fails_with(run(dir, &["--shard", "7"]), "--shard 7 is out of range");

    let busy = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    fails_with(run(dir, &[]), "already in use");
    drop(busy);

    fs::write(dir.join("initial_accounts.txt"), "not a line\n").unwrap();
    fails_with(run(dir, &[]), "initial_accounts.txt: line 1");
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("{}:-5\n", "ab".repeat(32)),
    )
    .unwrap();
    fails_with(run(dir, &[]), "line 1: the balance");

    let committee = fs::read_to_string(dir.join("committee.json")).unwrap();
    fs::write(dir.join("committee.json"), "{\"name\": 12}").unwrap();
    fails_with(run(dir, &[]), "committee.json: entry 1");
    fs::write(dir.join("committee.json"), "").unwrap();
    fails_with(run(dir, &[]), "the committee is empty");
    fs::remove_file(dir.join("committee.json")).unwrap();
    fails_with(run(dir, &[]), "committee.json: No such file");

    // An authority missing from the committee.
    let other = server(
        dir,
        &[
            "--server",
            "other.json",
            "generate",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ],
    );
    fs::write(dir.join("committee.json"), &other.stdout).unwrap();
    fails_with(run(dir, &[]), "is not in committee.json");
    fs::write(dir.join("committee.json"), committee).unwrap();

    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("server1.json"), fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(run(dir, &[]), "readable by group or others");
    fs::set_permissions(dir.join("server1.json"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(dir.join("server1.json"), "{").unwrap();
    fails_with(run(dir, &[]), "server1.json");
}

#[test]
fn placed_shards_refuse_ambiguous_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "--server",
            "server1.json",
            "generate",
            "--host",
            "127.0.0.1",
            "--port",
            "9100",
        ];
        args.extend_from_slice(extra);
        server(dir, &args)
    };
    fails_with(
        generate(&[
            "--shard-listen",
            "127.0.0.1:9100",
            "--shard-link",
            "127.0.0.1:9150,127.0.0.1:9151",
        ]),
        "--shard-listen names 1 shards but --shard-link 2",
    );
    fails_with(
        generate(&[
            "--shards",
            "3",
            "--shard-listen",
            "127.0.0.1:9100,127.0.0.1:9101",
            "--shard-link",
            "127.0.0.1:9150,127.0.0.1:9151",
        ]),
        "--shard-listen names 2 shards but --shards is 3",
    );
    fails_with(
        generate(&[
            "--shards",
            "2",
            "--shard-listen",
            "127.0.0.1:9100,127.0.0.1",
            "--shard-link",
            "127.0.0.1:9150,127.0.0.1:9151",
        ]),
        "shard 1 listen address \"127.0.0.1\" is not host:port",
    );
    assert!(!dir.join("server1.json").exists());

    let entry = common::check(
        generate(&[
            "--shards",
            "2",
            "--shard-listen",
            "127.0.0.1:9100,127.0.0.2:9101",
            "--shard-link",
            "127.0.0.1:9150,127.0.0.2:9151",
        ]),
        "generate",
    );
    assert!(
        entry.contains("\"shard_addresses\":[{\"listen\":\"127.0.0.1:9100\""),
        "{entry}"
    );
    fs::write(dir.join("committee.json"), entry).unwrap();
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("{}:100\n", "ab".repeat(32)),
    )
    .unwrap();
    fails_with(run(dir, &[]), "places its shards on several addresses");
    fails_with(
        run(dir, &["--shard", "0", "--link-host", "127.0.0.1"]),
        "--link-host conflicts with the committee's shard_addresses",
    );
}

#[test]
fn client_refuses_broken_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    set_up(dir);
    let client = |args: &[&str]| common::client(dir, args);
    let stranger = "cd".repeat(32);
    fails_with(
        client(&["transfer", "1", "--from", &stranger, "--to", &stranger]),
        "is not in accounts.json",
    );
    let usage = client(&["query_balance", "xyz"]);
    assert_eq!(usage.status.code(), Some(2), "clap reports bad arguments");
    fs::write(dir.join("accounts.json"), "{\"accounts\": 3}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("accounts.json"), fs::Permissions::from_mode(0o600)).unwrap();
    fails_with(client(&["benchmark"]), "accounts.json");
}

#[test]
fn server_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = set_up(dir);
    let child = Command::new(SERVER)
        .current_dir(dir)
        .args([
            "--server",
            "server1.json",
            "run",
            "--initial-accounts",
            "initial_accounts.txt",
        ])
        .args(["--committee", "committee.json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("final counters"), "{stderr}");
    // The port is free again.
    UdpSocket::bind(("127.0.0.1", port)).unwrap();
}

/// `server check` on a set-up broken in one way at a time: it exits 1 naming exactly what is
/// wrong, and 0 with a summary once all is well.
#[test]
fn server_check_says_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = set_up(dir);
    // A genesis account that can send: its address is a public key.
    let account = fastpay_wire::KeyPair::from_seed([7; 32])
        .account()
        .to_string();
    fs::write(dir.join("initial_accounts.txt"), format!("{account}:100\n")).unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "--server",
            "server1.json",
            "check",
            "--initial-accounts",
            "initial_accounts.txt",
            "--committee",
            "committee.json",
        ];
        args.extend_from_slice(extra);
        server(dir, &args)
    };
    let ok = check(&[]);
    assert!(ok.status.success(), "{ok:?}");
    let summary = String::from_utf8_lossy(&ok.stdout);
    assert!(
        summary.starts_with("ok: authority") && summary.contains("1 genesis accounts"),
        "{summary}"
    );
    // Nothing was started: no data directory, the port still free.
    assert!(!dir.join("server1.data").exists());
    UdpSocket::bind(("127.0.0.1", port)).unwrap();

    // Port clashes: taken on this machine (the UDP port, the metrics address), and two
    // authorities of the committee on one address.
    let busy = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    fails_with(
        check(&[]),
        &format!("the authority's UDP port 127.0.0.1:{port} is already in use"),
    );
    drop(busy);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_address = metrics.local_addr().unwrap().to_string();
    fails_with(
        check(&["--metrics-address", &metrics_address]),
        &format!("the metrics address {metrics_address} is already in use"),
    );
    drop(metrics);
    let committee = fs::read_to_string(dir.join("committee.json")).unwrap();
    let twin = server(
        dir,
        &[
            "--server",
            "twin.json",
            "generate",
            "--host",
            "127.0.0.1",
            "--port",
            &(port + 1).to_string(),
        ],
    );
    fs::write(
        dir.join("committee.json"),
        format!("{committee}{}", String::from_utf8_lossy(&twin.stdout)),
    )
    .unwrap();
    fails_with(
        check(&[]),
        &format!(
            "committee.json: 127.0.0.1:{} is the link port of shard 0",
            port + 1
        ),
    );

    // A committee that is not JSON, and one without this server.
    fs::write(dir.join("committee.json"), "{\"name\": 12}").unwrap();
    fails_with(check(&[]), "committee.json: entry 1");
    fs::write(dir.join("committee.json"), &twin.stdout).unwrap();
    fails_with(check(&[]), "is not in committee.json");
    fs::write(dir.join("committee.json"), &committee).unwrap();
    fails_with(check(&["--shard", "2"]), "--shard 2 is out of range");

    // A server file whose secret is not the named authority's key, or not hex.
    let original = fs::read_to_string(dir.join("server1.json")).unwrap();
    let secret = serde_json::from_str::<serde_json::Value>(&original).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(
        dir.join("server1.json"),
        original.replace(&secret, &"11".repeat(32)),
    )
    .unwrap();
    fails_with(check(&[]), "secret does not match the authority name");
    fs::write(dir.join("server1.json"), original.replace(&secret, "zz")).unwrap();
    fails_with(check(&[]), "secret is not 64 hex digits");
    fs::write(dir.join("server1.json"), &original).unwrap();

    // Genesis: malformed, and an address that is no public key.
    let no_key = (0u8..=255)
        .map(|b| hex::encode([b; 32]))
        .find(|address| fastpay_wire::PublicKey::of_account(&address.parse().unwrap()).is_err())
        .unwrap();
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("# genesis\n\n{account}:100\n{no_key}:5\n"),
    )
    .unwrap();
    fails_with(
        check(&[]),
        &format!("initial_accounts.txt: line 4: account {no_key} is not a valid public key"),
    );
    fs::write(dir.join("initial_accounts.txt"), "x:1\n").unwrap();
    // Every problem at once: the genesis and the committee.
    fs::write(dir.join("committee.json"), &twin.stdout).unwrap();
    let output = check(&[]);
    fails_with(output.clone(), "initial_accounts.txt: line 1: the address");
    fails_with(output, "is not in committee.json");
}
