//! `bench`: the reference's "additional local benchmark". One authority, all its shards in this
//! process, fed pre-signed transfer orders and then confirmation orders over UDP on 127.0.0.1;
//! prints how many of each it handled per second.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use fastpay_authority::Genesis;
use fastpay_engine::runtime::{Engine, EngineConfig, QUEUE_CAPACITY};
use fastpay_engine::store::SNAPSHOT_AFTER_BYTES;
use fastpay_wire::{
    AccountId, Amount, CertifiedTransferOrder, Committee, ConfirmationOrder, KeyPair, Message,
    SequenceNumber, SignedTransferOrder, Transfer, TransferOrder, VoteScheme, decode,
    encode_request, shard_of, sign_votes,
};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Benchmark one authority (all its shards in this process, state in memory) with pre-signed
/// transfer orders, then with the confirmation orders of their certificates, over UDP on
/// 127.0.0.1. Every account pays one unit to the next. Prints orders and confirmations handled
/// per second (a table on stderr, JSON on stdout).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Authorities in the committee (the benchmarked one verifies a quorum of their votes in
    /// every certificate; the others' votes are signed beforehand).
    #[arg(long, default_value_t = 4)]
    committee_size: usize,
    /// Shards of the benchmarked authority (one thread each).
    #[arg(long, default_value_t = 2)]
    num_shards: u32,
    /// Accounts, each making one transfer.
    #[arg(long, default_value_t = 20_000)]
    num_accounts: usize,
    /// Requests outstanding at once.
    #[arg(long, default_value_t = 1_000)]
    max_in_flight: usize,
    /// Transport (the reference also had TCP; fastpay speaks UDP).
    #[arg(long, value_enum, default_value_t = Protocol::Udp)]
    protocol: Protocol,
    /// Milliseconds before an unanswered request is sent again (then given up after 5 tries).
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// How the authorities sign votes: `merkle` (one signature per batch, the default of
    /// `server generate`; pre-signed certificates carry roots of 64 consecutive orders of one
    /// shard, as a shard under load signs them) or
    /// `single` (one signature per vote).
    #[arg(long, default_value = "merkle")]
    vote_scheme: VoteScheme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Udp,
    Tcp,
}

/// How many times a request is sent before it counts as lost.
const TRIES: u32 = 5;

fn main() -> std::process::ExitCode {
    // The in-process authority's warnings and errors (a shard that stops, say) on stderr.
    fastpay_engine::logging::init(false, "warn");
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if args.protocol == Protocol::Tcp {
        bail!("--protocol tcp is not supported: fastpay authorities speak UDP only");
    }
    if args.committee_size == 0 || args.num_shards == 0 || args.num_accounts == 0 {
        bail!("--committee-size, --num-shards and --num-accounts must be at least 1");
    }
    if args.max_in_flight == 0 {
        bail!("--max-in-flight must be at least 1");
    }
    let Workload {
        key_seed,
        committee,
        genesis,
        orders,
        certificates,
    } = Workload::sign(&args)?;
    let engine = Engine::start(EngineConfig {
        key_seed,
        committee: committee.clone(),
        listen: "127.0.0.1:0".parse()?,
        genesis,
        cores: None,
        steering: true,
        only_shard: None,
        link_addresses: Vec::new(),
        queue_capacity: QUEUE_CAPACITY,
        data_dir: None,
        voting_record: None,
        snapshot_after_bytes: SNAPSHOT_AFTER_BYTES,
        shed_after: Some(fastpay_node::DEFAULT_SHED_AFTER),
        redeem_approver: None,
    })
    .context("start the authority")?;
    let target = engine.local_addr();
    let (order_datagrams, confirmation_datagrams) =
        datagrams(&orders, certificates, &committee, args.num_shards)?;

    let timeout = Duration::from_millis(args.timeout_ms);
    let before = CpuSeconds::now()?;
    let mut orders = drive(
        target,
        &order_datagrams,
        args.max_in_flight,
        timeout,
        |m| match m {
            Message::Vote(vote) if vote.sequence_number == SequenceNumber::ZERO => {
                Some(vote.sender)
            }
            _ => None,
        },
    )?;
    let between = CpuSeconds::now()?;
    orders.cpu = between.since(&before);
    let mut confirmations = drive(
        target,
        &confirmation_datagrams,
        args.max_in_flight,
        timeout,
        |m| match m {
            Message::AccountInfoResponse(info)
                if info.next_sequence_number == SequenceNumber::new(1) =>
            {
                Some(info.account)
            }
            _ => None,
        },
    )?;
    confirmations.cpu = CpuSeconds::now()?.since(&between);
    engine.shutdown();
    // After the phases, so that it takes no core from them.
    eprintln!("bench: measuring the crypto ceiling of one core");
    let quorum = usize::try_from(committee.quorum_threshold()).unwrap_or(usize::MAX);
    let ceiling = fastpay_ceiling::measure(CEILING_BUDGET, quorum);
    report(&args, &orders, &confirmations, &ceiling)
}

/// Time spent measuring each of the ceiling's two costs.
const CEILING_BUDGET: Duration = Duration::from_millis(1_000);

/// CPU time so far of the benchmarked authority (its shard threads) and of the client (the
/// thread that drives the requests and reads the replies), in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSeconds {
    authority: f64,
    client: f64,
}

impl CpuSeconds {
    /// Now, read from the calling (client) thread.
    fn now() -> Result<Self> {
        Ok(Self {
            authority: fastpay_udp::named_threads_cpu_time("shard-")
                .context("read the shard threads' CPU time")?
                .as_secs_f64(),
            client: fastpay_udp::thread_cpu_time()
                .context("read the client thread's CPU time")?
                .as_secs_f64(),
        })
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            authority: (self.authority - earlier.authority).max(0.0),
            client: (self.client - earlier.client).max(0.0),
        }
    }
}

/// Everything signed before the clock starts.
struct Workload {
    /// The benchmarked authority's key seed.
    key_seed: [u8; 32],
    committee: Arc<Committee>,
    genesis: Genesis,
    /// Each account's order (every account pays one unit to the next).
    orders: Vec<TransferOrder>,
    /// Each order's certificate.
    certificates: Vec<CertifiedTransferOrder>,
}

/// Datagrams to send, each keyed by the account whose request it is.
type Requests = Vec<(AccountId, Vec<u8>)>;

impl Workload {
    /// Signs each account's order, and a certificate of the other authorities' votes (a
    /// quorum without the benchmarked one where possible, so that it verifies every vote).
    fn sign(args: &Args) -> Result<Self> {
        let authorities: Vec<KeyPair> = (0..args.committee_size)
            .map(|i| KeyPair::from_seed(seed(0xa0, i)))
            .collect();
        let committee = Arc::new(
            Committee::equal_weights(authorities.iter().map(KeyPair::authority), args.num_shards)
                .context("build the committee")?
                .with_vote_scheme(args.vote_scheme),
        );
        let id = committee.id();
        let accounts: Vec<KeyPair> = (0..args.num_accounts)
            .map(|i| KeyPair::from_seed(seed(0xb0, i)))
            .collect();
        let genesis =
            Genesis::from_accounts(accounts.iter().map(|k| (k.account(), Amount::new(100))))
                .context("build the genesis")?;
        let started = Instant::now();
        let orders: Vec<TransferOrder> = parallel(&accounts, |i, key| {
            let next = &accounts[(i + 1) % accounts.len()];
            TransferOrder::new(
                Transfer {
                    sender: key.account(),
                    recipient: next.account(),
                    amount: Amount::new(1),
                    sequence_number: SequenceNumber::ZERO,
                    user_data: None,
                },
                &id,
                key,
            )
        });
        let quorum = committee.quorum_threshold() as usize;
        let voters: Vec<&KeyPair> = authorities
            .iter()
            .skip(usize::from(args.committee_size > quorum))
            .take(quorum)
            .collect();
        let certificates = certify(&orders, &voters, &committee, args.num_shards);
        eprintln!(
            "signed {} orders and their certificates ({} votes each) in {:.1} s",
            orders.len(),
            quorum,
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            key_seed: authorities[0].seed(),
            committee,
            genesis,
            orders,
            certificates,
        })
    }
}

/// The datagrams of `orders` and of their `certificates`' confirmations, to an authority of
/// `shards` shards, each padded so that batched votes fit within it.
fn datagrams(
    orders: &[TransferOrder],
    certificates: Vec<CertifiedTransferOrder>,
    committee: &Committee,
    shards: u32,
) -> Result<(Requests, Requests)> {
    let padding = committee.request_padding();
    let orders = orders
        .iter()
        .map(|o| {
            let shard = shard_of(&o.transfer.sender, shards);
            Ok((
                o.transfer.sender,
                encode_request(&Message::TransferOrder(*o), shard, padding)?,
            ))
        })
        .collect::<Result<_>>()?;
    let confirmations = certificates
        .into_iter()
        .map(|certificate| {
            let sender = certificate.value.transfer.sender;
            let message = Message::ConfirmationOrder(ConfirmationOrder { certificate });
            Ok((
                sender,
                encode_request(&message, shard_of(&sender, shards), padding)?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok((orders, confirmations))
}

/// Certificates of `orders` by `voters`, each of whom signs as its authority's shards would
/// under load: shard by shard (of `shards`, the committee's count), runs of consecutive orders
/// of that shard's accounts as one receive batch, so a root covers orders that one shard of
/// the benchmarked authority confirms.
fn certify(
    orders: &[TransferOrder],
    voters: &[&KeyPair],
    committee: &Committee,
    shards: u32,
) -> Vec<CertifiedTransferOrder> {
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards as usize];
    for (i, order) in orders.iter().enumerate() {
        let shard = shard_of(&order.transfer.sender, shards).0 as usize;
        by_shard[shard].push(i);
    }
    let runs: Vec<&[usize]> = by_shard
        .iter()
        .flat_map(|indices| indices.chunks(fastpay_wire::merkle::MAX_LEAVES))
        .collect();
    let signed = parallel(&runs, |_, run| {
        let run_orders: Vec<TransferOrder> = run.iter().map(|&i| orders[i]).collect();
        let votes: Vec<Vec<SignedTransferOrder>> = voters
            .iter()
            .map(|key| sign_votes(&run_orders, committee, key))
            .collect();
        run.iter()
            .enumerate()
            .map(|(j, &i)| {
                let certificate = CertifiedTransferOrder {
                    value: orders[i],
                    signatures: votes
                        .iter()
                        .map(|by| (by[j].authority, by[j].signature))
                        .collect(),
                };
                (i, certificate)
            })
            .collect::<Vec<_>>()
    });
    // Back in the orders' order.
    let mut certificates: Vec<Option<CertifiedTransferOrder>> = vec![None; orders.len()];
    for (i, certificate) in signed.into_iter().flatten() {
        certificates[i] = Some(certificate);
    }
    certificates.into_iter().flatten().collect()
}

/// Prints the phases (a table on stderr, JSON on stdout); fails if requests were lost.
fn report(
    args: &Args,
    orders: &Phase,
    confirmations: &Phase,
    ceiling: &fastpay_ceiling::Ceiling,
) -> Result<()> {
    let of_ceiling = [
        orders.per_authority_cpu_second() / ceiling.orders_per_cpu_s(),
        confirmations.per_authority_cpu_second() / ceiling.confirmations_per_cpu_s(),
    ];
    eprintln!(
        "phase          done    lost    seconds   per second   authority CPU-s   client CPU-s   \
         per authority CPU-s   of ceiling"
    );
    for ((name, r), share) in [("orders", orders), ("confirmations", confirmations)]
        .into_iter()
        .zip(of_ceiling)
    {
        eprintln!(
            "{name:13} {:6} {:7} {:10.3} {:12.0} {:17.2} {:14.2} {:21.0} {:11.2}",
            r.done,
            r.lost,
            r.seconds,
            r.per_second(),
            r.cpu.authority,
            r.cpu.client,
            r.per_authority_cpu_second(),
            share
        );
    }
    eprintln!(
        "ceiling of one core: {:.0} orders and {:.0} confirmations (a quorum of {} per-vote \
         signatures) per CPU-second",
        ceiling.orders_per_cpu_s(),
        ceiling.confirmations_per_cpu_s(),
        ceiling.confirmation_signatures - 1
    );
    println!(
        "{}",
        serde_json::json!({
            "committee_size": args.committee_size,
            "vote_scheme": args.vote_scheme.to_string(),
            "num_shards": args.num_shards,
            "num_accounts": args.num_accounts,
            "max_in_flight": args.max_in_flight,
            "orders": orders.done,
            "orders_lost": orders.lost,
            "orders_per_s": orders.per_second().round(),
            "orders_authority_cpu_s": orders.cpu.authority,
            "orders_client_cpu_s": orders.cpu.client,
            "orders_per_authority_cpu_s": orders.per_authority_cpu_second().round(),
            "orders_of_ceiling": of_ceiling[0],
            "confirmations": confirmations.done,
            "confirmations_lost": confirmations.lost,
            "confirmations_per_s": confirmations.per_second().round(),
            "confirmations_authority_cpu_s": confirmations.cpu.authority,
            "confirmations_client_cpu_s": confirmations.cpu.client,
            "confirmations_per_authority_cpu_s":
                confirmations.per_authority_cpu_second().round(),
            "confirmations_of_ceiling": of_ceiling[1],
            "ceiling": ceiling.to_json(),
        })
    );
    if orders.lost + confirmations.lost > 0 {
        bail!(
            "{} orders and {} confirmations got no answer after {TRIES} tries",
            orders.lost,
            confirmations.lost
        );
    }
    Ok(())
}

/// What one phase did.
struct Phase {
    done: usize,
    lost: usize,
    seconds: f64,
    /// The CPU it took (filled in once it ended).
    cpu: CpuSeconds,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.seconds.max(1e-9)
    }

    /// Requests handled per CPU-second of the authority's shard threads (0 when they used
    /// less than the clock can tell).
    fn per_authority_cpu_second(&self) -> f64 {
        match self.cpu.authority > 0.0 {
            true => self.done as f64 / self.cpu.authority,
            false => 0.0,
        }
    }
}

/// Sends every datagram (keyed by its account) with at most `window` outstanding, resending
/// each unanswered one after `timeout` up to [`TRIES`] times; `answers` maps a reply to the
/// account it completes. Ends when every request is answered or given up: never waits on a
/// lost datagram.
fn drive(
    target: SocketAddr,
    datagrams: &[(AccountId, Vec<u8>)],
    window: usize,
    timeout: Duration,
    answers: impl Fn(&Message) -> Option<AccountId>,
) -> Result<Phase> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("bind the benchmark socket")?;
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    let index: HashMap<AccountId, usize> = datagrams
        .iter()
        .enumerate()
        .map(|(i, (account, _))| (*account, i))
        .collect();
    // Per request: when it was last sent and how often.
    let mut outstanding: HashMap<usize, (Instant, u32)> = HashMap::new();
    let mut next = 0;
    let (mut done, mut lost) = (0, 0);
    let mut buffer = vec![0u8; 65_536];
    let started = Instant::now();
    while done + lost < datagrams.len() {
        while outstanding.len() < window && next < datagrams.len() {
            socket.send_to(&datagrams[next].1, target)?;
            outstanding.insert(next, (Instant::now(), 1));
            next += 1;
        }
        match socket.recv_from(&mut buffer) {
            Ok((len, from)) if from == target => {
                if let Some(i) = decode(&buffer[..len])
                    .ok()
                    .and_then(|(_, m)| answers(&m))
                    .and_then(|account| index.get(&account).copied())
                    && outstanding.remove(&i).is_some()
                {
                    done += 1;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        // Resend what timed out; give up on what timed out too often.
        let now = Instant::now();
        let due: Vec<usize> = outstanding
            .iter()
            .filter(|(_, (sent, _))| now.duration_since(*sent) >= timeout)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            let Some((sent, tries)) = outstanding.get_mut(&i) else {
                continue;
            };
            if *tries >= TRIES {
                outstanding.remove(&i);
                lost += 1;
            } else {
                socket.send_to(&datagrams[i].1, target)?;
                *sent = now;
                *tries += 1;
            }
        }
    }
    Ok(Phase {
        done,
        lost,
        seconds: started.elapsed().as_secs_f64(),
        cpu: CpuSeconds::default(),
    })
}

/// A distinct 32-byte seed for item `i` of family `tag`.
fn seed(tag: u8, i: usize) -> [u8; 32] {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed
}

/// `f` over `items` on every core, results in order.
fn parallel<T: Sync, U: Send>(items: &[T], f: impl Fn(usize, &T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let f = &f;
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, item)| f(c * chunk + j, item))
                        .collect::<Vec<U>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
