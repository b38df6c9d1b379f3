//! What every client state machine shares: the actions it asks of its driver, the trait a
//! driver polls, and the timing rules.
//!
//! A machine never sends, sleeps or reads a clock. Its driver (the socket loop of the wallet,
//! or the simulator) repeats: [`Exchange::poll`] until it answers [`Action::Wait`], doing what
//! each action says; then it waits for a reply or the deadline and hands the reply to
//! [`Exchange::handle`].

use crate::state::ClientState;
use fastpay_wire::{AuthorityName, Committee, Message};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a client waits for an authority before sending its request again. Loopback
/// round trips take well under a millisecond; a loaded authority answers within tens.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// How long a download waits for the authorities still silent once a quorum has answered:
/// long enough for a loaded authority's answer on a LAN, short enough that one authority
/// down does not slow every transfer's sync by a retry interval (what only a slow or dead
/// authority holds is fetched by the next sync).
pub const QUORUM_GRACE: Duration = Duration::from_millis(50);

/// A client's timers. [`Timing::default`] suits a LAN or loopback ([`RETRY_INTERVAL`],
/// [`QUORUM_GRACE`]); a network with other round trips (the simulator's) scales them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for an authority before asking it again.
    pub retry: Duration,
    /// How long to wait for the authorities still silent once a quorum has answered.
    pub quorum_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            retry: RETRY_INTERVAL,
            quorum_grace: QUORUM_GRACE,
        }
    }
}

/// A message for one authority. The driver addresses it to the shard that owns the account
/// it is about ([`crate::route`]).
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The authority.
    pub to: AuthorityName,
    /// The message.
    pub message: Message,
}

/// What a machine asks its driver to do next.
// A message is a few hundred bytes: moved once from the machine to the socket, cheaper than
// the allocation a box would cost per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action<T> {
    /// Send this, then poll again.
    Send(Transmit),
    /// Write the clients' states to the wallet now, then call [`Exchange::saved`]: nothing
    /// that depends on them leaves before.
    Save,
    /// Nothing to do until a reply arrives or this moment passes.
    Wait(Instant),
    /// Finished, with this result.
    Done(T),
}

/// A client protocol as a state machine over the wallet's accounts (`clients`), which the
/// driver lends it at every step.
pub trait Exchange {
    /// What it yields when it finishes.
    type Output;

    /// The next thing to do at `now`.
    fn poll(&mut self, clients: &mut [ClientState], now: Instant) -> Action<Self::Output>;

    /// Takes a decoded message that came from `from` at `now`.
    fn handle(
        &mut self,
        clients: &mut [ClientState],
        now: Instant,
        from: AuthorityName,
        message: Message,
    );

    /// The save asked for by [`Action::Save`] is done.
    fn saved(&mut self) {}
}

/// Messages waiting to be handed to the driver, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Outbox(VecDeque<Transmit>);

impl Outbox {
    pub(crate) fn push(&mut self, to: AuthorityName, message: Message) {
        self.0.push_back(Transmit { to, message });
    }

    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.0.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The committee's members in a fixed order, with the weight arithmetic the machines share.
#[derive(Debug, Clone)]
pub(crate) struct Members {
    pub(crate) names: Vec<AuthorityName>,
    weights: Vec<u64>,
    pub(crate) quorum: u64,
}

impl Members {
    pub(crate) fn of(committee: &Committee) -> Self {
        Self {
            names: committee.members().iter().map(|m| m.name).collect(),
            weights: committee.members().iter().map(|m| m.weight).collect(),
            quorum: committee.quorum_threshold(),
        }
    }

    /// The position of `name`, if it is a member.
    pub(crate) fn index(&self, name: &AuthorityName) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The answers given (one slot per member, in order), each with its member's name.
    pub(crate) fn named<T>(&self, answers: Vec<Option<T>>) -> Vec<(AuthorityName, T)> {
        answers
            .into_iter()
            .zip(&self.names)
            .filter_map(|(answer, name)| answer.map(|a| (*name, a)))
            .collect()
    }

    /// The weight of the members marked in `marks` (one mark per member, in order).
    pub(crate) fn weight_of(&self, marks: impl IntoIterator<Item = bool>) -> u64 {
        marks
            .into_iter()
            .zip(&self.weights)
            .filter(|(marked, _)| *marked)
            .map(|(_, weight)| *weight)
            .fold(0, u64::saturating_add)
    }
}

/// The earliest of two optional moments.
pub(crate) fn earliest(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.min(b))
}
