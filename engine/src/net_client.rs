//! Talking to the committee over UDP from a client: requests to every authority, replies
//! matched by sender address and content, timeouts and retries. Drives any number of
//! [`ClientState`]s at once over one socket, so one transfer and a benchmark of thousands use
//! the same code.

use fastpay_client::{ClientState, Phase};
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountInfoResponse, AuthorityName, CommitteeFile,
    CommitteeFileError, ErrorCode, Message, decode, encode_into, shard_of,
};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a client waits for an authority before sending its request again. Loopback
/// round trips take well under a millisecond; a loaded authority answers within tens.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Transfers in flight at once: enough to keep every authority's batches full, few enough
/// that the replies fit the client's socket buffer.
pub const WINDOW: usize = 256;

/// Why talking to the committee failed.
#[derive(Debug, Error)]
pub enum NetError {
    /// A socket operation failed.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The committee file's addresses do not resolve.
    #[error(transparent)]
    Committee(#[from] CommitteeFileError),
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
}

/// One authority's answer to an account query: its view, or its refusal.
pub type QueryAnswer = (AuthorityName, Result<AccountInfoResponse, ErrorCode>);

/// How far to drive each transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Until the order is certified (no confirmations sent).
    Certified,
    /// Until a quorum acknowledged the confirmation.
    Finished,
}

/// Counts of what a drive saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriveStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Replies received.
    pub received: u64,
    /// Replies the client state refused (bad votes, votes for other orders).
    pub refused: u64,
    /// Refusals from authorities.
    pub errors: u64,
}

struct Authority {
    name: AuthorityName,
    address: SocketAddr,
    shards: u32,
    weight: u64,
}

/// A client endpoint: one UDP socket and the committee's addresses.
pub struct Network {
    socket: UdpSocket,
    authorities: Vec<Authority>,
    by_address: HashMap<SocketAddr, usize>,
    quorum: u64,
    buffer: Vec<u8>,
}

impl Network {
    /// Opens a socket on an ephemeral port and resolves every authority's address.
    pub fn new(committee: &CommitteeFile) -> Result<Self, NetError> {
        let mut authorities = Vec::new();
        for entry in &committee.authorities {
            authorities.push(Authority {
                name: entry.name,
                address: entry.address()?,
                shards: entry.shards,
                weight: entry.weight,
            });
        }
        let any: SocketAddr = match authorities.first().map(|a| a.address) {
            Some(SocketAddr::V6(_)) => "[::]:0".parse().map_err(io::Error::other)?,
            _ => "0.0.0.0:0".parse().map_err(io::Error::other)?,
        };
        let socket = Socket::new(Domain::for_address(any), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        socket.bind(&any.into())?;
        let socket: UdpSocket = socket.into();
        let by_address = authorities
            .iter()
            .enumerate()
            .map(|(i, a)| (a.address, i))
            .collect();
        Ok(Self {
            socket,
            authorities,
            by_address,
            quorum: committee.committee.quorum_threshold(),
            buffer: vec![0u8; fastpay_wire::codec::MAX_DATAGRAM_SIZE],
        })
    }

    /// Sends a client request to `authority`, addressed to the shard that owns the account
    /// the request is about ([`fastpay_client::route`]).
    fn send_request(&mut self, authority: usize, message: &Message) -> io::Result<()> {
        let Some(account) = fastpay_client::route(message) else {
            return Ok(());
        };
        self.send(authority, &account, message)
    }

    fn send(&mut self, authority: usize, account: &AccountId, message: &Message) -> io::Result<()> {
        let target = &self.authorities[authority];
        let shard = shard_of(account, target.shards);
        let len = encode_into(message, shard, &mut self.buffer).map_err(io::Error::other)?;
        match self.socket.send_to(&self.buffer[..len], target.address) {
            Ok(_) => Ok(()),
            // A full buffer or an unreachable authority is a lost datagram: retries cover it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until `deadline` for one decodable reply from an authority. The deadline is
    /// absolute: datagrams from strangers or that do not decode are skipped without extending
    /// it, so nobody can hold the client by sending it garbage.
    fn receive(&mut self, deadline: Instant) -> io::Result<Option<(usize, Message)>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_micros(100))))?;
            match self.socket.recv_from(&mut self.buffer) {
                Ok((len, from)) => {
                    // Replies from strangers and undecodable bytes are ignored.
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
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks every authority about `account`; returns the answers (a state or a refusal code)
    /// once every authority or a quorum answered, or at `timeout`, retrying the silent ones.
    pub fn query(
        &mut self,
        account: &AccountId,
        timeout: Duration,
    ) -> Result<Vec<QueryAnswer>, NetError> {
        let request = Message::AccountInfoRequest(AccountInfoRequest::new(*account));
        let mut answers: Vec<Option<Result<AccountInfoResponse, ErrorCode>>> =
            (0..self.authorities.len()).map(|_| None).collect();
        let deadline = Instant::now() + timeout;
        let mut next_send = Instant::now();
        let weights: Vec<u64> = self.authorities.iter().map(|a| a.weight).collect();
        let quorum = self.quorum;
        // A quorum of answers is enough: waiting for the rest would stall on a dead authority.
        let enough = |answers: &[Option<_>]| {
            let weight: u64 = answers
                .iter()
                .zip(&weights)
                .filter(|(answer, _)| answer.is_some())
                .map(|(_, weight)| *weight)
                .sum();
            weight >= quorum
        };
        while Instant::now() < deadline && !enough(&answers) {
            if Instant::now() >= next_send {
                let silent: Vec<usize> = (0..answers.len())
                    .filter(|&a| answers[a].is_none())
                    .collect();
                for a in silent {
                    self.send(a, account, &request)?;
                }
                next_send = Instant::now() + RETRY_INTERVAL;
            }
            match self.receive(next_send.min(deadline))? {
                Some((a, Message::AccountInfoResponse(info))) if info.account == *account => {
                    answers[a] = Some(Ok(info));
                }
                Some((a, Message::Error(error))) if error.account == *account => {
                    answers[a] = Some(Err(error.code));
                }
                _ => {}
            }
        }
        Ok(answers
            .into_iter()
            .enumerate()
            .filter_map(|(a, answer)| answer.map(|x| (self.authorities[a].name, x)))
            .collect())
    }

    /// Drives the transfers in progress of `clients` to `goal`, at most [`WINDOW`] at a time,
    /// resending to silent authorities every [`RETRY_INTERVAL`] and feeding lagging ones what
    /// they miss. Clients without a transfer in progress are left alone. `on_progress` is
    /// called with the number of transfers that reached the goal.
    pub fn drive(
        &mut self,
        clients: &mut [ClientState],
        goal: Goal,
        timeout: Duration,
        mut on_progress: impl FnMut(usize),
    ) -> Result<DriveStats, NetError> {
        let mut stats = DriveStats::default();
        let reached = |c: &ClientState| {
            matches!(
                (goal, c.pending()),
                (_, None) | (Goal::Certified, Some(Phase::Confirming { .. }))
            )
        };
        let index: HashMap<AccountId, usize> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.account(), i))
            .collect();
        let mut todo: Vec<usize> = (0..clients.len())
            .filter(|&i| !reached(&clients[i]))
            .collect();
        todo.reverse();
        let mut active: Vec<usize> = Vec::new();
        let mut last_sent: HashMap<usize, Instant> = HashMap::new();
        let deadline = Instant::now() + timeout;
        let mut done = 0usize;

        loop {
            active.retain(|&i| !reached(&clients[i]));
            while active.len() < WINDOW {
                let Some(i) = todo.pop() else { break };
                active.push(i);
            }
            if active.is_empty() {
                return Ok(stats);
            }
            if Instant::now() >= deadline {
                return Err(NetError::Timeout {
                    unfinished: active.len() + todo.len(),
                    seconds: timeout.as_secs(),
                });
            }
            // (Re)send for every active transfer that is new or due for a retry.
            let now = Instant::now();
            for &i in &active {
                if last_sent.get(&i).is_some_and(|t| now < *t + RETRY_INTERVAL) {
                    continue;
                }
                last_sent.insert(i, now);
                stats.sent += self.send_pending(&clients[i], goal)?;
            }
            let Some((a, message)) = self.receive(Instant::now() + Duration::from_millis(20))?
            else {
                continue;
            };
            stats.received += 1;
            let name = self.authorities[a].name;
            let account = match &message {
                Message::Vote(vote) => vote.sender,
                Message::AccountInfoResponse(info) => info.account,
                Message::Error(error) => error.account,
                _ => continue,
            };
            let Some(&i) = index.get(&account) else {
                continue;
            };
            let before = reached(&clients[i]);
            match message {
                Message::Vote(reply) => match clients[i].handle_vote_reply(&reply) {
                    Ok(Some(_)) if goal == Goal::Finished => {
                        // Certified: confirm at once rather than at the next retry.
                        stats.sent += self.send_pending(&clients[i], goal)?;
                        last_sent.insert(i, Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => stats.refused += 1,
                },
                Message::AccountInfoResponse(info)
                    if clients[i].handle_account_info(name, &info).is_err() =>
                {
                    stats.refused += 1;
                }
                Message::Error(error) => {
                    stats.errors += 1;
                    // Each catch-up message goes to the shard of its certificate's sender:
                    // a received payment's confirmation belongs to the payer's shard.
                    for request in clients[i].catch_up(&name, &error) {
                        self.send_request(a, &request)?;
                        stats.sent += 1;
                    }
                }
                _ => {}
            }
            if !before && reached(&clients[i]) {
                done += 1;
                on_progress(done);
            }
        }
    }

    /// Sends a client's pending request to every authority that still owes a reply.
    fn send_pending(&mut self, client: &ClientState, goal: Goal) -> Result<u64, NetError> {
        let mut sent = 0;
        for a in 0..self.authorities.len() {
            let name = self.authorities[a].name;
            if let Some(request) = client.request_for(&name) {
                if goal == Goal::Certified && matches!(request, Message::ConfirmationOrder(_)) {
                    continue;
                }
                self.send_request(a, &request)?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}
