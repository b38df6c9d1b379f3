//! Money entering FastPay from a real Ethereum chain: a real anvil (from the pinned npm
//! package; `npm ci --prefix primary`), the contract deployed on it, and real `server`
//! processes following its deposits (`server run --primary-rpc ...`). Built with the engine's
//! `primary` feature.

mod common;

use common::{Authority, ask, committee, committee_id};
use fastpay_primary::alloy::primitives::U256;
use fastpay_primary::devnet::Anvil;
use fastpay_primary::{ChainError, EthCommittee, PrimaryChain, RedeemSigner, Revert};
use fastpay_wire::{AccountId, AccountInfoRequest, Amount, KeyPair, Message, shard_of};
use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// Blocks built on a deposit before the authorities credit it, in these tests.
const CONFIRMATIONS: u64 = 3;

/// How long the authorities may take to show what the chain holds. Generous: it bounds a
/// failure, not the test's speed (each wait ends as soon as every authority agrees).
const SETTLE: Duration = Duration::from_secs(180);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A committee of four in `dir` (no genesis accounts), and the contract for it on `anvil`.
fn setup(
    dir: &Path,
    anvil: &Anvil,
    rt: &tokio::runtime::Runtime,
) -> (Vec<(SocketAddr, u32)>, PrimaryChain) {
    let addresses = committee(dir, 4);
    fs::write(dir.join("initial_accounts.txt"), "").unwrap();
    // Redeem keys are not used here: deposits need only the committee's id on chain.
    let keys: Vec<RedeemSigner> = (0..4).map(|_| RedeemSigner::random()).collect();
    let eth =
        EthCommittee::new(keys.iter().map(|k| (k.address(), 1)), 3, committee_id(dir)).unwrap();
    let chain = rt
        .block_on(PrimaryChain::deploy(&anvil.url, anvil.key(0), &eth))
        .unwrap();
    (addresses, chain)
}

/// The four authorities, following the contract at `contract` behind `rpc` (polling every
/// 20 ms, snapshotting often).
fn authorities(dir: &Path, rpc: &str, contract: &str) -> Vec<Authority> {
    (1..=4)
        .map(|i| {
            let mut authority = Authority::new(dir, i, None);
            authority.extra = [
                "--primary-rpc",
                rpc,
                "--primary-contract",
                contract,
                "--primary-confirmations",
                &CONFIRMATIONS.to_string(),
                "--primary-poll-ms",
                "20",
                "--snapshot-after-bytes",
                "4000",
            ]
            .map(String::from)
            .to_vec();
            authority.log = Some(dir.join(format!("server{i}.log")));
            authority.start();
            authority
        })
        .collect()
}

fn fresh_account(seed: u8) -> AccountId {
    KeyPair::from_seed([seed; 32]).account()
}

/// `account`'s balance at the authority at `to` (`None` while it does not know the account),
/// asking until it answers or `deadline` passes (then `None` for the caller to report).
fn balance_at(
    socket: &UdpSocket,
    to: (SocketAddr, u32),
    account: &AccountId,
    deadline: Instant,
) -> Result<Option<i128>, &'static str> {
    let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
    let padding = fastpay_wire::VoteScheme::Merkle.request_padding();
    let bytes = fastpay_wire::encode_padded(&request, shard_of(account, to.1), padding).unwrap();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        socket.send_to(&bytes, to.0).unwrap();
        if let Ok((len, from)) = socket.recv_from(&mut buf)
            && from == to.0
        {
            return match fastpay_wire::decode(&buf[..len]).unwrap().1 {
                Message::AccountInfoResponse(info) => Ok(Some(info.balance.units())),
                Message::Error(_) => Ok(None),
                other => panic!("{}: unexpected answer {other:?}", to.0),
            };
        }
    }
    Err("no answer")
}

/// Waits until every authority holds exactly `expected` for each account (and so, since every
/// deposit went to these accounts, exactly the units deposited in all), or panics with the
/// authority's log.
fn wait_credited(dir: &Path, addresses: &[(SocketAddr, u32)], expected: &BTreeMap<AccountId, u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    for (a, to) in addresses.iter().enumerate() {
        let log =
            || fs::read_to_string(dir.join(format!("server{}.log", a + 1))).unwrap_or_default();
        for (account, units) in expected {
            loop {
                let balance = balance_at(&socket, *to, account, deadline)
                    .unwrap_or_else(|e| panic!("authority {}: {e}; its log:\n{}", a + 1, log()));
                if balance == Some(i128::from(*units)) {
                    break;
                }
                assert!(
                    balance.is_none_or(|b| b < i128::from(*units)),
                    "authority {}: {account} holds {balance:?}, more than the {units} deposited",
                    a + 1
                );
                assert!(
                    Instant::now() < deadline,
                    "authority {}: {account} holds {balance:?}, not the {units} deposited; its log:\n{}",
                    a + 1,
                    log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A committee of four following a fresh contract on a fresh anvil, in a temporary directory.
struct Following {
    servers: Vec<Authority>,
    addresses: Vec<(SocketAddr, u32)>,
    chain: PrimaryChain,
    rt: tokio::runtime::Runtime,
    anvil: Anvil,
    tmp: tempfile::TempDir,
}

impl Following {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let anvil = Anvil::start().unwrap();
        let rt = runtime();
        let (addresses, chain) = setup(tmp.path(), &anvil, &rt);
        let servers = authorities(tmp.path(), &anvil.url, &chain.address().to_string());
        Self {
            servers,
            addresses,
            chain,
            rt,
            anvil,
            tmp,
        }
    }
}

#[test]
fn deposits_are_credited_once_by_every_authority() {
    // Bound first, the directory is dropped last: after the servers and the chain.
    let Following {
        tmp,
        anvil,
        rt,
        chain,
        addresses,
        mut servers,
    } = Following::start();
    let dir = tmp.path();

    let (alice, bob) = (fresh_account(1), fresh_account(2));
    let mut expected = BTreeMap::new();
    for (account, units) in [(alice, 1_000u64), (bob, 250), (alice, 5)] {
        let receipt = rt
            .block_on(chain.deposit_units(account, Amount::new(units)))
            .unwrap();
        *expected.entry(account).or_insert(0) += units;
        eprintln!(
            "deposit {} in block {}",
            receipt.deposit.index, receipt.deposit.block.number
        );
    }
    // A deposit to the zero account reverts on chain: FastPay never sees it.
    let zero = rt.block_on(chain.deposit_units(AccountId([0; 32]), Amount::new(1)));
    assert!(
        zero.is_err(),
        "a deposit to the zero account was accepted: {zero:?}"
    );
    rt.block_on(anvil.mine(CONFIRMATIONS)).unwrap();
    wait_credited(dir, &addresses, &expected);

    // Restarted, every authority recovers its cursor and credits nothing again.
    for server in &mut servers {
        server.kill();
        server.start();
    }
    let carol = fresh_account(3);
    rt.block_on(chain.deposit_units(carol, Amount::new(7)))
        .unwrap();
    expected.insert(carol, 7);
    rt.block_on(anvil.mine(CONFIRMATIONS)).unwrap();
    wait_credited(dir, &addresses, &expected);
}

#[test]
fn a_deposit_reorganised_away_before_its_confirmations_is_never_credited() {
    // Bound first, the directory is dropped last: after the servers and the chain.
    let Following {
        tmp,
        anvil,
        rt,
        chain,
        addresses,
        servers: _servers,
    } = Following::start();
    let dir = tmp.path();

    let (orphan, replacement) = (fresh_account(4), fresh_account(5));
    let before = rt.block_on(anvil.snapshot()).unwrap();
    let receipt = rt
        .block_on(chain.deposit_units(orphan, Amount::new(40)))
        .unwrap();
    assert_eq!(receipt.deposit.index, 0);
    // One block short of its confirmations, for long enough that followers polling every
    // 20 ms look at it many times.
    rt.block_on(anvil.mine(CONFIRMATIONS - 1)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        rt.block_on(anvil.revert(&before)).unwrap(),
        "evm_revert refused"
    );
    // The reorganised chain has another deposit at index 0, confirmed this time.
    let receipt = rt
        .block_on(chain.deposit_units(replacement, Amount::new(60)))
        .unwrap();
    assert_eq!(receipt.deposit.index, 0);
    rt.block_on(anvil.mine(CONFIRMATIONS + 2)).unwrap();
    wait_credited(dir, &addresses, &BTreeMap::from([(replacement, 60)]));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    for (a, to) in addresses.iter().enumerate() {
        assert_eq!(
            balance_at(&socket, *to, &orphan, deadline),
            Ok(None),
            "authority {} credited a deposit that a reorganisation removed",
            a + 1
        );
    }
}

#[test]
fn deposits_are_credited_exactly_once_across_random_crashes() {
    // Bound first, the directory is dropped last: after the servers and the chain.
    let Following {
        tmp,
        anvil,
        rt,
        chain,
        addresses,
        mut servers,
    } = Following::start();
    let dir = tmp.path();

    let accounts: Vec<AccountId> = (10..30).map(fresh_account).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Kills and restarts authorities at random moments while the deposits arrive.
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seed = u64::from(std::process::id()) | 1;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50 + next() % 300));
                let victim = (next() % servers.len() as u64) as usize;
                servers[victim].kill();
                std::thread::sleep(Duration::from_millis(next() % 200));
                servers[victim].start();
                kills += 1;
            }
            (servers, kills)
        })
    };
    let mut expected: BTreeMap<AccountId, u64> = BTreeMap::new();
    for i in 0..200u64 {
        let account = accounts[(i * 7 % accounts.len() as u64) as usize];
        let units = 1 + i % 13;
        rt.block_on(chain.deposit_units(account, Amount::new(units)))
            .unwrap();
        *expected.entry(account).or_insert(0) += units;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_servers, kills) = killer.join().unwrap();
    eprintln!("{kills} kills during 200 deposits");
    assert!(kills > 0, "no authority was killed");
    rt.block_on(anvil.mine(CONFIRMATIONS)).unwrap();
    wait_credited(dir, &addresses, &expected);
    // The supply audit of the deposit side: the contract escrows exactly what each authority
    // credited (no redeems here).
    let escrow = rt.block_on(chain.escrow()).unwrap();
    let credited: u64 = expected.values().sum();
    assert_eq!(escrow.deposit_count, 200);
    assert_eq!(
        escrow.deposited,
        fastpay_primary::alloy::primitives::U256::from(credited)
    );
    // And the FastPay side, through `client audit`: each authority's balances are its
    // deposits, counted once across the crashes.
    let contract = chain.address().to_string();
    let audit = supply_audit(dir, &anvil.url, &contract);
    for authority in audit["authorities"].as_array().unwrap() {
        assert_eq!(authority["deposited"], credited.to_string(), "{audit}");
        assert_eq!(authority["held"], credited.to_string(), "{audit}");
    }
}

/// `client audit --settled` against the contract, which must pass; its JSON report.
fn supply_audit(dir: &Path, rpc: &str, contract: &str) -> serde_json::Value {
    let args = [
        "--timeout",
        "20",
        "audit",
        "--settled",
        "--primary-rpc",
        rpc,
        "--primary-contract",
        contract,
    ];
    let stdout = common::check(common::client(dir, &args), "client audit");
    let audit: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(audit["ok"], true, "{audit}");
    let authorities = audit["authorities"].as_array().unwrap();
    assert_eq!(authorities.len(), 4, "{audit}");
    for authority in authorities {
        assert_eq!(authority["complete"], true, "{audit}");
        assert_eq!(authority["balanced"], true, "{audit}");
        assert_eq!(authority["in_flight"], "0", "{audit}");
    }
    audit
}

/// The operator's and the user's flow through the binaries alone: `server deploy-contract`,
/// `server run --primary-*`, `client deposit`, the deposit paid on in FastPay, then `client
/// redeem` to an Ethereum address; replays and short approvals revert on the contract.
#[test]
fn deposit_pay_and_redeem_through_the_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start().unwrap();
    let rt = runtime();
    let addresses = committee(dir, 4);
    let entries = fs::read_to_string(dir.join("committee.json")).unwrap();
    assert_eq!(
        entries.matches("\"eth_address\":\"0x").count(),
        4,
        "{entries}"
    );
    fs::write(
        dir.join("deployer.key"),
        fastpay_primary::devnet::DEV_KEYS[0],
    )
    .unwrap();
    fs::write(dir.join("payer.key"), fastpay_primary::devnet::DEV_KEYS[1]).unwrap();
    let contract = common::check(
        std::process::Command::new(common::SERVER)
            .current_dir(dir)
            .args(["deploy-contract", "--primary-rpc", &anvil.url])
            .args(["--eth-key", "deployer.key", "--committee", "committee.json"])
            .output()
            .unwrap(),
        "deploy-contract",
    )
    .trim()
    .to_string();
    let accounts = common::fund_accounts(dir, 2);
    let (alice, bob) = (&accounts[0], &accounts[1]);
    let _servers = authorities(dir, &anvil.url, &contract);
    common::wait_serving(dir, alice);

    let primary = ["--primary-rpc", &anvil.url, "--primary-contract", &contract];
    // `client ARGS` with the chain's flags, paying with the key in file `key`.
    let with_chain = |args: &[&str], key: &str| {
        common::client(dir, &[args, &primary[..], &["--eth-key", key][..]].concat())
    };
    let deposit = |amount: &str| {
        let args = ["deposit", "--amount", amount, "--to", alice];
        common::check(with_chain(&args, "payer.key"), "client deposit")
    };
    let receipt = deposit("500");
    assert!(receipt.contains("\"index\":0"), "{receipt}");
    // Not a whole unit of FastPay? Every amount of units is; zero is refused by the contract.
    let zero = with_chain(&["deposit", "--amount", "0", "--to", alice], "payer.key");
    assert!(!zero.status.success(), "a zero deposit went through");
    rt.block_on(anvil.mine(CONFIRMATIONS)).unwrap();

    let deadline = Instant::now() + SETTLE;
    while common::balance(dir, alice) != "600" {
        assert!(Instant::now() < deadline, "the deposit never showed");
        std::thread::sleep(Duration::from_millis(100));
    }
    common::pay_one(dir, alice, bob, "pay from the deposit");
    common::check(
        common::client(dir, &["transfer", "300", "--from", alice, "--to", bob]),
        "transfer 300 of the deposit",
    );
    assert_eq!(common::balance(dir, alice), "299");
    assert_eq!(common::balance(dir, bob), "401");

    // Out again: 199 units to an Ethereum address.
    let payee_text = "0x00000000000000000000000000000000000000aa".to_string();
    let redeem_199 = [
        "redeem",
        "--from",
        alice,
        "--amount",
        "199",
        "--to",
        &payee_text,
    ];
    let paid = common::check(with_chain(&redeem_199, "payer.key"), "client redeem");
    assert!(paid.contains("\"amount\":199"), "{paid}");
    assert_eq!(common::balance(dir, alice), "100");
    let chain = rt
        .block_on(PrimaryChain::connect(
            &anvil.url,
            contract.parse().unwrap(),
            Some(anvil.key(1)),
        ))
        .unwrap();
    let payee: fastpay_primary::Address = payee_text.parse().unwrap();
    let wei = rt.block_on(chain.balance_wei(payee)).unwrap();
    assert_eq!(wei, fastpay_primary::units_to_wei(Amount::new(199)));
    // Supply: FastPay holds genesis plus deposits, what left sits on the exit account; the
    // escrow holds deposits minus redeems.
    let exit = AccountId([0; 32]).to_string();
    assert_eq!(common::balance(dir, &exit), "199");
    let escrow = rt.block_on(chain.escrow()).unwrap();
    assert_eq!(
        (escrow.deposited, escrow.redeemed),
        (U256::from(500), U256::from(199))
    );
    // Running it again finds nothing left to pay.
    let again = common::check(
        with_chain(&["redeem", "--from", alice], "payer.key"),
        "client redeem again",
    );
    assert!(again.trim().is_empty(), "{again}");

    // A redeem interrupted after its transfer is certified (here its gas payer has no ether)
    // is finished by running `redeem` again; fewer approvals than a quorum revert, and the
    // same approvals sent twice pay once.
    fs::write(dir.join("empty.key"), "01".repeat(32)).unwrap();
    let redeem_50 = [
        "redeem",
        "--from",
        alice,
        "--amount",
        "50",
        "--to",
        &payee_text,
    ];
    let interrupted = with_chain(&redeem_50, "empty.key");
    assert!(
        !interrupted.status.success(),
        "a redeem paid by an empty account went through"
    );
    assert_eq!(common::balance(dir, alice), "50");
    let (order, signatures) = approvals(dir, &addresses);
    match rt.block_on(chain.redeem(&order, &signatures[..2])) {
        Err(ChainError::Reverted(Revert::BelowQuorum { .. })) => {}
        other => panic!("a redeem below the quorum: {other:?}"),
    }
    let finished = common::check(
        with_chain(&["redeem", "--from", alice], "payer.key"),
        "client redeem finishing the interrupted one",
    );
    assert!(finished.contains("\"amount\":50"), "{finished}");
    match rt.block_on(chain.redeem(&order, &signatures)) {
        Err(ChainError::Reverted(Revert::AlreadyRedeemed { .. })) => {}
        other => panic!("a second redeem of one transfer: {other:?}"),
    }
    // This committee's approvals pay nothing on another committee's contract.
    let keys: Vec<RedeemSigner> = (0..4).map(|_| RedeemSigner::random()).collect();
    let other = EthCommittee::new(
        keys.iter().map(|k| (k.address(), 1)),
        3,
        fastpay_wire::CommitteeId([9; 32]),
    )
    .unwrap();
    let other = rt
        .block_on(PrimaryChain::deploy(&anvil.url, anvil.key(0), &other))
        .unwrap();
    // (It holds a deposit, so a refusal is about the approvals, not an empty escrow.)
    rt.block_on(other.deposit_units(fresh_account(40), Amount::new(1_000)))
        .unwrap();
    match rt.block_on(other.redeem(&order, &signatures)) {
        Err(ChainError::Reverted(Revert::UnknownSigner { .. } | Revert::BelowQuorum { .. })) => {}
        other => panic!("another committee's contract took this committee's approvals: {other:?}"),
    }
    let wei = rt.block_on(chain.balance_wei(payee)).unwrap();
    assert_eq!(wei, fastpay_primary::units_to_wei(Amount::new(249)));
    assert_eq!(common::balance(dir, &exit), "249");
    // The audit agrees: everything that left FastPay was redeemed, the escrow holds the rest.
    let audit = supply_audit(dir, &anvil.url, &contract);
    let chain_side = &audit["primary"];
    assert_eq!(chain_side["deposited"], "500", "{audit}");
    assert_eq!(chain_side["redeemed"], "249", "{audit}");
    assert_eq!(chain_side["exited"], "249", "{audit}");
    assert_eq!(chain_side["awaiting_redeem"], "0", "{audit}");
    assert_eq!(audit["deposited"], "500", "{audit}");
}

/// The committee's approvals of the wallet's last transfer, asked of each authority over UDP.
fn approvals(
    dir: &Path,
    addresses: &[(SocketAddr, u32)],
) -> (
    fastpay_primary::RedeemOrder,
    Vec<fastpay_primary::RedeemSignature>,
) {
    let wallet: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("accounts.json")).unwrap()).unwrap();
    let certificate: fastpay_wire::CertifiedTransferOrder = wallet["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| {
            a["state"]["sent_certificates"]
                .as_array()
                .and_then(|c| c.last().cloned())
        })
        .map(|c| serde_json::from_value(c).unwrap())
        .unwrap();
    let file = fastpay_wire::CommitteeFile::load(&dir.join("committee.json")).unwrap();
    let members = fastpay_primary::redeem_members(&file).unwrap();
    let t = certificate.value.transfer;
    let order = fastpay_primary::RedeemOrder {
        sender: t.sender,
        sequence: t.sequence_number,
        recipient: fastpay_wire::exit_address(&t.recipient, t.user_data.as_ref())
            .unwrap()
            .into(),
        amount: t.amount,
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let request = Message::RedeemRequest(fastpay_wire::RedeemRequest { certificate });
    let mut signatures: Vec<_> = addresses
        .iter()
        .zip(&members)
        .map(
            |(to, (_, signer, _))| match ask(&socket, *to, &t.sender, &request) {
                Message::RedeemApproval(a) => fastpay_primary::RedeemSignature {
                    signer: *signer,
                    r: a.r.into(),
                    s: a.s.into(),
                    v: a.v,
                },
                other => panic!("{}: no approval: {other:?}", to.0),
            },
        )
        .collect();
    signatures.sort_by_key(|s| s.signer);
    (order, signatures)
}
