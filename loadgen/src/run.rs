//! The open-loop runner: requests leave on a fixed schedule whatever the replies do, and each
//! latency is measured from the request's scheduled time, so a stalled sender or a full
//! in-flight window shows up in the latencies (no coordinated omission).

use crate::setup::Prepared;
use anyhow::Result;
use fastpay_udp::SegmentBatch;
use fastpay_wire::{
    AccountId, AuthorityEntry, CertifiedTransferOrder, ConfirmationOrder, ErrorCode, Message,
    VoteSignature, decode, encode_into, encode_padded_into, shard_of,
};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A transfer order to the targets; done at a vote from each needed target.
    Orders,
    /// A confirmation order to the targets; done at an acknowledgement from each needed one.
    Confirmations,
    /// Order to all, quorum of votes, certificate, confirmation to all, quorum of acks.
    Payments,
}

impl Phase {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Orders => "orders",
            Phase::Confirmations => "confirmations",
            Phase::Payments => "payments",
        }
    }
}

/// How a run is shaped.
pub struct RunConfig {
    /// What each request is.
    pub phase: Phase,
    /// Requests started per second.
    pub rate: f64,
    /// How long requests are started for.
    pub duration: Duration,
    /// Most requests outstanding at once; past it the schedule slips (and latencies show it).
    pub in_flight: usize,
    /// Time between wake-ups (each sends one burst of what is due and reads the replies).
    pub tick: Duration,
    /// How long a request may take before it counts as timed out.
    pub timeout: Duration,
    /// Indexes of the authorities requests go to.
    pub targets: Vec<usize>,
    /// Replies needed from the targets (votes, or acknowledgements).
    pub needed: usize,
    /// For payments: the quorum of the whole committee.
    pub quorum: usize,
    /// Hostile datagrams sent alongside the valid ones (not measured, only sent).
    pub flood: Option<Flood>,
}

/// Hostile traffic mixed into a run, as a share of all datagrams sent.
pub struct Flood {
    /// Share of all datagrams that are hostile, in [0, 1).
    pub share: f64,
    /// Orders or confirmations with broken signatures (they pass every cheap check and cost
    /// signature verifications), or, when empty, random bytes.
    pub forged: Vec<Message>,
    /// Where the hostile datagrams go instead of the targets (random bytes only).
    pub to: Vec<SocketAddr>,
}

/// What a run measured.
pub struct Report {
    /// Requests started.
    pub sent: u64,
    /// Requests completed.
    pub ok: u64,
    /// Requests refused (by code).
    pub rejected: BTreeMap<String, u64>,
    /// Requests without an answer in time.
    pub timeouts: u64,
    /// Requests the authorities refused as `Overloaded` (they shed them: see `server run
    /// --shed-after-ms`); not counted in `rejected`.
    pub shed: u64,
    /// Latency from scheduled start to completion, microseconds.
    pub latency: Histogram<u64>,
    /// For payments: scheduled start to certificate, microseconds.
    pub certify_latency: Histogram<u64>,
    /// Seconds over which requests were started.
    pub window_s: f64,
    /// Seconds from the first request started to the last one completed (at least
    /// `window_s`): over it, `ok` is the goodput, with no credit for a backlog the authorities
    /// drained after the sending stopped.
    pub active_s: f64,
    /// Requests started more than a millisecond after their scheduled time (the sender could
    /// not keep up, or the in-flight cap held them back).
    pub late: u64,
    /// Votes from one authority for two different orders of one account and sequence number.
    pub equivocations: u64,
    /// Replies that matched no outstanding request (late or duplicated).
    pub stray_replies: u64,
}

impl Report {
    /// Requests refused, over all codes.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

enum Stage {
    Voting {
        votes: Vec<(usize, VoteSignature)>,
        refusals: usize,
    },
    Confirming {
        acks: Vec<usize>,
        refusals: usize,
    },
}

struct Request {
    job: usize,
    scheduled: Instant,
    stage: Stage,
}

/// The sockets and the committee's addresses.
pub struct Endpoints {
    sockets: Vec<UdpSocket>,
    shards: Vec<u32>,
    /// Padding of requests to each authority (see `VoteScheme::request_padding`).
    padding: Vec<u16>,
    by_address: HashMap<SocketAddr, usize>,
    names: Vec<fastpay_wire::AuthorityName>,
    buffer: Vec<u8>,
    /// Datagrams per authority and shard, sent in GSO batches at each [`flush`](Self::flush)
    /// (one batch reaches one socket of the authority's reuseport group, so it must hold one
    /// shard's datagrams).
    outgoing: Vec<Vec<SegmentBatch>>,
    /// Hostile datagrams for addresses other than the authorities' (`--flood-to`), batched
    /// like the rest so that flooding them costs loadgen no more than flooding an authority.
    flood_out: Vec<SegmentBatch>,
    /// Batches flushed so far: picks the socket of the next (spreading source ports).
    flushes: usize,
    /// The last message read (replies coalesced by the kernel when the authority sent them
    /// as one GSO batch), its sender, and how far it has been handed out.
    incoming: Vec<u8>,
    incoming_len: usize,
    incoming_segment: usize,
    incoming_from: usize,
    incoming_at: usize,
}

impl Endpoints {
    /// `count` nonblocking sockets (distinct source ports spread flow hashing) and the
    /// committee's addresses.
    pub fn new(authorities: &[AuthorityEntry], count: usize) -> Result<Self> {
        let mut sockets = Vec::new();
        for _ in 0..count.max(1) {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_nonblocking(true)?;
            // Best effort: without it every reply is read on its own.
            fastpay_udp::enable_gro(&socket);
            sockets.push(socket);
        }
        // Each shard's address (one per shard even when they are all the authority's).
        let addresses: Vec<Vec<SocketAddr>> = authorities
            .iter()
            .map(AuthorityEntry::shard_addresses)
            .collect::<Result<_, _>>()?;
        // A committee file has at least one shard per authority (it is refused otherwise).
        let outgoing = addresses
            .iter()
            .map(|shards| shards.iter().map(|a| SegmentBatch::new(*a)).collect())
            .collect();
        Ok(Self {
            sockets,
            // Replies come from the shard's address: each one names its authority.
            by_address: addresses
                .iter()
                .enumerate()
                .flat_map(|(i, shards)| shards.iter().map(move |a| (*a, i)))
                .collect(),
            shards: authorities.iter().map(|a| a.shards).collect(),
            padding: authorities
                .iter()
                .map(|a| a.votes.request_padding())
                .collect(),
            names: authorities.iter().map(|a| a.name).collect(),
            buffer: vec![0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE],
            outgoing,
            flood_out: Vec::new(),
            flushes: 0,
            incoming: vec![0u8; fastpay_udp::COALESCED_BYTES],
            incoming_len: 0,
            incoming_segment: 0,
            incoming_from: 0,
            incoming_at: 0,
        })
    }

    /// Queues `message` for `authority` (sent at the next [`flush`](Self::flush)). A full
    /// socket buffer loses it: the request times out and is counted.
    fn send(&mut self, authority: usize, account: &AccountId, message: &Message) {
        let shard = shard_of(account, self.shards[authority]);
        let padding = self.padding[authority];
        if let Ok(len) = encode_padded_into(message, shard, padding, &mut self.buffer) {
            self.queue(authority, shard.0, len);
        }
    }

    /// Queues the first `len` bytes of `buffer` for `shard` of `authority`. A batch that must
    /// go out early (another size, or full) leaves from the socket of the next flush.
    fn queue(&mut self, authority: usize, shard: u32, len: usize) {
        let socket = &self.sockets[self.flushes % self.sockets.len()];
        self.outgoing[authority][shard as usize].push(socket, &self.buffer[..len]);
    }

    /// Writes `n`-th datagram of random bytes behind a plausible header (so that it reaches
    /// the decoder) for shard `shard % shards`; returns its shard and length.
    fn garbage(&mut self, n: usize, shards: u32) -> (u32, usize) {
        let mut x = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let len = 150;
        for byte in self.buffer[..len].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        self.buffer[..4].copy_from_slice(&[fastpay_wire::codec::WIRE_VERSION, 1, 0, 0]);
        let shard = (x as u32) % shards.max(1);
        self.buffer[4..8].copy_from_slice(&shard.to_be_bytes());
        (shard, len)
    }

    /// Sends the `n`-th hostile datagram of `flood` to every target (or to its own
    /// addresses).
    fn send_flood(&mut self, flood: &Flood, n: usize, targets: &[usize]) {
        if !flood.to.is_empty() {
            if self.flood_out.is_empty() {
                self.flood_out = flood.to.iter().map(|a| SegmentBatch::new(*a)).collect();
            }
            let (_, len) = self.garbage(n, 1);
            let socket = &self.sockets[self.flushes % self.sockets.len()];
            for batch in &mut self.flood_out {
                batch.push(socket, &self.buffer[..len]);
            }
            return;
        }
        for &authority in targets {
            let (shard, len) = if flood.forged.is_empty() {
                self.garbage(n, self.shards[authority])
            } else {
                let message = &flood.forged[n % flood.forged.len()];
                let sender = match message {
                    Message::TransferOrder(order) => order.transfer.sender,
                    Message::ConfirmationOrder(c) => c.certificate.value.transfer.sender,
                    _ => continue,
                };
                let shard = shard_of(&sender, self.shards[authority]);
                match encode_into(message, shard, &mut self.buffer) {
                    Ok(len) => (shard.0, len),
                    Err(_) => continue,
                }
            };
            self.queue(authority, shard, len);
        }
    }

    /// Sends everything queued: one GSO message per authority shard with datagrams waiting.
    fn flush(&mut self) {
        for batch in self
            .outgoing
            .iter_mut()
            .flatten()
            .chain(&mut self.flood_out)
        {
            if !batch.is_empty() {
                self.flushes += 1;
                batch.flush(&self.sockets[self.flushes % self.sockets.len()]);
            }
        }
    }

    /// One pending reply, from any socket.
    fn receive(&mut self) -> Option<(usize, Message)> {
        loop {
            while self.incoming_at < self.incoming_len {
                let end = (self.incoming_at + self.incoming_segment).min(self.incoming_len);
                let bytes = &self.incoming[self.incoming_at..end];
                self.incoming_at = end;
                if let Ok((_, message)) = decode(bytes) {
                    return Some((self.incoming_from, message));
                }
            }
            if !self.read_message() {
                return None;
            }
        }
    }

    /// Reads the next message from an authority into `incoming`; `false` when every socket
    /// is drained.
    fn read_message(&mut self) -> bool {
        for socket in &self.sockets {
            loop {
                match fastpay_udp::recv_coalesced(socket, &mut self.incoming) {
                    Ok((len, segment, from)) => {
                        let Some(&authority) = self.by_address.get(&from) else {
                            continue;
                        };
                        self.incoming_len = len;
                        self.incoming_segment = segment.max(1);
                        self.incoming_from = authority;
                        self.incoming_at = 0;
                        return true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        false
    }
}

/// Runs the orders phase and returns, per job, a certificate if the order got the votes it
/// needed (the votes are not verified: a bad one makes the confirmation fail, which the
/// confirmations phase counts).
pub fn run_collecting(
    config: &RunConfig,
    endpoints: &mut Endpoints,
    jobs: &[Prepared],
    live: &ProgressBar,
) -> Result<Vec<Option<CertifiedTransferOrder>>> {
    let mut collected = Vec::new();
    run_inner(config, endpoints, jobs, &[], live, Some(&mut collected))?;
    Ok(collected)
}

/// Runs `jobs` (one per prepared order) open-loop; `certificates` are needed for the
/// confirmations phase.
pub fn run(
    config: &RunConfig,
    endpoints: &mut Endpoints,
    jobs: &[Prepared],
    certificates: &[CertifiedTransferOrder],
    live: &ProgressBar,
) -> Result<Report> {
    run_inner(config, endpoints, jobs, certificates, live, None)
}

fn run_inner(
    config: &RunConfig,
    endpoints: &mut Endpoints,
    jobs: &[Prepared],
    certificates: &[CertifiedTransferOrder],
    live: &ProgressBar,
    mut collect: Option<&mut Vec<Option<CertifiedTransferOrder>>>,
) -> Result<Report> {
    let mut total = ((config.rate * config.duration.as_secs_f64()) as usize).min(jobs.len());
    if config.phase == Phase::Confirmations {
        total = total.min(certificates.len());
    }
    if let Some(collected) = collect.as_deref_mut() {
        collected.resize(total, None);
    }
    // Replies name their account. The jobs started within the timeout are found by the
    // account's first eight bytes (keys are uniformly random) and then checked in full: a
    // table of the recent jobs only stays in cache, where one of every job would miss it (and
    // the TLB) on every reply. Replies to older jobs count as stray.
    let mut recent: FxHashMap<u64, u32> = FxHashMap::default();
    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let mut report = Report {
        sent: 0,
        ok: 0,
        rejected: BTreeMap::new(),
        timeouts: 0,
        shed: 0,
        latency: histogram()?,
        certify_latency: histogram()?,
        window_s: 0.0,
        active_s: 0.0,
        late: 0,
        equivocations: 0,
        stray_replies: 0,
    };
    let mut outstanding: FxHashMap<usize, Request> = FxHashMap::default();
    let mut by_start: VecDeque<usize> = VecDeque::new();
    // Per job and authority, a fingerprint of the first vote seen (0: none yet), keyed with
    // this run's random SipHash key so an authority cannot aim for a collision.
    let authorities = endpoints.names.len();
    let mut votes_seen: Vec<u64> = vec![0; total * authorities];
    let fingerprint = RandomState::new();
    let start = Instant::now();
    let mut last_ok = start;
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(1e-9));
    let mut next = 0usize;
    let mut last_report = start;
    let mut last_send = start;
    let mut flood_debt = 0.0f64;
    let mut flood_sent = 0usize;

    loop {
        let now = Instant::now();
        // Start everything the schedule says is due.
        let due = ((now - start).as_secs_f64() * config.rate) as usize;
        while next < total.min(due + 1) {
            if outstanding.len() >= config.in_flight {
                break;
            }
            let job = next;
            next += 1;
            let scheduled = start + interval.mul_f64(job as f64);
            if now > scheduled + Duration::from_millis(1) {
                report.late += 1;
            }
            let stage = match config.phase {
                Phase::Confirmations => Stage::Confirming {
                    acks: Vec::new(),
                    refusals: 0,
                },
                _ => Stage::Voting {
                    votes: Vec::new(),
                    refusals: 0,
                },
            };
            let message = match config.phase {
                Phase::Confirmations => Message::ConfirmationOrder(ConfirmationOrder {
                    certificate: certificates[job].clone(),
                }),
                _ => Message::TransferOrder(jobs[job].order),
            };
            for &authority in &config.targets {
                endpoints.send(authority, &jobs[job].account, &message);
            }
            if let Some(flood) = &config.flood {
                // Keep the hostile share of the datagrams at `share` on average.
                flood_debt += flood.share / (1.0 - flood.share).max(1e-9);
                while flood_debt >= 1.0 {
                    flood_debt -= 1.0;
                    flood_sent += 1;
                    endpoints.send_flood(flood, flood_sent, &config.targets);
                }
            }
            outstanding.insert(
                job,
                Request {
                    job,
                    scheduled,
                    stage,
                },
            );
            by_start.push_back(job);
            recent.insert(account_prefix(&jobs[job].account), job as u32);
            report.sent += 1;
            last_send = Instant::now();
        }
        endpoints.flush();

        // Take every reply that arrived.
        while let Some((authority, message)) = endpoints.receive() {
            let account = match &message {
                Message::Vote(v) => v.sender,
                Message::AccountInfoResponse(info) => info.account,
                Message::Error(e) => e.account,
                _ => continue,
            };
            let job = match recent.get(&account_prefix(&account)) {
                Some(&job) if jobs[job as usize].account == account => job as usize,
                _ => {
                    report.stray_replies += 1;
                    continue;
                }
            };
            if let Message::Vote(vote) = &message {
                // Two different votes from one authority for one account and sequence number
                // would be a broken safety promise.
                let seen = &mut votes_seen[job * authorities + authority];
                let print = fingerprint.hash_one(vote.signature) | 1;
                if *seen == 0 {
                    *seen = print;
                } else if *seen != print {
                    report.equivocations += 1;
                }
            }
            let Some(request) = outstanding.get_mut(&job) else {
                report.stray_replies += 1;
                continue;
            };
            let outcome = step(config, endpoints, jobs, request, authority, message);
            match outcome {
                Step::Pending => {}
                Step::Certified => {
                    let elapsed = request.scheduled.elapsed().as_micros() as u64;
                    report.certify_latency.saturating_record(elapsed.max(1));
                }
                Step::Done => {
                    if let (Some(collected), Stage::Voting { votes, .. }) =
                        (collect.as_deref_mut(), &request.stage)
                    {
                        collected[job] = Some(CertifiedTransferOrder {
                            value: jobs[job].order,
                            signatures: votes
                                .iter()
                                .map(|(a, s)| (endpoints.names[*a], *s))
                                .collect(),
                        });
                    }
                    let elapsed = request.scheduled.elapsed().as_micros() as u64;
                    report.latency.saturating_record(elapsed.max(1));
                    report.ok += 1;
                    last_ok = Instant::now();
                    outstanding.remove(&job);
                }
                Step::Refused(ErrorCode::Overloaded) => {
                    report.shed += 1;
                    outstanding.remove(&job);
                }
                Step::Refused(code) => {
                    *report.rejected.entry(format!("{code:?}")).or_default() += 1;
                    outstanding.remove(&job);
                }
            }
        }
        // Confirmations started by the replies above (payments).
        endpoints.flush();

        // Expire the jobs started more than the timeout ago, oldest first: unanswered ones
        // time out; late replies to any of them will count as stray.
        while let Some(&job) = by_start.front() {
            let scheduled = start + interval.mul_f64(job as f64);
            if scheduled.elapsed() <= config.timeout {
                break;
            }
            by_start.pop_front();
            recent.remove(&account_prefix(&jobs[job].account));
            if outstanding.remove(&job).is_some() {
                report.timeouts += 1;
            }
        }

        if now.duration_since(last_report) >= Duration::from_millis(500) {
            last_report = now;
            let elapsed = (now - start).as_secs_f64();
            live.set_message(format!(
                "t={elapsed:5.1}s sent={} ok={} rejected={} shed={} timeouts={} in-flight={} rate={:.0}/s p99={}us",
                report.sent,
                report.ok,
                report.rejected_total(),
                report.shed,
                report.timeouts,
                outstanding.len(),
                report.ok as f64 / elapsed.max(1e-9),
                report.latency.value_at_quantile(0.99),
            ));
        }
        if next >= total && outstanding.is_empty() {
            break;
        }
        if next >= total && last_send.elapsed() > config.timeout + Duration::from_millis(100) {
            // Whatever is left has timed out by now.
            report.timeouts += outstanding.len() as u64;
            break;
        }
        std::thread::sleep(config.tick);
    }
    report.active_s = (last_ok - start).as_secs_f64();
    report.window_s = (last_send - start)
        .as_secs_f64()
        .max(interval.as_secs_f64());
    report.active_s = report.active_s.max(report.window_s);
    Ok(report)
}

/// The first eight bytes of an account (a public key, so uniformly random).
fn account_prefix(account: &AccountId) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&account.0[..8]);
    u64::from_le_bytes(prefix)
}

enum Step {
    Pending,
    Certified,
    Done,
    Refused(ErrorCode),
}

/// Advances one request with one reply.
fn step(
    config: &RunConfig,
    endpoints: &mut Endpoints,
    jobs: &[Prepared],
    request: &mut Request,
    authority: usize,
    message: Message,
) -> Step {
    let targets = config.targets.len();
    match (&mut request.stage, message) {
        (Stage::Voting { votes, .. }, Message::Vote(vote)) => {
            let order = &jobs[request.job].order;
            if vote.sequence_number != order.transfer.sequence_number
                || votes.iter().any(|(a, _)| *a == authority)
            {
                return Step::Pending;
            }
            votes.push((authority, vote.signature));
            let needed = if config.phase == Phase::Payments {
                config.quorum
            } else {
                config.needed
            };
            if votes.len() < needed {
                return Step::Pending;
            }
            if config.phase != Phase::Payments {
                return Step::Done;
            }
            // Quorum: certify and confirm with every target.
            let certificate = CertifiedTransferOrder {
                value: *order,
                signatures: votes
                    .iter()
                    .map(|(a, s)| (endpoints.names[*a], *s))
                    .collect(),
            };
            let message = Message::ConfirmationOrder(ConfirmationOrder { certificate });
            for &target in &config.targets {
                endpoints.send(target, &jobs[request.job].account, &message);
            }
            request.stage = Stage::Confirming {
                acks: Vec::new(),
                refusals: 0,
            };
            Step::Certified
        }
        (Stage::Confirming { acks, .. }, Message::AccountInfoResponse(info)) => {
            if info.next_sequence_number.value() == 0 || acks.contains(&authority) {
                return Step::Pending;
            }
            acks.push(authority);
            let needed = if config.phase == Phase::Payments {
                config.quorum
            } else {
                config.needed
            };
            if acks.len() >= needed {
                Step::Done
            } else {
                Step::Pending
            }
        }
        (
            Stage::Voting { refusals, .. } | Stage::Confirming { refusals, .. },
            Message::Error(error),
        ) => {
            *refusals += 1;
            let needed = if config.phase == Phase::Payments {
                config.quorum
            } else {
                config.needed
            };
            // Refused once enough targets said no that the rest cannot make up the need.
            if targets - *refusals < needed {
                Step::Refused(error.code)
            } else {
                Step::Pending
            }
        }
        _ => Step::Pending,
    }
}
