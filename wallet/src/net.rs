//! The client's socket driver: one UDP socket, the committee's addresses, and the loop that
//! runs any [`Exchange`] of `fastpay_client` over them. It decides nothing: each machine says
//! what to send, when to save the wallet and until when to wait; the driver sends each
//! message to the shard that owns its account, hands every decodable reply from a committee
//! address to the machine, and keeps the clock.

use fastpay_client::{
    Action, ApprovalAnswer, ClientState, CollectApprovals, CountSupply, DriveError, DriveStats,
    Exchange, FetchCertificate, FetchReceived, Goal, Push, Query, QueryAnswer, ReceivedList, Route,
    SupplyReports, SyncAccount, SyncError, SyncReport, Transfers, Transmit,
};
use fastpay_wire::{
    AccountId, AuthorityName, CertifiedTransferOrder, Committee, CommitteeFile, CommitteeFileError,
    Message, SequenceNumber, decode, encode_request_into, shard_of,
};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why talking to the committee failed.
#[derive(Debug, Error)]
pub enum NetError {
    /// A socket operation failed.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The committee file's addresses do not resolve.
    #[error(transparent)]
    Committee(#[from] CommitteeFileError),
    /// The wallet could not be saved.
    #[error("saving the wallet: {0}")]
    Save(SaveError),
    /// Some transfers did not finish in time.
    #[error(
        "{unfinished} transfer(s) did not finish within {seconds} s: too many authorities are down or refusing"
    )]
    Timeout {
        /// How many.
        unfinished: usize,
        /// The deadline.
        seconds: u64,
    },
    /// A sync could not adopt what the committee gave.
    #[error("{0}")]
    Sync(SyncError),
}

/// Why saving the clients' states failed.
pub type SaveError = Box<dyn std::error::Error + Send + Sync>;

/// The longest one wait on the socket lasts, so that a machine's wake-up is never missed by
/// more than this even if the OS rounds a timeout up.
const MAX_WAIT: Duration = Duration::from_millis(20);

struct Authority {
    /// Where each shard listens (all the same unless the authority places its shards).
    addresses: Vec<SocketAddr>,
    shards: u32,
    /// Padding of requests to it, so that its votes fit within them.
    padding: u16,
}

/// A client endpoint: one UDP socket and the committee's addresses.
pub struct Network {
    socket: UdpSocket,
    committee: Arc<Committee>,
    authorities: HashMap<AuthorityName, Authority>,
    by_address: HashMap<SocketAddr, AuthorityName>,
    buffer: Vec<u8>,
}

impl Network {
    /// Opens a socket on an ephemeral port and resolves every authority's address.
    pub fn new(committee: &CommitteeFile) -> Result<Self, NetError> {
        let mut authorities = HashMap::new();
        let mut by_address = HashMap::new();
        let mut first = None;
        for entry in &committee.authorities {
            let addresses = entry.shard_addresses()?;
            first = first.or(addresses.first().copied());
            // Replies come from the shard's address: each one names its authority.
            for address in &addresses {
                by_address.insert(*address, entry.name);
            }
            authorities.insert(
                entry.name,
                Authority {
                    addresses,
                    shards: entry.shards,
                    padding: entry.votes.request_padding(),
                },
            );
        }
        let any: SocketAddr = match first {
            Some(SocketAddr::V6(_)) => "[::]:0".parse().map_err(io::Error::other)?,
            _ => "0.0.0.0:0".parse().map_err(io::Error::other)?,
        };
        let socket = Socket::new(Domain::for_address(any), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        socket.bind(&any.into())?;
        Ok(Self {
            socket: socket.into(),
            committee: Arc::new(committee.committee.clone()),
            authorities,
            by_address,
            buffer: vec![0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE],
        })
    }

    /// The committee.
    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    /// Sends `transmit` to the shard of its authority that owns the account it is about, or
    /// that it names ([`fastpay_client::route`]: a confirmation goes to its certificate's
    /// sender's shard).
    fn send(&mut self, transmit: &Transmit) -> io::Result<()> {
        let Some(route) = fastpay_client::route(&transmit.message) else {
            return Ok(());
        };
        let Some(target) = self.authorities.get(&transmit.to) else {
            return Ok(());
        };
        let shard = match route {
            Route::Account(account) => shard_of(&account, target.shards),
            Route::Shard(shard) => shard,
        };
        let len = encode_request_into(&transmit.message, shard, target.padding, &mut self.buffer)
            .map_err(io::Error::other)?;
        let Some(&address) = target.addresses.get(shard.0 as usize) else {
            return Ok(());
        };
        match self.socket.send_to(&self.buffer[..len], address) {
            // A full buffer or an unreachable authority is a lost datagram: retries cover it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Waits until `deadline` for one decodable message from a committee address. The
    /// deadline is absolute: datagrams from strangers or that do not decode are skipped
    /// without extending it, so nobody can hold the client by sending it garbage.
    fn receive(&mut self, deadline: Instant) -> io::Result<Option<(AuthorityName, Message)>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let wait = left.clamp(Duration::from_micros(100), MAX_WAIT);
            self.socket.set_read_timeout(Some(wait))?;
            match self.socket.recv_from(&mut self.buffer) {
                Ok((len, from)) => {
                    let Some(&authority) = self.by_address.get(&from) else {
                        continue;
                    };
                    if let Ok((_, message)) = decode(&self.buffer[..len]) {
                        return Ok(Some((authority, message)));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `machine` over the accounts `clients` to its end: sends what it asks, saves with
    /// `save` when it asks (nothing else leaves before), hands it every reply, and calls
    /// `watch` after each reply (for progress reports).
    pub fn run<E: Exchange>(
        &mut self,
        machine: &mut E,
        clients: &mut [ClientState],
        mut save: impl FnMut(&[ClientState]) -> Result<(), SaveError>,
        mut watch: impl FnMut(&E),
    ) -> Result<E::Output, NetError> {
        loop {
            match machine.poll(clients, Instant::now()) {
                Action::Send(transmit) => self.send(&transmit)?,
                Action::Save => {
                    save(clients).map_err(NetError::Save)?;
                    machine.saved();
                }
                Action::Wait(until) => {
                    if let Some((from, message)) = self.receive(until)? {
                        machine.handle(clients, Instant::now(), from, message);
                        watch(machine);
                    }
                }
                Action::Done(output) => return Ok(output),
            }
        }
    }

    /// [`Network::run`] for a machine that needs no wallet.
    fn ask<E: Exchange>(&mut self, mut machine: E) -> Result<E::Output, NetError> {
        self.run(&mut machine, &mut [], |_| Ok(()), |_| {})
    }

    /// Asks every authority to approve the redeem of `certificate`'s transfer on the primary
    /// chain; returns one answer per authority that answered (see [`CollectApprovals`]).
    pub fn collect_approvals(
        &mut self,
        certificate: CertifiedTransferOrder,
        timeout: Duration,
    ) -> Result<Vec<ApprovalAnswer>, NetError> {
        let machine = CollectApprovals::new(&self.committee, certificate, Instant::now() + timeout);
        self.ask(machine)
    }

    /// Asks every shard of every authority for its supply figures; returns them per
    /// authority once all answered, or at `timeout` with what came (see [`CountSupply`]).
    pub fn count_supply(&mut self, timeout: Duration) -> Result<Vec<SupplyReports>, NetError> {
        let machine = CountSupply::new(&self.committee, Instant::now() + timeout);
        self.ask(machine)
    }

    /// Asks every authority about `account`; returns the answers (a state or a refusal code)
    /// once a quorum answered, or at `timeout`, retrying the silent ones.
    pub fn query(
        &mut self,
        account: &AccountId,
        timeout: Duration,
    ) -> Result<Vec<QueryAnswer>, NetError> {
        let query = Query::new(&self.committee, *account, Instant::now() + timeout);
        self.ask(query)
    }

    /// Asks the committee for the certificate of `account`'s transfer `sequence`; returns the
    /// first valid one, or `None` (see [`FetchCertificate`]).
    pub fn fetch_certificate(
        &mut self,
        account: &AccountId,
        sequence: SequenceNumber,
        timeout: Duration,
    ) -> Result<Option<CertifiedTransferOrder>, NetError> {
        let deadline = Instant::now() + timeout;
        let fetch = FetchCertificate::new(self.committee.clone(), *account, sequence, deadline);
        self.ask(fetch)
    }

    /// Reads every authority's list of payments received by `account`, each from `from(name)`
    /// (see [`FetchReceived`]).
    pub fn fetch_received(
        &mut self,
        account: &AccountId,
        from: impl Fn(&AuthorityName) -> u64,
        timeout: Duration,
    ) -> Result<Vec<ReceivedList>, NetError> {
        let deadline = Instant::now() + timeout;
        let fetch = FetchReceived::new(&self.committee, *account, from, deadline);
        self.ask(fetch)
    }

    /// Pushes each certificate's confirmation to the authority named with it (see [`Push`]);
    /// returns how many were acknowledged.
    pub fn push_confirmations(
        &mut self,
        targets: Vec<(AuthorityName, CertifiedTransferOrder)>,
        timeout: Duration,
    ) -> Result<usize, NetError> {
        let push = Push::new(self.committee.clone(), targets, Instant::now() + timeout);
        self.ask(push)
    }

    /// Drives the transfers in progress of `clients` to `goal` (see [`Transfers`]), saving
    /// with `save` before any confirmation of a certificate formed here leaves; `on_progress`
    /// is called with the number of transfers that reached the goal.
    pub fn drive(
        &mut self,
        clients: &mut [ClientState],
        goal: Goal,
        timeout: Duration,
        mut on_progress: impl FnMut(usize),
        save: impl FnMut(&[ClientState]) -> Result<(), SaveError>,
    ) -> Result<DriveStats, NetError> {
        let mut transfers = Transfers::new(&self.committee, goal, Instant::now() + timeout);
        let mut reported = 0;
        let watch = |t: &Transfers| {
            if t.reached() > reported {
                reported = t.reached();
                on_progress(reported);
            }
        };
        self.run(&mut transfers, clients, save, watch)?
            .map_err(|e| drive_error(e, timeout))
    }

    /// Brings the account of `clients[i]` up to date with the committee (see [`SyncAccount`]), each
    /// step giving up after `timeout`.
    pub fn sync(
        &mut self,
        clients: &mut [ClientState],
        i: usize,
        timeout: Duration,
        save: impl FnMut(&[ClientState]) -> Result<(), SaveError>,
    ) -> Result<SyncReport, NetError> {
        let mut sync = SyncAccount::new(i, timeout);
        self.run(&mut sync, clients, save, |_| {})?
            .map_err(|e| match e {
                SyncError::Drive(e) => drive_error(e, timeout),
                other => NetError::Sync(other),
            })
    }
}

fn drive_error(error: DriveError, timeout: Duration) -> NetError {
    match error {
        DriveError::Timeout { unfinished } => NetError::Timeout {
            unfinished,
            seconds: timeout.as_secs(),
        },
    }
}
