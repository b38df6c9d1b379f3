//! Byzantine clients against a committee of four real authority processes: conflicting orders
//! split across the committee, replays, forged certificates, absurd amounts and unknown
//! accounts. No certificate can form for two orders, nobody else loses anything, and every
//! refusal is the right one.

mod common;

use common::{Authority, ask, committee_id, committee_with, order};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AuthorityName, CertifiedTransferOrder, CommitteeId,
    ConfirmationOrder, ErrorCode, KeyPair, MerkleProof, Message, Signature, TransferOrder,
    VoteReply, VoteScheme, VoteSignature,
};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

struct Committee {
    /// What the authorities check signatures against.
    id: CommitteeId,
    addresses: Vec<(SocketAddr, u32)>,
    socket: UdpSocket,
    _processes: Vec<Authority>,
    _dir: tempfile::TempDir,
}

impl Committee {
    fn start(funded: &[AccountId], scheme: VoteScheme) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addresses = committee_with(dir.path(), 4, scheme);
        let genesis: String = funded.iter().map(|a| format!("{a}:100\n")).collect();
        fs::write(dir.path().join("initial_accounts.txt"), genesis).unwrap();
        let mut processes: Vec<Authority> = (1..=4)
            .map(|i| Authority::new(dir.path(), i, None))
            .collect();
        for p in &mut processes {
            p.start();
        }
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            id: committee_id(dir.path()),
            addresses,
            socket,
            _processes: processes,
            _dir: dir,
        }
    }

    fn ask(&self, authority: usize, account: &AccountId, message: &Message) -> Message {
        ask(&self.socket, self.addresses[authority], account, message)
    }

    fn vote(&self, authority: usize, order: &TransferOrder) -> Result<VoteReply, ErrorCode> {
        match self.ask(
            authority,
            &order.transfer.sender,
            &Message::TransferOrder(*order),
        ) {
            Message::Vote(vote) => Ok(vote),
            Message::Error(error) => Err(error.code),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn confirm(
        &self,
        authority: usize,
        certificate: CertifiedTransferOrder,
    ) -> Result<(), ErrorCode> {
        let account = certificate.value.transfer.sender;
        let message = Message::ConfirmationOrder(ConfirmationOrder { certificate });
        match self.ask(authority, &account, &message) {
            Message::AccountInfoResponse(_) => Ok(()),
            Message::Error(error) => Err(error.code),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn balance(&self, authority: usize, account: &AccountId) -> Option<i128> {
        let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
        match self.ask(authority, account, &request) {
            Message::AccountInfoResponse(info) => Some(info.balance.units()),
            Message::Error(error) if error.code == ErrorCode::UnknownAccount => None,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn certificate(order: TransferOrder, votes: &[VoteReply]) -> CertifiedTransferOrder {
    CertifiedTransferOrder {
        value: order,
        signatures: votes.iter().map(|v| (v.authority, v.signature)).collect(),
    }
}

#[test]
fn byzantine_clients_get_nothing_and_cost_nobody_anything() {
    byzantine_clients(VoteScheme::Single);
}

#[test]
fn byzantine_clients_get_nothing_and_cost_nobody_anything_with_batched_votes() {
    byzantine_clients(VoteScheme::Merkle);
}

/// A garbage signature in the form `scheme` uses (a bad root signature for batched votes).
fn garbage_signature(of: VoteSignature) -> VoteSignature {
    match of {
        VoteSignature::Single(_) => VoteSignature::Single(Signature([7; 64])),
        VoteSignature::Batched(mut proof) => {
            proof.root_signature = Signature([7; 64]);
            VoteSignature::Batched(proof)
        }
    }
}

fn byzantine_clients(scheme: VoteScheme) {
    let mallory = KeyPair::from_seed([1; 32]);
    let alice = KeyPair::from_seed([2; 32]);
    let bob = KeyPair::from_seed([3; 32]);
    let c = Committee::start(&[mallory.account(), alice.account(), bob.account()], scheme);
    std::thread::sleep(Duration::from_millis(300));

    // Conflicting orders for one sequence number, each sent to half of the committee.
    let to_alice = order(&c.id, &mallory, alice.account(), 60, 0);
    let to_bob = order(&c.id, &mallory, bob.account(), 60, 0);
    let a: Vec<VoteReply> = (0..2).map(|i| c.vote(i, &to_alice).unwrap()).collect();
    let b: Vec<VoteReply> = (2..4).map(|i| c.vote(i, &to_bob).unwrap()).collect();
    // Crossing over is refused: each authority keeps the order it voted for.
    for i in 0..2 {
        assert_eq!(c.vote(i, &to_bob), Err(ErrorCode::ConflictingOrder));
    }
    for i in 2..4 {
        assert_eq!(c.vote(i, &to_alice), Err(ErrorCode::ConflictingOrder));
    }
    // Two votes are not a quorum of four; mixing votes of both orders does not verify.
    for i in 0..4 {
        assert_eq!(
            c.confirm(i, certificate(to_alice, &a)),
            Err(ErrorCode::InvalidCertificate)
        );
        let mixed = certificate(to_alice, &[a[0], a[1], b[0]]);
        assert_eq!(c.confirm(i, mixed), Err(ErrorCode::InvalidSignature));
    }

    // Forged certificates for a fresh order of Alice's: duplicated signers, a signer outside
    // the committee, too little weight, a garbage signature.
    let pay = order(&c.id, &alice, bob.account(), 10, 0);
    let votes: Vec<VoteReply> = (0..4).map(|i| c.vote(i, &pay).unwrap()).collect();
    let mut duplicated = certificate(pay, &votes[..2]);
    duplicated.signatures.push(duplicated.signatures[0]);
    let mut outsider = certificate(pay, &votes[..2]);
    outsider
        .signatures
        .push((AuthorityName([9; 32]), votes[2].signature));
    let mut garbage = certificate(pay, &votes[..3]);
    garbage.signatures[2].1 = garbage_signature(garbage.signatures[2].1);
    // The other form than the authority uses: a real-looking vote refused by its form.
    let mut wrong_form = certificate(pay, &votes[..3]);
    wrong_form.signatures[1].1 = match wrong_form.signatures[1].1 {
        VoteSignature::Single(s) => VoteSignature::Batched(MerkleProof::new(s, 0, &[]).unwrap()),
        VoteSignature::Batched(p) => VoteSignature::Single(p.root_signature),
    };
    let mut cases = vec![
        (duplicated, ErrorCode::InvalidCertificate),
        (outsider, ErrorCode::InvalidCertificate),
        (certificate(pay, &votes[..1]), ErrorCode::InvalidCertificate),
        (garbage, ErrorCode::InvalidSignature),
        (wrong_form, ErrorCode::InvalidSignature),
    ];
    if let VoteSignature::Batched(proof) = votes[2].signature {
        // A path that leads elsewhere, and an index past the tree.
        let mut bent = certificate(pay, &votes[..3]);
        bent.signatures[2].1 = VoteSignature::Batched(
            MerkleProof::new(proof.root_signature, proof.index(), &[[3; 32]]).unwrap(),
        );
        let mut past = certificate(pay, &votes[..3]);
        past.signatures[2].1 =
            VoteSignature::Batched(MerkleProof::new(proof.root_signature, 1, &[]).unwrap());
        cases.push((bent, ErrorCode::InvalidSignature));
        cases.push((past, ErrorCode::InvalidSignature));
    }
    for (forged, code) in cases {
        assert_eq!(c.confirm(0, forged), Err(code));
    }

    // The genuine certificate works once; replays of it and of the order change nothing.
    let genuine = certificate(pay, &votes[..3]);
    for i in 0..4 {
        c.confirm(i, genuine.clone()).unwrap();
        c.confirm(i, genuine.clone()).unwrap();
        assert_eq!(c.vote(i, &pay), Err(ErrorCode::StaleSequenceNumber));
    }

    // Absurd amounts, zero, unknown senders, and an order signed for another committee.
    let huge = order(&c.id, &bob, alice.account(), u64::MAX, 0);
    let zero = order(&c.id, &bob, alice.account(), 0, 0);
    let stranger = order(&c.id, &KeyPair::from_seed([4; 32]), bob.account(), 1, 0);
    let elsewhere = order(&CommitteeId([0x5a; 32]), &bob, alice.account(), 1, 0);
    for i in 0..4 {
        assert_eq!(c.vote(i, &huge), Err(ErrorCode::InsufficientFunds));
        assert_eq!(c.vote(i, &zero), Err(ErrorCode::ZeroAmount));
        assert_eq!(c.vote(i, &stranger), Err(ErrorCode::UnknownAccount));
        assert_eq!(c.vote(i, &elsewhere), Err(ErrorCode::InvalidSignature));
    }

    // Nobody lost anything: Mallory's funds are locked, not gone; Alice paid Bob 10, once.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..4 {
        assert_eq!(c.balance(i, &mallory.account()), Some(100));
        assert_eq!(c.balance(i, &alice.account()), Some(90));
        assert_eq!(c.balance(i, &bob.account()), Some(110));
    }
}
