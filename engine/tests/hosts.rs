//! An authority's shards on several hosts: real network namespaces joined by veth pairs to a
//! bridge, each namespace a "host" with its own 10.213.0.x address and its own directory.
//! Every authority of a 4-member committee places shard 0 on one host and shard 1 on the
//! other (`shard_addresses` in the committee file), so every credit crosses hosts over the
//! links; the client runs on a third host. A payment completes; a host's shard is SIGKILLed
//! and a payment still completes with the other three authorities; shards answer clients on
//! their own host while their sibling is down; the killed shards restart from their data
//! directories and their credits cross hosts again.
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for `ip netns`: skipped, saying so, where
//! namespaces cannot be made.

mod common;

use common::{Authority, SERVER, check, client_via, pay_one_via};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The test's subnet: private to its own bridge namespace, so concurrent runs do not clash.
const SUBNET: &str = "10.213.0";
/// Shard processes per authority (one per host).
const SHARDS: u32 = 2;
/// Authorities in the committee.
const AUTHORITIES: usize = 4;

/// Runs `ip` with `args`; returns whether it succeeded and its stderr.
fn ip(args: &[&str]) -> (bool, String) {
    match Command::new("ip").args(args).output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn ip_ok(args: &[&str]) {
    let (ok, stderr) = ip(args);
    assert!(ok, "ip {}: {stderr}", args.join(" "));
}

/// A bridge namespace ("the switch") and host namespaces wired to it; deleted on drop.
struct Network {
    switch: String,
    hosts: Vec<String>,
}

impl Network {
    /// Makes the switch, or says why namespaces cannot be made here.
    fn new() -> Result<Self, String> {
        let prefix = format!("fph{}", std::process::id());
        let switch = format!("{prefix}s");
        let (ok, stderr) = ip(&["netns", "add", &switch]);
        if !ok {
            return Err(stderr);
        }
        let network = Self {
            switch,
            hosts: Vec::new(),
        };
        network.exec_ip(&network.switch, &["link", "add", "br0", "type", "bridge"]);
        network.exec_ip(&network.switch, &["link", "set", "br0", "up"]);
        Ok(network)
    }

    fn exec_ip(&self, namespace: &str, args: &[&str]) {
        let mut full = vec!["-n", namespace];
        full.extend_from_slice(args);
        ip_ok(&full);
    }

    /// Adds host `i` at `SUBNET.(10+i)`; returns its address.
    fn add_host(&mut self) -> String {
        let i = self.hosts.len();
        let name = format!("{}h{i}", self.switch.trim_end_matches('s'));
        ip_ok(&["netns", "add", &name]);
        self.hosts.push(name.clone());
        let (inner, outer) = (format!("v{i}"), format!("{name}p"));
        // Both ends start in the host namespace; the outer one moves to the switch.
        self.exec_ip(
            &name,
            &[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ],
        );
        self.exec_ip(&name, &["link", "set", &outer, "netns", &self.switch]);
        self.exec_ip(&self.switch, &["link", "set", &outer, "master", "br0"]);
        self.exec_ip(&self.switch, &["link", "set", &outer, "up"]);
        let address = format!("{SUBNET}.{}", 10 + i);
        self.exec_ip(
            &name,
            &["addr", "add", &format!("{address}/24"), "dev", &inner],
        );
        self.exec_ip(&name, &["link", "set", &inner, "up"]);
        self.exec_ip(&name, &["link", "set", "lo", "up"]);
        address
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it (and so their peers).
        for name in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs the `client` binary in namespace `ns`, in `dir`.
fn client(ns: &str, dir: &Path, args: &[&str]) -> Output {
    client_via(&["ip", "netns", "exec", ns], dir, args)
}

fn balance(ns: &str, dir: &Path, account: &str) -> Option<String> {
    let out = client(ns, dir, &["query_balance", account]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_balance(ns: &str, dir: &Path, account: &str, want: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while balance(ns, dir, account).as_deref() != Some(&want.to_string()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {account} never reached {want} (reads {:?})",
            balance(ns, dir, account)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pay(ns: &str, dir: &Path, from: &str, to: &str, what: &str) {
    pay_one_via(&["ip", "netns", "exec", ns], dir, from, to, what);
}

/// Generates the committee in `dir`: authority `i` puts shard `j` on host `(i + j) % 2`.
fn placed_committee(dir: &Path, hosts: &[String]) {
    let mut text = String::new();
    for i in 1..=AUTHORITIES {
        let port = 9000 + 100 * i as u16;
        let host_of = |j: u32| &hosts[(i + j as usize) % hosts.len()];
        let listen: Vec<String> = (0..SHARDS)
            .map(|j| format!("{}:{port}", host_of(j)))
            .collect();
        let link: Vec<String> = (0..SHARDS)
            .map(|j| format!("{}:{}", host_of(j), port + 50 + j as u16))
            .collect();
        text += &check(
            Command::new(SERVER)
                .current_dir(dir)
                .args(["--server", &format!("server{i}.json"), "generate"])
                .args(["--host", host_of(0), "--port", &port.to_string()])
                .args(["--shards", &SHARDS.to_string()])
                .args(["--shard-listen", &listen.join(",")])
                .args(["--shard-link", &link.join(",")])
                .output()
                .unwrap(),
            "generate",
        );
    }
    fs::write(dir.join("committee.json"), text).unwrap();
}

/// A copy of the public files (and every key, as each host runs a shard of every authority)
/// in a directory of the host's own.
fn host_dir(root: &Path, index: usize) -> PathBuf {
    let dir = root.join(format!("host{index}"));
    fs::create_dir(&dir).unwrap();
    for name in ["committee.json", "initial_accounts.txt"] {
        fs::copy(root.join(name), dir.join(name)).unwrap();
    }
    for i in 1..=AUTHORITIES {
        let name = format!("server{i}.json");
        fs::copy(root.join(&name), dir.join(&name)).unwrap();
    }
    dir
}

#[test]
fn shards_on_different_hosts_carry_credits_and_survive_a_crash() {
    let mut network = match Network::new() {
        Ok(network) => network,
        Err(why) => {
            eprintln!(
                "skipped: network namespaces are not permitted here (ip netns add: {})",
                why.trim()
            );
            return;
        }
    };
    let addresses: Vec<String> = (0..3).map(|_| network.add_host()).collect();
    let (hosts, client_ns) = (&addresses[..2], network.hosts[2].clone());

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    placed_committee(root, hosts);
    let genesis = check(
        client(
            &client_ns,
            root,
            &["create_accounts", "40", "--initial-funding", "100"],
        ),
        "create_accounts",
    );
    fs::write(root.join("initial_accounts.txt"), &genesis).unwrap();
    let accounts: Vec<String> = genesis
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    let shard = |a: &String| fastpay_wire::shard_of(&a.parse().unwrap(), SHARDS).0;
    let payer = accounts.iter().find(|a| shard(a) == 0).unwrap().clone();
    let payee = accounts.iter().find(|a| shard(a) == 1).unwrap().clone();

    // Shard j of authority i runs in the namespace of host (i + j) % 2, from that host's
    // directory (its own data directories).
    let dirs: Vec<PathBuf> = (0..2).map(|h| host_dir(root, h)).collect();
    let mut processes = Vec::new();
    for i in 1..=AUTHORITIES {
        for j in 0..SHARDS {
            let host = (i + j as usize) % 2;
            let mut process = Authority::new(&dirs[host], i, Some(j));
            process.wrapper = vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                network.hosts[host].clone(),
            ];
            process.log = Some(dirs[host].join(format!("server{i}-{j}.log")));
            process.start();
            processes.push(process);
        }
    }
    wait_balance(&client_ns, root, &payer, 100, "start-up");

    // The payer's shard and the payee's are on different hosts at every authority.
    pay(&client_ns, root, &payer, &payee, "a payment across hosts");
    wait_balance(&client_ns, root, &payee, 101, "the credit across hosts");

    let find = |processes: &[Authority], i: usize, j: u32| {
        processes
            .iter()
            .position(|p| p.index == i && p.shard == Some(j))
            .unwrap()
    };
    // SIGKILL authority 1's shard 0 (the payer's) on its host: the other three authorities
    // are a quorum.
    let first = find(&processes, 1, 0);
    processes[first].kill();
    pay(
        &client_ns,
        root,
        &payer,
        &payee,
        "a payment with a shard down",
    );
    wait_balance(&client_ns, root, &payee, 102, "with a shard down");

    // With authorities 2 and 3's shard 0 down too, their shards 1 still answer from the
    // other host. A balance needs two agreeing authorities: a client that sent shard 1's
    // datagrams to shard 0's address would hear from authority 4 alone.
    let (second, third) = (find(&processes, 2, 0), find(&processes, 3, 0));
    processes[second].kill();
    processes[third].kill();
    wait_balance(&client_ns, root, &payee, 102, "from shard 1 alone");

    // Restarted from their data directories, the three take part again. With authority 4's
    // shard 0 down, the payment needs the three restarted shards (authority 1's catches up on
    // the payment it missed), and the payee's 103 needs their credits to reach the shards 1
    // on the other host.
    for k in [first, second, third] {
        processes[k].start();
    }
    let fourth = find(&processes, 4, 0);
    processes[fourth].kill();
    pay(
        &client_ns,
        root,
        &payer,
        &payee,
        "a payment after the restart",
    );
    wait_balance(&client_ns, root, &payee, 103, "after the restart");
    assert_eq!(balance(&client_ns, root, &payer).as_deref(), Some("97"));
    drop(processes);
}
