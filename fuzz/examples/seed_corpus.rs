//! Writes seed inputs for every fuzz target into `fuzz/corpus/<target>/`: one encoding of
//! every message kind, batches of valid requests for the test shard (and the log records they
//! produce), a committee file and a genesis text. `scripts/fuzz.sh` adds datagrams captured
//! from a real committee on loopback.

#![forbid(unsafe_code)]

use fastpay_engine::store::ShardStore;
use fastpay_fuzz::{committee, join_batch, key, worker};
use fastpay_wire::*;
use std::fs;
use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("corpus directory");
    fs::write(dir.join(name), bytes).expect("corpus file");
}

fn order(from: u8, to: u8, amount: u64, sequence: u64) -> TransferOrder {
    TransferOrder::new(
        Transfer {
            sender: key(from).account(),
            recipient: key(to).account(),
            amount: Amount::new(amount),
            sequence_number: SequenceNumber::new(sequence),
            user_data: None,
        },
        &committee().id(),
        &key(from),
    )
}

fn certified(order: TransferOrder) -> CertifiedTransferOrder {
    let vote = SignedTransferOrder::new(order, &committee().id(), &key(200));
    CertifiedTransferOrder {
        value: order,
        signatures: vec![(vote.authority, vote.signature)],
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let first = order(1, 2, 5, 0);
    let vote = SignedTransferOrder::new(first, &committee().id(), &key(200));
    let messages = [
        Message::TransferOrder(first),
        Message::Vote(VoteReply::of(&vote)),
        Message::ConfirmationOrder(ConfirmationOrder {
            certificate: certified(first),
        }),
        Message::AccountInfoRequest(AccountInfoRequest::new(key(1).account())),
        Message::AccountInfoRequest(AccountInfoRequest::certificate(
            key(1).account(),
            SequenceNumber::ZERO,
            0,
        )),
        Message::AccountInfoRequest(AccountInfoRequest::received(key(2).account(), 0, 0)),
        Message::Certificates(fastpay_wire::CertificatesResponse {
            account: key(2).account(),
            query: fastpay_wire::AccountQuery::Received(0),
            answer: fastpay_wire::CertificateAnswer::Received {
                certificates: vec![certified(first)],
                next: 1,
                end: 1,
            },
        }),
        Message::AccountInfoResponse(AccountInfoResponse {
            account: key(1).account(),
            balance: Balance::new(95),
            next_sequence_number: SequenceNumber::new(1),
            pending: Some(vote),
            deposited: Balance::ZERO,
        }),
        Message::CrossShardUpdate(CrossShardUpdate {
            recipient_shard: ShardId(0),
            certificate: certified(first),
        }),
        Message::Error(ErrorReply {
            code: ErrorCode::InsufficientFunds,
            account: key(1).account(),
            sequence_number: SequenceNumber::new(3),
        }),
        Message::RedeemRequest(fastpay_wire::RedeemRequest {
            certificate: certified(first),
        }),
        Message::SupplyRequest(fastpay_wire::SupplyRequest::new(ShardId(0))),
        Message::Supply(fastpay_wire::ShardSupply {
            authority: key(200).authority(),
            shard: ShardId(0),
            genesis: 400,
            deposited: 7,
            held: Balance::new(407),
            sent: 5,
            received: 5,
        }),
    ];
    let datagrams: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| encode(m, ShardId(0)).expect("seed encodes"))
        .collect();
    for (i, datagram) in datagrams.iter().enumerate() {
        write(&root.join("wire_decode"), &format!("kind-{i}"), datagram);
    }
    // The batched-vote forms: a vote and a certificate carrying Merkle paths, and a padded
    // order (requests to authorities that batch their votes carry padding).
    let batched = sign_votes(
        &[first, order(2, 3, 50, 0), order(3, 4, 1, 0)],
        &(*committee()).clone().with_vote_scheme(VoteScheme::Merkle),
        &key(200),
    );
    let merkle = [
        encode(&Message::Vote(VoteReply::of(&batched[1])), ShardId(0)),
        encode(
            &Message::ConfirmationOrder(ConfirmationOrder {
                certificate: CertifiedTransferOrder {
                    value: first,
                    signatures: vec![(batched[0].authority, batched[0].signature)],
                },
            }),
            ShardId(0),
        ),
        encode_padded(
            &Message::TransferOrder(first),
            ShardId(0),
            VoteScheme::Merkle.request_padding(),
        ),
    ];
    for (i, datagram) in merkle.iter().enumerate() {
        let datagram = datagram.as_ref().expect("seed encodes");
        write(&root.join("wire_decode"), &format!("merkle-{i}"), datagram);
    }

    // Batches: a payment's order then its confirmation, a double spend, overdrafts, queries.
    let requests = |messages: &[Message]| -> Vec<Vec<u8>> {
        messages
            .iter()
            .map(|m| encode(m, ShardId(0)).expect("seed encodes"))
            .collect()
    };
    let second = order(2, 3, 50, 0);
    let batches = [
        requests(&[
            Message::TransferOrder(first),
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certified(first),
            }),
        ]),
        requests(&[
            Message::TransferOrder(first),
            Message::TransferOrder(order(1, 3, 5, 0)),
            Message::TransferOrder(order(4, 1, 1000, 0)),
            Message::AccountInfoRequest(AccountInfoRequest::new(key(4).account())),
            Message::AccountInfoRequest(AccountInfoRequest::received(key(2).account(), 0, 0)),
            Message::AccountInfoRequest(AccountInfoRequest::certificate(
                key(1).account(),
                SequenceNumber::ZERO,
                0,
            )),
            Message::SupplyRequest(fastpay_wire::SupplyRequest::new(ShardId(0))),
        ]),
        requests(&[
            Message::TransferOrder(second),
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certified(second),
            }),
            Message::ConfirmationOrder(ConfirmationOrder {
                certificate: certified(order(2, 3, 50, 1)),
            }),
        ]),
    ];
    let store_dir = std::env::temp_dir().join(format!("fastpay-seed-{}", std::process::id()));
    let _ = fs::remove_dir_all(&store_dir);
    let (mut store, _) = ShardStore::open(&store_dir).expect("a scratch log");
    for (i, batch) in batches.iter().enumerate() {
        write(
            &root.join("pipeline"),
            &format!("batch-{i}"),
            &join_batch(batch.iter().map(Vec::as_slice)),
        );
        // The records the pipeline logs for the batch seed the log decoder.
        let mut worker = worker(true);
        let mut datagrams = Datagrams::new();
        for d in batch {
            datagrams.push("127.0.0.1:9".parse().expect("an address"), d);
        }
        worker.handle_batch(std::time::Duration::ZERO, &datagrams);
        let mut taken = fastpay_node::LogBatch::default();
        worker.take_log(&mut taken);
        store.pending_mut().extend_from_slice(&taken.records);
        store.commit().expect("the scratch log commits");
    }
    let log = fs::read(store_dir.join("log-0")).expect("the scratch log");
    write(&root.join("store_log"), "records", &log);
    let _ = fs::remove_dir_all(&store_dir);

    // Two entries: one as hand-written files have it, one as `server generate` writes it
    // (with its network instance).
    let committee_file = format!(
        "{{\"name\":\"{}\",\"host\":\"127.0.0.1\",\"port\":9100,\"shards\":2,\"weight\":1}}\n\
         {{\"name\":\"{}\",\"host\":\"127.0.0.1\",\"port\":9200,\"shards\":2,\"weight\":1,\
         \"instance\":\"{}\"}}\n",
        key(200).authority(),
        key(201).authority(),
        "5a".repeat(32)
    );
    write(&root.join("config"), "committee", committee_file.as_bytes());
    let genesis = format!("{}:100\n{}:7\n", key(1).account(), key(2).account());
    write(&root.join("config"), "genesis", genesis.as_bytes());
    println!("seed corpus written to {}", root.display());
}
