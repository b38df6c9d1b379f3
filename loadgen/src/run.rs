//! The open-loop runner: requests leave on a fixed schedule whatever the replies do, and each
//! latency is measured from the request's scheduled time, so a stalled sender or a full
//! in-flight window shows up in the latencies (no coordinated omission).

use crate::endpoints::Endpoints;
use crate::report::Report;
use crate::setup::Prepared;
pub use crate::workload::{Flood, Phase};
use anyhow::Result;
use fastpay_wire::{
    AccountId, CertifiedTransferOrder, ConfirmationOrder, ErrorCode, Message, VoteSignature,
};
use indicatif::ProgressBar;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

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

impl RunConfig {
    /// Replies (votes, then acknowledgements) that complete a step of a request: for
    /// payments, the quorum of the whole committee.
    fn replies_needed(&self) -> usize {
        if self.phase == Phase::Payments {
            self.quorum
        } else {
            self.needed
        }
    }
}

/// How long the progress line goes between updates.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How much later than its schedule a request may start before it counts as late: the
/// pacing tick is at most a millisecond (`--tick-us`), so a later start means the sender
/// could not keep up or the in-flight cap held the request back.
const LATE_AFTER: Duration = Duration::from_millis(1);

/// How long past the timeout the last request sent may stay unanswered before the run gives
/// up on the rest (they have all timed out by then).
const DRAIN_GRACE: Duration = Duration::from_millis(100);

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
    /// When loadgen sent it (at or after `scheduled`).
    started: Instant,
    stage: Stage,
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
    let mut run = Run::new(config, endpoints, jobs, &[], true)?;
    run.drive(endpoints, live);
    let (_, collected) = run.finish();
    Ok(collected.unwrap_or_default())
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
    let mut run = Run::new(config, endpoints, jobs, certificates, false)?;
    run.drive(endpoints, live);
    Ok(run.finish().0)
}

/// One run in progress: the schedule, the requests outstanding and what has been measured.
struct Run<'a> {
    config: &'a RunConfig,
    jobs: &'a [Prepared],
    certificates: &'a [CertifiedTransferOrder],
    /// Requests the run starts (jobs, or certificates for confirmations, within the window).
    total: usize,
    report: Report,
    /// Per job, the certificate its votes make, when the run collects them.
    collected: Option<Vec<Option<CertifiedTransferOrder>>>,
    outstanding: FxHashMap<usize, Request>,
    /// Jobs started and not yet expired, oldest first.
    by_start: VecDeque<usize>,
    /// Replies name their account. The jobs started within the timeout are found by the
    /// account's first eight bytes (keys are uniformly random) and then checked in full: a
    /// table of the recent jobs only stays in cache, where one of every job would miss it
    /// (and the TLB) on every reply. Replies to older jobs count as stray.
    recent: FxHashMap<u64, u32>,
    authorities: usize,
    /// Per job and authority, a fingerprint of the first vote seen (0: none yet), keyed with
    /// this run's random SipHash key so an authority cannot aim for a collision.
    votes_seen: Vec<u64>,
    fingerprint: RandomState,
    start: Instant,
    /// Time between two scheduled starts.
    interval: Duration,
    /// The next job to start.
    next: usize,
    last_ok: Instant,
    last_send: Instant,
    last_progress: Instant,
    /// Hostile datagrams owed to the flood's share (fractional).
    flood_debt: f64,
    flood_sent: usize,
}

impl<'a> Run<'a> {
    fn new(
        config: &'a RunConfig,
        endpoints: &Endpoints,
        jobs: &'a [Prepared],
        certificates: &'a [CertifiedTransferOrder],
        collect: bool,
    ) -> Result<Self> {
        let mut total = ((config.rate * config.duration.as_secs_f64()) as usize).min(jobs.len());
        if config.phase == Phase::Confirmations {
            total = total.min(certificates.len());
        }
        let authorities = endpoints.authorities();
        let start = Instant::now();
        Ok(Self {
            config,
            jobs,
            certificates,
            total,
            report: Report::new()?,
            collected: collect.then(|| vec![None; total]),
            outstanding: FxHashMap::default(),
            by_start: VecDeque::new(),
            recent: FxHashMap::default(),
            authorities,
            votes_seen: vec![0; total * authorities],
            fingerprint: RandomState::new(),
            start,
            interval: Duration::from_secs_f64(1.0 / config.rate.max(1e-9)),
            next: 0,
            last_ok: start,
            last_send: start,
            last_progress: start,
            flood_debt: 0.0,
            flood_sent: 0,
        })
    }

    /// Wakes up every tick until every request is answered or has timed out.
    fn drive(&mut self, endpoints: &mut Endpoints, live: &ProgressBar) {
        loop {
            let now = Instant::now();
            self.start_due(endpoints, now);
            endpoints.flush();
            while let Some((authority, message)) = endpoints.receive() {
                self.reply(endpoints, authority, message);
            }
            // Confirmations started by the replies above (payments).
            endpoints.flush();
            self.expire();
            self.show_progress(live, now);
            if self.over() {
                break;
            }
            std::thread::sleep(self.config.tick);
        }
    }

    /// Starts everything the schedule says is due by `now`, as far as the in-flight cap
    /// allows.
    fn start_due(&mut self, endpoints: &mut Endpoints, now: Instant) {
        let due = ((now - self.start).as_secs_f64() * self.config.rate) as usize;
        while self.next < self.total.min(due + 1) {
            if self.outstanding.len() >= self.config.in_flight {
                break;
            }
            let job = self.next;
            self.next += 1;
            self.start_job(endpoints, job, now);
        }
    }

    fn scheduled(&self, job: usize) -> Instant {
        self.start + self.interval.mul_f64(job as f64)
    }

    fn start_job(&mut self, endpoints: &mut Endpoints, job: usize, now: Instant) {
        let config = self.config;
        let scheduled = self.scheduled(job);
        if now > scheduled + LATE_AFTER {
            self.report.late += 1;
        }
        let start_delay = now.saturating_duration_since(scheduled).as_micros() as u64;
        self.report
            .start_delay
            .saturating_record(start_delay.max(1));
        let (stage, message) = match config.phase {
            Phase::Confirmations => (
                Stage::Confirming {
                    acks: Vec::new(),
                    refusals: 0,
                },
                Message::ConfirmationOrder(ConfirmationOrder {
                    certificate: self.certificates[job].clone(),
                }),
            ),
            _ => (
                Stage::Voting {
                    votes: Vec::new(),
                    refusals: 0,
                },
                Message::TransferOrder(self.jobs[job].order),
            ),
        };
        for &authority in &config.targets {
            endpoints.send(authority, &self.jobs[job].account, &message);
        }
        if let Some(flood) = &config.flood {
            // Keep the hostile share of the datagrams at `share` on average.
            self.flood_debt += flood.share / (1.0 - flood.share).max(1e-9);
            while self.flood_debt >= 1.0 {
                self.flood_debt -= 1.0;
                self.flood_sent += 1;
                endpoints.send_flood(flood, self.flood_sent, &config.targets);
            }
        }
        self.outstanding.insert(
            job,
            Request {
                job,
                scheduled,
                started: now,
                stage,
            },
        );
        self.by_start.push_back(job);
        self.recent
            .insert(account_prefix(&self.jobs[job].account), job as u32);
        self.report.sent += 1;
        self.last_send = Instant::now();
    }

    /// Takes one reply from `authority`.
    fn reply(&mut self, endpoints: &mut Endpoints, authority: usize, message: Message) {
        let account = match &message {
            Message::Vote(v) => v.sender,
            Message::AccountInfoResponse(info) => info.account,
            Message::Error(e) => e.account,
            _ => return,
        };
        let job = match self.recent.get(&account_prefix(&account)) {
            Some(&job) if self.jobs[job as usize].account == account => job as usize,
            _ => {
                self.report.stray_replies += 1;
                return;
            }
        };
        if let Message::Vote(vote) = &message {
            self.check_equivocation(job, authority, &vote.signature);
        }
        let Some(request) = self.outstanding.get_mut(&job) else {
            self.report.stray_replies += 1;
            return;
        };
        match step(
            self.config,
            endpoints,
            self.jobs,
            request,
            authority,
            message,
        ) {
            Step::Pending => {}
            Step::Certified => {
                let elapsed = request.scheduled.elapsed().as_micros() as u64;
                self.report
                    .certify_latency
                    .saturating_record(elapsed.max(1));
            }
            Step::Done => {
                if let (Some(collected), Stage::Voting { votes, .. }) =
                    (self.collected.as_mut(), &request.stage)
                {
                    collected[job] = Some(certificate(endpoints, &self.jobs[job], votes));
                }
                let elapsed = request.scheduled.elapsed().as_micros() as u64;
                self.report.latency.saturating_record(elapsed.max(1));
                // Less loadgen's own delays (sending after the schedule, reading the reply
                // after it arrived): from the request leaving to the reply arriving.
                let waited = endpoints.last_waited();
                self.report
                    .reply_waited
                    .saturating_record((waited.as_micros() as u64).max(1));
                let on_the_wire =
                    request.started.elapsed().saturating_sub(waited).as_micros() as u64;
                self.report
                    .wire_latency
                    .saturating_record(on_the_wire.max(1));
                self.report.ok += 1;
                self.last_ok = Instant::now();
                self.outstanding.remove(&job);
            }
            Step::Refused(ErrorCode::Overloaded) => {
                self.report.shed += 1;
                self.outstanding.remove(&job);
            }
            Step::Refused(code) => {
                *self.report.rejected.entry(format!("{code:?}")).or_default() += 1;
                self.outstanding.remove(&job);
            }
        }
    }

    /// Counts an equivocation if `authority` voted differently before for `job`: two
    /// different votes from one authority for one account and sequence number would be a
    /// broken safety promise.
    fn check_equivocation(&mut self, job: usize, authority: usize, signature: &VoteSignature) {
        let seen = &mut self.votes_seen[job * self.authorities + authority];
        let print = self.fingerprint.hash_one(signature) | 1;
        if *seen == 0 {
            *seen = print;
        } else if *seen != print {
            self.report.equivocations += 1;
        }
    }

    /// Expires the jobs started more than the timeout ago, oldest first: unanswered ones
    /// time out; late replies to any of them will count as stray.
    fn expire(&mut self) {
        while let Some(&job) = self.by_start.front() {
            if self.scheduled(job).elapsed() <= self.config.timeout {
                break;
            }
            self.by_start.pop_front();
            self.recent.remove(&account_prefix(&self.jobs[job].account));
            if self.outstanding.remove(&job).is_some() {
                self.report.timeouts += 1;
            }
        }
    }

    fn show_progress(&mut self, live: &ProgressBar, now: Instant) {
        if now.duration_since(self.last_progress) < PROGRESS_EVERY {
            return;
        }
        self.last_progress = now;
        let elapsed = (now - self.start).as_secs_f64();
        let report = &self.report;
        live.set_message(format!(
            "t={elapsed:5.1}s sent={} ok={} rejected={} shed={} timeouts={} in-flight={} rate={:.0}/s p99={}us",
            report.sent,
            report.ok,
            report.rejected_total(),
            report.shed,
            report.timeouts,
            self.outstanding.len(),
            report.ok as f64 / elapsed.max(1e-9),
            report.latency.value_at_quantile(0.99),
        ));
    }

    /// Whether the run is over: everything started and answered, or the last request sent
    /// long enough ago that whatever is left has timed out (then counted so).
    fn over(&mut self) -> bool {
        if self.next < self.total {
            return false;
        }
        if self.outstanding.is_empty() {
            return true;
        }
        if self.last_send.elapsed() > self.config.timeout + DRAIN_GRACE {
            self.report.timeouts += self.outstanding.len() as u64;
            return true;
        }
        false
    }

    /// The report, with its windows, and the certificates collected (if asked for).
    fn finish(self) -> (Report, Option<Vec<Option<CertifiedTransferOrder>>>) {
        let mut report = self.report;
        report.window_s = (self.last_send - self.start)
            .as_secs_f64()
            .max(self.interval.as_secs_f64());
        report.active_s = (self.last_ok - self.start)
            .as_secs_f64()
            .max(report.window_s);
        (report, self.collected)
    }
}

/// The certificate `votes` make for `job`'s order.
fn certificate(
    endpoints: &Endpoints,
    job: &Prepared,
    votes: &[(usize, VoteSignature)],
) -> CertifiedTransferOrder {
    CertifiedTransferOrder {
        value: job.order,
        signatures: votes
            .iter()
            .map(|(a, s)| (endpoints.name(*a), *s))
            .collect(),
    }
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
    let needed = config.replies_needed();
    match (&mut request.stage, message) {
        (Stage::Voting { votes, .. }, Message::Vote(vote)) => {
            let job = &jobs[request.job];
            if vote.sequence_number != job.order.transfer.sequence_number
                || votes.iter().any(|(a, _)| *a == authority)
            {
                return Step::Pending;
            }
            votes.push((authority, vote.signature));
            if votes.len() < needed {
                return Step::Pending;
            }
            if config.phase != Phase::Payments {
                return Step::Done;
            }
            // Quorum: certify and confirm with every target.
            let certificate = certificate(endpoints, job, votes);
            let message = Message::ConfirmationOrder(ConfirmationOrder { certificate });
            for &target in &config.targets {
                endpoints.send(target, &job.account, &message);
            }
            request.stage = Stage::Confirming {
                acks: Vec::new(),
                refusals: 0,
            };
            Step::Certified
        }
        (Stage::Confirming { acks, .. }, Message::AccountInfoResponse(info)) => {
            if info.next_sequence_number <= jobs[request.job].order.transfer.sequence_number
                || acks.contains(&authority)
            {
                return Step::Pending;
            }
            acks.push(authority);
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
            // Refused once enough targets said no that the rest cannot make up the need.
            if config.targets.len().saturating_sub(*refusals) < needed {
                Step::Refused(error.code)
            } else {
                Step::Pending
            }
        }
        _ => Step::Pending,
    }
}
