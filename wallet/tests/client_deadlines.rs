//! A client's every wait has an absolute deadline: an authority (or anyone who learns the
//! client's port) that keeps sending it garbage cannot hold it past its timeout.

use fastpay_wallet::Network;
use fastpay_wire::{CommitteeFile, KeyPair};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn garbage_every_few_milliseconds_does_not_stall_a_query() {
    // The only authority of the committee answers every request with a stream of garbage.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let authority = KeyPair::from_seed([3; 32]);
    let entry = format!(
        "{{\"name\":\"{}\",\"host\":\"127.0.0.1\",\"port\":{port},\"shards\":1}}",
        authority.authority()
    );
    let committee = CommitteeFile::parse(Path::new("committee.json"), &entry).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0u8; 2048];
            let mut client = None;
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    client = Some(from);
                }
                if let Some(client) = client {
                    let _ = socket.send_to(&[0xde, 0xad, 0xbe, 0xef], client);
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        })
    };

    let mut network = Network::new(&committee).unwrap();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let account = KeyPair::from_seed([4; 32]).account();
    std::thread::spawn(move || {
        let answers = network.query(&account, timeout);
        let _ = done_tx.send(answers.map(|a| a.iter().filter(|(_, r)| r.is_ok()).count()));
    });
    // Not a speed assertion: a wait with a deadline ends; one without it never does.
    let result = done_rx.recv_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let answers = result.expect("the query ignored its timeout under a garbage stream");
    assert!(
        matches!(answers, Ok(0) | Err(_)),
        "garbage counted as an answer: {answers:?}"
    );
    eprintln!("the query gave up after {:?}", started.elapsed());
}
