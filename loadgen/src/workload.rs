//! What a run sends: the kind of request ([`Phase`]) and the hostile traffic mixed in
//! ([`Flood`]), shared by the runner, the endpoints and the report.

use fastpay_wire::Message;
use std::net::SocketAddr;

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
