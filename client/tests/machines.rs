//! The client machines against four in-process authority shards, under a hand-run clock:
//! every reply arrives one millisecond after its request, and the test decides what else
//! arrives and when.

use fastpay_authority::{AuthorityShard, Genesis};
use fastpay_client::{
    Action, ClientState, DriveError, Exchange, Goal, Phase, SAVE_DELAY, SyncAccount, Transfers,
    Transmit,
};
use fastpay_wire::{
    AccountId, AccountInfoResponse, AccountQuery, Amount, AuthorityName, Balance,
    CertificateAnswer, CertificatesResponse, CertifiedTransferOrder, Committee, KeyPair, Message,
    SequenceNumber, ShardId,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an authority takes to answer.
const ROUND_TRIP: Duration = Duration::from_millis(1);

struct Committee4 {
    committee: Arc<Committee>,
    names: Vec<AuthorityName>,
    shards: Vec<AuthorityShard>,
    /// Authorities that receive nothing (crashed, or partitioned away).
    down: Vec<bool>,
    /// The certificates each authority applied (what a node's certificate store serves).
    applied: Vec<Vec<CertifiedTransferOrder>>,
    alice: ClientState,
    bob: AccountId,
}

fn committee4() -> Committee4 {
    let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([70 + i; 32])).collect();
    let committee =
        Arc::new(Committee::equal_weights(keys.iter().map(KeyPair::authority), 1).unwrap());
    let alice = KeyPair::from_seed([11; 32]);
    let bob = KeyPair::from_seed([12; 32]).account();
    let genesis = Genesis::from_accounts([(alice.account(), Amount::new(100))]).unwrap();
    let names = keys.iter().map(KeyPair::authority).collect();
    let shards = keys
        .into_iter()
        .map(|k| AuthorityShard::new(k, committee.clone(), ShardId(0), &genesis).unwrap())
        .collect();
    Committee4 {
        alice: ClientState::new(alice, committee.clone(), Balance::new(100)),
        committee,
        names,
        shards,
        down: vec![false; 4],
        applied: vec![Vec::new(); 4],
        bob,
    }
}

/// What a run of a machine saw.
#[derive(Default)]
struct Trace {
    /// When each save was asked for.
    saves: Vec<Instant>,
    /// When each confirmation left, and whether a save had come before it.
    confirmations: Vec<(Instant, bool)>,
}

impl Committee4 {
    /// Runs `machine` over Alice's account until it finishes or `limit` passes; `noise` may
    /// inject messages at any moment (`(when, from, message)`, in time order).
    fn run<E: Exchange>(
        &mut self,
        machine: &mut E,
        start: Instant,
        limit: Duration,
        mut noise: Vec<(Instant, AuthorityName, Message)>,
    ) -> (Option<E::Output>, Trace) {
        let mut now = start;
        let mut trace = Trace::default();
        let mut replies: Vec<(Instant, AuthorityName, Message)> = Vec::new();
        noise.reverse();
        // Waits in a row that moved neither the clock nor a message: a machine that keeps
        // asking to be woken at a moment already past spins; the test must say so, not hang.
        let mut idle_waits = 0u32;
        while now < start + limit {
            match machine.poll(std::slice::from_mut(&mut self.alice), now) {
                Action::Send(transmit) => self.deliver(transmit, now, &mut replies, &mut trace),
                Action::Save => {
                    trace.saves.push(now);
                    machine.saved();
                }
                Action::Done(output) => return (Some(output), trace),
                Action::Wait(until) => {
                    replies.sort_by_key(|r| r.0);
                    let reply = replies.first().map(|r| r.0);
                    let noisy = noise.last().map(|n| n.0);
                    let next = [Some(until), reply, noisy].into_iter().flatten().min();
                    now = next.unwrap_or(until).max(now);
                    let message = if noisy == Some(now) {
                        noise.pop()
                    } else if reply == Some(now) {
                        Some(replies.remove(0))
                    } else {
                        None
                    };
                    idle_waits = if message.is_none() && until <= now {
                        idle_waits + 1
                    } else {
                        0
                    };
                    assert!(
                        idle_waits < 1_000,
                        "the machine spins: it waits for {until:?}, already past"
                    );
                    if let Some((_, from, message)) = message {
                        let clients = std::slice::from_mut(&mut self.alice);
                        machine.handle(clients, now, from, message);
                    }
                }
            }
        }
        (None, trace)
    }

    fn deliver(
        &mut self,
        transmit: Transmit,
        now: Instant,
        replies: &mut Vec<(Instant, AuthorityName, Message)>,
        trace: &mut Trace,
    ) {
        if let Message::ConfirmationOrder(_) = transmit.message {
            trace.confirmations.push((now, !trace.saves.is_empty()));
        }
        let a = self.names.iter().position(|n| *n == transmit.to).unwrap();
        if self.down[a] {
            return;
        }
        let reply = match &transmit.message {
            // The certificate store lives in the node, above the shard: served from `applied`.
            Message::AccountInfoRequest(request) => match request.query {
                AccountQuery::Certificate(sequence) => {
                    let found = self.applied[a].iter().find(|c| {
                        c.value.transfer.sender == request.account
                            && c.value.transfer.sequence_number == sequence
                    });
                    let answer = match found {
                        Some(certificate) => CertificateAnswer::Certificate(certificate.clone()),
                        None => CertificateAnswer::NotApplied {
                            next_sequence_number: sequence,
                        },
                    };
                    Some(Message::Certificates(CertificatesResponse {
                        account: request.account,
                        query: request.query,
                        answer,
                    }))
                }
                _ => self.shards[a].handle_message(&transmit.message).reply,
            },
            Message::ConfirmationOrder(order) => {
                let handled = self.shards[a].handle_message(&transmit.message);
                if handled.error.is_none() && !self.applied[a].contains(&order.certificate) {
                    self.applied[a].push(order.certificate.clone());
                }
                handled.reply
            }
            message => self.shards[a].handle_message(message).reply,
        };
        if let Some(reply) = reply {
            replies.push((now + ROUND_TRIP, transmit.to, reply));
        }
    }
}

#[test]
fn a_payment_is_certified_saved_then_confirmed() {
    let mut fx = committee4();
    fx.alice
        .transfer(fx.bob, Amount::new(30), None)
        .expect("funded");
    let start = Instant::now();
    let mut transfers = Transfers::new(
        &fx.committee,
        Goal::Finished,
        start + Duration::from_secs(5),
    );
    let (done, trace) = fx.run(&mut transfers, start, Duration::from_secs(10), Vec::new());
    let stats = done.expect("finished").expect("no timeout");
    assert!(fx.alice.pending().is_none());
    assert_eq!(fx.alice.balance(), Balance::new(70));
    // At most the vote that came after the quorum's is refused (no transfer is voting then).
    assert!(stats.refused <= 1, "{stats:?}");
    // Saved once, before any confirmation left.
    assert_eq!(trace.saves.len(), 1);
    assert!(!trace.confirmations.is_empty());
    assert!(
        trace
            .confirmations
            .iter()
            .all(|(_, after_save)| *after_save)
    );
}

/// A Byzantine authority that sends the client a datagram every 100 us cannot postpone the
/// save of a certificate, and so its confirmation: the save comes at most [`SAVE_DELAY`]
/// after the quorum's last vote.
#[test]
fn a_chatty_authority_does_not_delay_the_confirmation() {
    let mut fx = committee4();
    fx.down[3] = true;
    let liar = fx.names[3];
    fx.alice
        .transfer(fx.bob, Amount::new(5), None)
        .expect("funded");
    let start = Instant::now();
    // Account states for Alice that acknowledge nothing, every 100 us for 2 s.
    let chatter: Vec<_> = (1..20_000u32)
        .map(|k| {
            let info = AccountInfoResponse {
                account: fx.alice.account(),
                balance: Balance::new(100),
                next_sequence_number: SequenceNumber::ZERO,
                pending: None,
                deposited: Balance::ZERO,
            };
            let at = start + Duration::from_micros(100) * k;
            (at, liar, Message::AccountInfoResponse(info))
        })
        .collect();
    let mut transfers = Transfers::new(
        &fx.committee,
        Goal::Finished,
        start + Duration::from_secs(5),
    );
    let (done, trace) = fx.run(&mut transfers, start, Duration::from_secs(10), chatter);
    done.expect("finished").expect("no timeout");
    // Votes arrive one round trip after the orders leave, at `start`.
    let certified = start + ROUND_TRIP;
    assert_eq!(trace.saves.len(), 1);
    assert!(
        trace.saves[0] <= certified + SAVE_DELAY,
        "the save came {:?} after the certificate formed",
        trace.saves[0] - certified
    );
    let (first_confirmation, _) = trace.confirmations[0];
    assert!(first_confirmation <= certified + SAVE_DELAY);
}

#[test]
fn a_transfer_without_a_quorum_times_out_and_keeps_its_order() {
    let mut fx = committee4();
    fx.down[2] = true;
    fx.down[3] = true;
    fx.alice
        .transfer(fx.bob, Amount::new(5), None)
        .expect("funded");
    let start = Instant::now();
    let mut transfers = Transfers::new(
        &fx.committee,
        Goal::Finished,
        start + Duration::from_secs(1),
    );
    let (done, _) = fx.run(&mut transfers, start, Duration::from_secs(10), Vec::new());
    let outcome = done.expect("gave up by its deadline");
    assert_eq!(outcome.err(), Some(DriveError::Timeout { unfinished: 1 }));
    assert!(matches!(fx.alice.pending(), Some(Phase::Voting { .. })));
}

/// A wallet that lost its certificate (a crash between certificate and save) finds it in the
/// committee on its next sync, and finishes the transfer.
#[test]
fn a_sync_recovers_a_certificate_the_wallet_lost() {
    let mut fx = committee4();
    let saved = fx.alice.snapshot();
    fx.alice
        .transfer(fx.bob, Amount::new(40), None)
        .expect("funded");
    let start = Instant::now();
    let mut transfers = Transfers::new(
        &fx.committee,
        Goal::Finished,
        start + Duration::from_secs(5),
    );
    fx.run(&mut transfers, start, Duration::from_secs(10), Vec::new())
        .0
        .expect("finished")
        .expect("no timeout");
    // The process dies and restarts from the state saved before the transfer.
    let key = KeyPair::from_seed([11; 32]);
    fx.alice = ClientState::restore(Some(key), fx.committee.clone(), saved).unwrap();
    assert_eq!(fx.alice.balance(), Balance::new(100));
    let later = start + Duration::from_secs(20);
    let mut sync = SyncAccount::new(0, Duration::from_secs(2));
    let (done, _) = fx.run(&mut sync, later, Duration::from_secs(30), Vec::new());
    let report = done.expect("finished").expect("synced");
    assert_eq!(report.sent_learned, 1);
    assert_eq!(fx.alice.balance(), Balance::new(60));
    assert_eq!(fx.alice.next_sequence_number(), SequenceNumber::new(1));
    assert!(fx.alice.pending().is_none());
}
