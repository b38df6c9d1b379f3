//! Byzantine authorities: one of a committee of four (f = 1) is replaced by an impostor that
//! holds the real authority's key and port but lies: it stays silent, answers garbage, votes
//! for a conflicting order, votes for everything, or lies about balances. Three honest
//! authority processes and the real `client` binary run beside it on 127.0.0.1. Honest clients
//! still pay and read the right balances, and no certificate ever forms for two orders.

mod common;

use common::{Authority, ask, balance, check, client, committee_with, fund_accounts, order};
use fastpay_engine::config::load_server_file;
use fastpay_wire::{
    AccountId, AccountInfoResponse, Amount, Balance, CertifiedTransferOrder, Committee,
    CommitteeFile, ConfirmationOrder, ErrorCode, KeyPair, Message, SequenceNumber, Signature,
    TransferOrder, VoteReply, VoteScheme, VoteSignature, decode, encode, sign_vote,
};
use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the impostor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Lie {
    /// Answers nothing.
    Silent,
    /// Answers every datagram with random bytes, a vote with a garbage signature and a
    /// refusal.
    Garbage,
    /// Signs, with the real key, a different order for the same sender and sequence number.
    Equivocate,
    /// Signs every order it sees, conflicting or not, and acknowledges every certificate.
    VoteForEverything,
    /// Answers queries with a made-up balance, sequence number and pending vote.
    InventAccounts,
    /// Sends the last client that wrote to it a small, well-formed refusal about some other
    /// account every millisecond, and answers nothing else (a client once waited for a quiet
    /// moment to save and send a certificate's confirmations, and this kept it from ever
    /// coming).
    Chatter,
}

const LIES: [Lie; 6] = [
    Lie::Silent,
    Lie::Garbage,
    Lie::Equivocate,
    Lie::VoteForEverything,
    Lie::InventAccounts,
    Lie::Chatter,
];

/// A lying authority on a real UDP socket, in a thread of the test.
struct Impostor {
    lie: Arc<AtomicU8>,
    /// Datagrams it received.
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Impostor {
    /// Lies as the authority of `server_file`, signing for `committee` as the real one would
    /// (in the real one's vote scheme).
    fn start(server_file: &Path, committee: Committee, lie: Lie) -> Self {
        let (file, key) = load_server_file(server_file).unwrap();
        let socket = UdpSocket::bind(file.authority.address().unwrap()).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let lie_cell = Arc::new(AtomicU8::new(lie as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let (lie_seen, stop_seen, count) = (lie_cell.clone(), stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
            let mut last_client = None;
            while !stop_seen.load(Ordering::Relaxed) {
                let lie = LIES[usize::from(lie_seen.load(Ordering::Relaxed))];
                if let (Lie::Chatter, Some(to)) = (lie, last_client) {
                    let chatter = Message::Error(fastpay_wire::ErrorReply {
                        code: ErrorCode::UnknownAccount,
                        account: AccountId([next_noise(&mut noise) as u8; 32]),
                        sequence_number: SequenceNumber::new(0),
                    });
                    let _ =
                        socket.send_to(&encode(&chatter, fastpay_wire::ShardId(0)).unwrap(), to);
                }
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                last_client = Some(from);
                count.fetch_add(1, Ordering::Relaxed);
                let Ok((shard, message)) = decode(&buf[..len]) else {
                    continue;
                };
                for reply in lie_about(lie, &committee, &key, &message, &mut noise) {
                    let bytes = match reply {
                        Reply::Message(m) => encode(&m, shard.shard).unwrap(),
                        Reply::Bytes(b) => b,
                    };
                    let _ = socket.send_to(&bytes, from);
                }
            }
        });
        Self {
            lie: lie_cell,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, lie: Lie) {
        self.lie.store(lie as u8, Ordering::Relaxed);
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(clippy::large_enum_variant)] // Built once per reply of a test.
enum Reply {
    Message(Message),
    Bytes(Vec<u8>),
}

fn next_noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The same sender and sequence number, paying somebody else.
/// The impostor cannot forge the owner's signature, so it reuses the one it saw.
fn conflicting(order: &TransferOrder) -> TransferOrder {
    let mut transfer = order.transfer;
    transfer.recipient = AccountId([0xee; 32]);
    transfer.amount = Amount::new(transfer.amount.units().saturating_add(1));
    TransferOrder {
        transfer,
        signature: order.signature,
    }
}

fn lie_about(
    lie: Lie,
    committee: &Committee,
    key: &KeyPair,
    message: &Message,
    noise: &mut u64,
) -> Vec<Reply> {
    let vote = |order: &TransferOrder| {
        Reply::Message(Message::Vote(VoteReply::of(&sign_vote(
            *order, committee, key,
        ))))
    };
    let account_of = |message: &Message| match message {
        Message::TransferOrder(order) => Some(order.transfer.sender),
        Message::ConfirmationOrder(c) => Some(c.certificate.value.transfer.sender),
        Message::AccountInfoRequest(r) => Some(r.account),
        _ => None,
    };
    match lie {
        Lie::Silent | Lie::Chatter => Vec::new(),
        Lie::Garbage => {
            let mut bytes: Vec<u8> = (0..40).map(|_| next_noise(noise) as u8).collect();
            bytes[0] = fastpay_wire::codec::WIRE_VERSION; // Looks like our codec.
            let mut replies = vec![Reply::Bytes(bytes)];
            if let Message::TransferOrder(order) = message {
                let mut reply = VoteReply::of(&sign_vote(*order, committee, key));
                let noise = Signature([next_noise(noise) as u8; 64]);
                match &mut reply.signature {
                    VoteSignature::Single(s) => *s = noise,
                    VoteSignature::Batched(p) => p.root_signature = noise,
                }
                replies.push(Reply::Message(Message::Vote(reply)));
            }
            if let Some(account) = account_of(message) {
                replies.push(Reply::Message(Message::Error(fastpay_wire::ErrorReply {
                    code: ErrorCode::InsufficientFunds,
                    account,
                    sequence_number: SequenceNumber::new(0),
                })));
            }
            replies
        }
        Lie::Equivocate => match message {
            Message::TransferOrder(order) => vec![vote(&conflicting(order))],
            _ => Vec::new(),
        },
        Lie::VoteForEverything => match message {
            Message::TransferOrder(order) => vec![vote(order)],
            Message::ConfirmationOrder(c) => vec![Reply::Message(Message::AccountInfoResponse(
                made_up_account(c.certificate.value.transfer.sender, committee, key, None),
            ))],
            _ => Vec::new(),
        },
        Lie::InventAccounts => match account_of(message) {
            Some(account) => vec![Reply::Message(Message::AccountInfoResponse(
                made_up_account(account, committee, key, Some(message)),
            ))],
            None => Vec::new(),
        },
    }
}

fn made_up_account(
    account: AccountId,
    committee: &Committee,
    key: &KeyPair,
    message: Option<&Message>,
) -> AccountInfoResponse {
    let pending = match message {
        Some(Message::TransferOrder(order)) => Some(sign_vote(conflicting(order), committee, key)),
        _ => None,
    };
    AccountInfoResponse {
        account,
        balance: Balance::new(1_000_000),
        next_sequence_number: SequenceNumber::new(7),
        pending,
        deposited: Balance::ZERO,
    }
}

/// The committee of `dir`'s `committee.json`.
fn committee_of(dir: &Path) -> Committee {
    CommitteeFile::load(&dir.join("committee.json"))
        .unwrap()
        .committee
}

/// A committee whose fourth authority is an impostor, with `accounts` funded accounts in the
/// wallet of `dir`; returns the honest processes, the impostor and the account addresses.
fn set_up(
    dir: &Path,
    accounts: usize,
    lie: Lie,
    scheme: VoteScheme,
) -> (Vec<Authority>, Impostor, Vec<String>) {
    committee_with(dir, 4, scheme);
    let accounts = fund_accounts(dir, accounts);
    let mut honest: Vec<Authority> = (1..=3).map(|i| Authority::new(dir, i, None)).collect();
    for authority in &mut honest {
        authority.start();
    }
    let impostor = Impostor::start(&dir.join("server4.json"), committee_of(dir), lie);
    (honest, impostor, accounts)
}

#[test]
fn honest_clients_pay_whatever_one_authority_does() {
    pay_through_every_lie(1, VoteScheme::Single);
}

#[test]
fn honest_clients_pay_whatever_one_authority_does_with_batched_votes() {
    pay_through_every_lie(1, VoteScheme::Merkle);
}

/// The long version: ten rounds through every lie, in both vote schemes.
#[test]
#[ignore]
fn stress_honest_clients_pay_whatever_one_authority_does() {
    pay_through_every_lie(10, VoteScheme::Single);
    pay_through_every_lie(10, VoteScheme::Merkle);
}

/// `rounds` times, one transfer while the impostor tells each lie in turn.
fn pay_through_every_lie(rounds: usize, scheme: VoteScheme) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_honest, impostor, accounts) = set_up(dir, 2, Lie::Silent, scheme);
    let (a, b) = (&accounts[0], &accounts[1]);
    // The committee is up when the honest authorities agree on the genesis balance.
    for _ in 0..100 {
        if client(dir, &["query_balance", a]).status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut expected = (100, 100);
    for lie in (0..rounds).flat_map(|_| LIES) {
        impostor.set(lie);
        let seen = impostor.seen.load(Ordering::Relaxed);
        check(
            client(
                dir,
                &["--timeout", "20", "transfer", "1", "--from", a, "--to", b],
            ),
            &format!("transfer while the fourth authority lies: {lie:?}"),
        );
        assert!(
            impostor.seen.load(Ordering::Relaxed) > seen,
            "the client never asked the impostor"
        );
        expected = (expected.0 - 1, expected.1 + 1);
        assert_eq!(
            (balance(dir, a), balance(dir, b)),
            (expected.0.to_string(), expected.1.to_string()),
            "balances after a transfer with the impostor {lie:?}"
        );
    }
}

#[test]
fn an_authority_that_votes_for_everything_cannot_certify_two_orders() {
    votes_for_everything(VoteScheme::Single);
}

#[test]
fn an_authority_that_votes_for_everything_cannot_certify_two_orders_with_batched_votes() {
    votes_for_everything(VoteScheme::Merkle);
}

fn votes_for_everything(scheme: VoteScheme) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mallory = KeyPair::from_seed([1; 32]);
    let (alice, bob) = (AccountId([2; 32]), AccountId([3; 32]));
    let addresses = committee_with(dir, 4, scheme);
    fs::write(
        dir.join("initial_accounts.txt"),
        format!("{}:100\n", mallory.account()),
    )
    .unwrap();
    let mut honest: Vec<Authority> = (1..=3).map(|i| Authority::new(dir, i, None)).collect();
    for authority in &mut honest {
        authority.start();
    }
    let members = committee_of(dir);
    let committee = members.id();
    let _impostor = Impostor::start(&dir.join("server4.json"), members, Lie::VoteForEverything);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let sender = mallory.account();
    let vote = |authority: usize, order: &TransferOrder| -> Result<VoteReply, ErrorCode> {
        match ask(
            &socket,
            addresses[authority],
            &sender,
            &Message::TransferOrder(*order),
        ) {
            Message::Vote(vote) => Ok(vote),
            Message::Error(error) => Err(error.code),
            other => panic!("unexpected {other:?}"),
        }
    };

    // Mallory, colluding with the impostor, splits two orders across the honest authorities:
    // every order the impostor signs still needs two honest votes of the same order.
    let to_alice = order(&committee, &mallory, alice, 60, 0);
    let to_bob = order(&committee, &mallory, bob, 60, 0);
    let mut for_alice = vec![vote(0, &to_alice).unwrap(), vote(3, &to_alice).unwrap()];
    let mut for_bob = vec![vote(1, &to_bob).unwrap(), vote(3, &to_bob).unwrap()];
    // The third honest authority decides which order can ever be certified.
    for_alice.push(vote(2, &to_alice).unwrap());
    assert_eq!(vote(2, &to_bob), Err(ErrorCode::ConflictingOrder));
    assert_eq!(vote(0, &to_bob), Err(ErrorCode::ConflictingOrder));
    assert_eq!(vote(1, &to_alice), Err(ErrorCode::ConflictingOrder));
    for_bob.push(vote(3, &to_bob).unwrap()); // A second copy of the impostor's vote.

    let confirm = |authority: usize, order: TransferOrder, votes: &[VoteReply]| {
        let certificate = CertifiedTransferOrder {
            value: order,
            signatures: votes.iter().map(|v| (v.authority, v.signature)).collect(),
        };
        let message = Message::ConfirmationOrder(ConfirmationOrder { certificate });
        match ask(&socket, addresses[authority], &sender, &message) {
            Message::AccountInfoResponse(info) => Ok(info.balance.units()),
            Message::Error(error) => Err(error.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    for authority in 0..3 {
        // Two distinct signers (one repeated) are not a quorum of four.
        assert_eq!(
            confirm(authority, to_bob, &for_bob),
            Err(ErrorCode::InvalidCertificate)
        );
        assert_eq!(
            confirm(authority, to_bob, &for_bob[..2]),
            Err(ErrorCode::InvalidCertificate)
        );
        // Alice's certificate is the one that exists, and it settles once everywhere.
        assert_eq!(confirm(authority, to_alice, &for_alice), Ok(40));
    }
}
