//! Talking to the committee over UDP from a client: requests to every authority, replies
//! matched by sender address and content, timeouts and retries. Drives any number of
//! [`ClientState`]s at once over one socket, so one transfer and a benchmark of thousands use
//! the same code.

use fastpay_client::{ClientState, Phase};
use fastpay_wire::codec::MAX_DATAGRAM_SIZE;
use fastpay_wire::{
    AccountId, AccountInfoRequest, AccountInfoResponse, AccountQuery, AuthorityName,
    CERTIFICATE_QUERY_BYTES, CertificateAnswer, CertifiedTransferOrder, CommitteeFile,
    CommitteeFileError, ConfirmationOrder, ErrorCode, Message, SequenceNumber, decode,
    encode_padded_into, shard_of,
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

/// How long a download waits for the authorities still silent once a quorum has answered:
/// long enough for a loaded authority's answer on a LAN, short enough that one authority
/// down does not slow every transfer's sync by a retry interval (what only a slow or dead
/// authority holds is fetched by the next sync).
pub const QUORUM_GRACE: Duration = Duration::from_millis(50);

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
}

/// Certificates one sync takes from one authority's list of payments received: a list that
/// claims more ends there (the next sync goes on from where this one stopped).
pub const MAX_RECEIVED_PER_SYNC: usize = 4096;

/// Earlier transfers of a payer a push fetches and sends along when an authority misses them.
pub const MAX_PUSH_CHAIN: usize = 64;

/// Bytes of a certificate answer besides its votes (header, account, query, the order with a
/// memo, the vote list's length), rounded up.
const CERTIFICATE_BASE_BYTES: usize = 320;

/// Bytes of one vote in a certificate (authority name and signature).
const VOTE_BYTES: usize = 96;

/// One authority's list of payments received by an account, as far as it was read.
#[derive(Debug, Clone)]
pub struct ReceivedList {
    /// The authority.
    pub authority: AuthorityName,
    /// The certificates it listed, in its arrival order (unverified).
    pub certificates: Vec<CertifiedTransferOrder>,
    /// Where to read its list from next time.
    pub next: u64,
    /// Whether the list was read to its end.
    pub complete: bool,
    /// Whether the list was read from its start (the cursor was zero, or the authority's
    /// list had become shorter than the cursor: its state was lost and rebuilt).
    pub from_start: bool,
}

/// Why saving the clients' states failed.
pub type SaveError = Box<dyn std::error::Error + Send + Sync>;

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
    /// Where each shard listens (all the same unless the authority places its shards).
    addresses: Vec<SocketAddr>,
    shards: u32,
    weight: u64,
    /// Padding of requests to it, so that its votes fit within them.
    padding: u16,
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
                addresses: entry.shard_addresses()?,
                shards: entry.shards,
                weight: entry.weight,
                padding: entry.votes.request_padding(),
            });
        }
        let any: SocketAddr = match authorities.first().and_then(|a| a.addresses.first()) {
            Some(SocketAddr::V6(_)) => "[::]:0".parse().map_err(io::Error::other)?,
            _ => "0.0.0.0:0".parse().map_err(io::Error::other)?,
        };
        let socket = Socket::new(Domain::for_address(any), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(fastpay_udp::SOCKET_BUFFER_BYTES);
        socket.bind(&any.into())?;
        let socket: UdpSocket = socket.into();
        // Replies come from the shard's address: each one names its authority.
        let by_address = authorities
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.addresses.iter().map(move |address| (*address, i)))
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
        let len = encode_padded_into(message, shard, target.padding, &mut self.buffer)
            .map_err(io::Error::other)?;
        let Some(&address) = target.addresses.get(shard.0 as usize) else {
            return Ok(());
        };
        match self.socket.send_to(&self.buffer[..len], address) {
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
    ///
    /// `save` is called with every client before any confirmation of a certificate formed in
    /// this drive leaves: an interrupted transfer then always finds its certificate in the
    /// wallet (certificates formed together are saved together, once the replies waiting in
    /// the socket are read).
    pub fn drive(
        &mut self,
        clients: &mut [ClientState],
        goal: Goal,
        timeout: Duration,
        mut on_progress: impl FnMut(usize),
        mut save: impl FnMut(&[ClientState]) -> Result<(), SaveError>,
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
        // Clients whose certificate formed here and is not saved yet: nothing of theirs
        // leaves until it is.
        let mut unsaved: Vec<usize> = Vec::new();
        let mut idle = true;

        loop {
            if !unsaved.is_empty() && (idle || unsaved.len() >= WINDOW / 4) {
                save(clients).map_err(NetError::Save)?;
                for i in std::mem::take(&mut unsaved) {
                    if goal == Goal::Finished {
                        stats.sent += self.send_pending(&clients[i], goal)?;
                        last_sent.insert(i, Instant::now());
                    }
                }
            }
            active.retain(|&i| !reached(&clients[i]));
            while active.len() < WINDOW {
                let Some(i) = todo.pop() else { break };
                active.push(i);
            }
            if active.is_empty() && unsaved.is_empty() {
                return Ok(stats);
            }
            if Instant::now() >= deadline {
                if !unsaved.is_empty() {
                    save(clients).map_err(NetError::Save)?;
                }
                return Err(NetError::Timeout {
                    unfinished: active.len() + todo.len(),
                    seconds: timeout.as_secs(),
                });
            }
            // (Re)send for every active transfer that is new or due for a retry.
            let now = Instant::now();
            for &i in &active {
                if unsaved.contains(&i)
                    || last_sent.get(&i).is_some_and(|t| now < *t + RETRY_INTERVAL)
                {
                    continue;
                }
                last_sent.insert(i, now);
                stats.sent += self.send_pending(&clients[i], goal)?;
            }
            // With certificates to save, only read what already waits.
            let wait = if unsaved.is_empty() {
                Duration::from_millis(20)
            } else {
                Duration::from_millis(1)
            };
            let Some((a, message)) = self.receive(Instant::now() + wait)? else {
                idle = true;
                continue;
            };
            idle = false;
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
                    // Certified: saved, then confirmed at once rather than at the next retry
                    // (a drive to certificates only sends no confirmation; its caller saves).
                    Ok(Some(_)) if goal == Goal::Finished => unsaved.push(i),
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
                    if unsaved.contains(&i) {
                        // Its catch-up could carry the unsaved certificate.
                        save(clients).map_err(NetError::Save)?;
                        for j in std::mem::take(&mut unsaved) {
                            if goal == Goal::Finished {
                                stats.sent += self.send_pending(&clients[j], goal)?;
                                last_sent.insert(j, Instant::now());
                            }
                        }
                    }
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

    /// The size of a certificate query: enough for a certificate carrying a vote of every
    /// member of the committee (it is answered by nothing larger).
    fn certificate_query_size(&self) -> usize {
        CERTIFICATE_QUERY_BYTES
            .max(CERTIFICATE_BASE_BYTES + VOTE_BYTES * self.authorities.len())
            .min(MAX_DATAGRAM_SIZE)
    }

    /// The weight of the authorities marked in `marks`.
    fn weight_of(&self, marks: &[bool]) -> u64 {
        marks
            .iter()
            .zip(&self.authorities)
            .filter(|(marked, _)| **marked)
            .map(|(_, a)| a.weight)
            .fold(0, u64::saturating_add)
    }

    /// Asks the committee for the certificate of `account`'s transfer `sequence`; returns the
    /// first one that `valid` accepts (authorities may lie), or `None` once every authority
    /// said it has none, or a quorum did and [`QUORUM_GRACE`] passed, or at `timeout`.
    pub fn fetch_certificate(
        &mut self,
        account: &AccountId,
        sequence: SequenceNumber,
        timeout: Duration,
        valid: impl Fn(&CertifiedTransferOrder) -> bool,
    ) -> Result<Option<CertifiedTransferOrder>, NetError> {
        let query = AccountQuery::Certificate(sequence);
        let request = Message::AccountInfoRequest(AccountInfoRequest::certificate(
            *account,
            sequence,
            self.certificate_query_size(),
        ));
        let start = Instant::now();
        let deadline = start + timeout;
        let mut answered = vec![false; self.authorities.len()];
        let mut next_send = start;
        let mut quorum_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let all = answered.iter().all(|a| *a);
            if quorum_at.is_none() && self.weight_of(&answered) >= self.quorum {
                quorum_at = Some(now);
            }
            let quorum_said_no = quorum_at.is_some_and(|t| now >= t + QUORUM_GRACE);
            if all || quorum_said_no || now >= deadline {
                return Ok(None);
            }
            if now >= next_send {
                let silent: Vec<usize> = (0..answered.len()).filter(|&a| !answered[a]).collect();
                for a in silent {
                    self.send(a, account, &request)?;
                }
                next_send = now + RETRY_INTERVAL;
            }
            let wait = quorum_at.map_or(next_send, |t| next_send.min(t + QUORUM_GRACE));
            match self.receive(wait.min(deadline))? {
                Some((a, Message::Certificates(response)))
                    if response.account == *account && response.query == query =>
                {
                    if let CertificateAnswer::Certificate(certificate) = response.answer
                        && certificate.value.transfer.sender == *account
                        && certificate.value.transfer.sequence_number == sequence
                        && valid(&certificate)
                    {
                        return Ok(Some(certificate));
                    }
                    answered[a] = true;
                }
                Some((a, Message::Error(error))) if error.account == *account => {
                    answered[a] = true;
                }
                _ => {}
            }
        }
    }

    /// Reads every authority's list of payments received by `account`, each from its cursor
    /// (`from`), page by page, until the end of each list, or until a quorum's lists are read
    /// and the others stay silent for [`QUORUM_GRACE`], or `timeout`. Returns what each
    /// authority that answered listed (unverified: the caller checks each certificate).
    pub fn fetch_received(
        &mut self,
        account: &AccountId,
        from: impl Fn(&AuthorityName) -> u64,
        timeout: Duration,
    ) -> Result<Vec<ReceivedList>, NetError> {
        struct Reading {
            from: u64,
            done: bool,
            answered: bool,
            last_sent: Option<Instant>,
            certificates: Vec<CertifiedTransferOrder>,
            from_start: bool,
        }
        let size = self.certificate_query_size();
        let mut lists: Vec<Reading> = self
            .authorities
            .iter()
            .map(|a| {
                let from = from(&a.name);
                Reading {
                    from,
                    done: false,
                    answered: false,
                    last_sent: None,
                    certificates: Vec::new(),
                    from_start: from == 0,
                }
            })
            .collect();
        let start = Instant::now();
        let deadline = start + timeout;
        let mut progress = start;
        loop {
            let now = Instant::now();
            let done: Vec<bool> = lists.iter().map(|l| l.done).collect();
            let quiet = now >= progress + QUORUM_GRACE;
            if done.iter().all(|d| *d)
                || (self.weight_of(&done) >= self.quorum && quiet)
                || now >= deadline
            {
                break;
            }
            for (a, list) in lists.iter_mut().enumerate() {
                if list.done || list.last_sent.is_some_and(|t| now < t + RETRY_INTERVAL) {
                    continue;
                }
                let request = Message::AccountInfoRequest(AccountInfoRequest::received(
                    *account, list.from, size,
                ));
                self.send(a, account, &request)?;
                list.last_sent = Some(now);
            }
            let Some((a, message)) = self.receive(now + Duration::from_millis(20))? else {
                continue;
            };
            let list = &mut lists[a];
            match message {
                Message::Certificates(response)
                    if response.account == *account
                        && response.query == AccountQuery::Received(list.from) =>
                {
                    progress = Instant::now();
                    list.answered = true;
                    match response.answer {
                        CertificateAnswer::Received {
                            certificates,
                            next,
                            end,
                        } if end < list.from && !list.from_start => {
                            // Fewer payments than we already read: the authority lost its
                            // state (a replaced machine). Read it again from the start.
                            let _ = (certificates, next);
                            list.from = 0;
                            list.from_start = true;
                            list.last_sent = None;
                        }
                        CertificateAnswer::Received {
                            certificates,
                            next,
                            end,
                        } => {
                            let moved = next > list.from && !certificates.is_empty();
                            list.certificates.extend(certificates);
                            list.from = next.max(list.from);
                            // A list that does not move, or that grows past what one sync
                            // takes from one authority, ends here (a liar's is endless).
                            list.done = next >= end
                                || !moved
                                || list.certificates.len() >= MAX_RECEIVED_PER_SYNC;
                            list.last_sent = None;
                        }
                        _ => list.done = true,
                    }
                }
                Message::Error(error) if error.account == *account => {
                    progress = Instant::now();
                    list.answered = true;
                    list.done = true;
                }
                _ => {}
            }
        }
        Ok(lists
            .into_iter()
            .zip(&self.authorities)
            .filter(|(list, _)| list.answered)
            .map(|(list, authority)| ReceivedList {
                authority: authority.name,
                certificates: list.certificates,
                next: list.from,
                complete: list.done,
                from_start: list.from_start,
            })
            .collect())
    }

    /// Sends each certificate's confirmation to the authority named with it (to the shard of
    /// its sender) until each acknowledges it, or `timeout`. An authority that misses the
    /// sender's earlier transfer gets it too, fetched from the committee and checked by
    /// `valid` (at most [`MAX_PUSH_CHAIN`] of them). Returns how many were acknowledged.
    pub fn push_confirmations(
        &mut self,
        targets: Vec<(AuthorityName, CertifiedTransferOrder)>,
        timeout: Duration,
        valid: impl Fn(&CertifiedTransferOrder) -> bool,
    ) -> Result<usize, NetError> {
        struct Push {
            authority: usize,
            certificate: CertifiedTransferOrder,
            last_sent: Option<Instant>,
            acked: bool,
        }
        let mut pushes: Vec<Push> = targets
            .into_iter()
            .filter_map(|(name, certificate)| {
                let authority = self.authorities.iter().position(|a| a.name == name)?;
                Some(Push {
                    authority,
                    certificate,
                    last_sent: None,
                    acked: false,
                })
            })
            .collect();
        let deadline = Instant::now() + timeout;
        let mut fetched = 0;
        loop {
            let now = Instant::now();
            if now >= deadline || pushes.iter().all(|p| p.acked) {
                break;
            }
            for push in pushes.iter_mut() {
                if push.acked || push.last_sent.is_some_and(|t| now < t + RETRY_INTERVAL) {
                    continue;
                }
                let message = Message::ConfirmationOrder(ConfirmationOrder {
                    certificate: push.certificate.clone(),
                });
                self.send_request(push.authority, &message)?;
                push.last_sent = Some(now);
            }
            let Some((a, message)) = self.receive(now + Duration::from_millis(20))? else {
                continue;
            };
            match message {
                Message::AccountInfoResponse(info) => {
                    for push in pushes.iter_mut().filter(|p| p.authority == a) {
                        let t = &push.certificate.value.transfer;
                        if t.sender == info.account && t.sequence_number < info.next_sequence_number
                        {
                            push.acked = true;
                        }
                    }
                }
                Message::Error(error)
                    if error.code == ErrorCode::MissingEarlierConfirmations
                        && fetched < MAX_PUSH_CHAIN =>
                {
                    // The sender's earlier transfer first: fetch it from the others.
                    let Some(earlier) = error.sequence_number.value().checked_sub(1) else {
                        continue;
                    };
                    let earlier = SequenceNumber::new(earlier);
                    let known = pushes.iter().any(|p| {
                        p.authority == a
                            && p.certificate.value.transfer.sender == error.account
                            && p.certificate.value.transfer.sequence_number == earlier
                    });
                    if known {
                        continue;
                    }
                    fetched += 1;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Some(certificate) =
                        self.fetch_certificate(&error.account, earlier, left, &valid)?
                    {
                        pushes.push(Push {
                            authority: a,
                            certificate,
                            last_sent: None,
                            acked: false,
                        });
                    }
                }
                Message::Error(error) => {
                    // Refused for good (a forged certificate, say): stop pushing it there.
                    for push in pushes.iter_mut().filter(|p| p.authority == a) {
                        let t = &push.certificate.value.transfer;
                        if t.sender == error.account
                            && t.sequence_number == error.sequence_number
                            && error.code != ErrorCode::Overloaded
                        {
                            push.acked = true;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(pushes.iter().filter(|p| p.acked).count())
    }

    /// The names of the authorities, in committee file order.
    pub fn authority_names(&self) -> Vec<AuthorityName> {
        self.authorities.iter().map(|a| a.name).collect()
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
