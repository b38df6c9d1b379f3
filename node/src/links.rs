//! The credit links between the shards of one authority: one numbering, one outbox, one
//! acknowledgement scheme and one de-duplication, whatever carries the frames.
//!
//! Every credit a shard owes shard `d` gets the next number on the link to `d`. The numbering
//! is durable: a confirmation's record is logged before its credit leaves, and replaying the
//! log numbers the credits again in the same order, so a number means the same credit across
//! restarts of either end. The receiver applies credit `k` from `s` only when it has taken
//! every credit before it, and acknowledges "everything up to `k`" once the records of those
//! credits are durable; the sender keeps each credit in its outbox until acknowledged.
//!
//! Transports differ only in what they promise: a reliable one (the in-process queues: FIFO,
//! nothing lost) gets each credit once, and again only after a restart; a lossy one (UDP
//! between shard processes) gets go-back-N: the unacknowledged window is resent every
//! [`LINK_RETRY`] until acknowledged.

use fastpay_wire::{CrossShardUpdate, LinkFrame, LinkPayload, ShardId};
use std::collections::VecDeque;
use std::time::Duration;

/// How long a sender waits for an acknowledgement over a lossy transport before resending its
/// window. Loopback round trips are tens of microseconds and a busy receiver drains its socket
/// and syncs within a few milliseconds.
pub const LINK_RETRY: Duration = Duration::from_millis(20);

/// Unacknowledged credits sent (or resent) at once to a destination over a lossy transport:
/// go-back-N's window.
pub const LINK_WINDOW: u64 = 256;

/// What a transport between two shards promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// FIFO and lossless while both ends run (queues between threads of one process). Credits
    /// arriving over it come from this process and are trusted.
    Reliable,
    /// May lose, duplicate and reorder (datagrams between processes). Credits arriving over it
    /// prove themselves with their certificate.
    Lossy,
}

/// One destination's side of a link.
#[derive(Debug, Default)]
struct Outbound {
    /// The last number given to a credit for this destination.
    numbered: u64,
    /// Credits up to this number are durable here and may leave.
    releasable: u64,
    /// The destination acknowledged every credit up to this number.
    acked: u64,
    /// The last number sent since the window last went out.
    sent: u64,
    /// When the retransmission timer started: the first send of an unacknowledged credit,
    /// the last resend, or the last acknowledgement that made progress.
    timer: Option<Duration>,
    /// Credits numbered and not yet acknowledged, in order.
    unacked: VecDeque<(u64, CrossShardUpdate)>,
}

/// One source's side of a link.
#[derive(Debug, Default)]
struct Inbound {
    /// The last number taken from this source (applied or refused).
    taken: u64,
    /// The last number taken whose record is durable: what we acknowledge.
    durable: u64,
    /// The acknowledgement last sent.
    ack_sent: u64,
    /// Something arrived that the source should hear about (a duplicate, a gap).
    ack_due: bool,
}

/// What to do with a credit that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one from its source: apply it, then [`CreditLinks::taken`].
    Next,
    /// Taken before (resent): ignore.
    Duplicate,
    /// Ahead of a gap the sender will fill: ignore.
    Early,
}

/// One shard's ends of its links to every shard of the authority.
#[derive(Debug)]
pub struct CreditLinks {
    me: ShardId,
    transports: Vec<Transport>,
    outbound: Vec<Outbound>,
    inbound: Vec<Inbound>,
}

impl CreditLinks {
    /// Shard `me`'s links, reaching shard `j` over `transports[j]`.
    pub fn new(me: ShardId, transports: Vec<Transport>) -> Self {
        let n = transports.len();
        Self {
            me,
            transports,
            outbound: (0..n).map(|_| Outbound::default()).collect(),
            inbound: (0..n).map(|_| Inbound::default()).collect(),
        }
    }

    /// The transport to shard `j`.
    pub fn transport(&self, j: ShardId) -> Option<Transport> {
        self.transports.get(j.0 as usize).copied()
    }

    /// Numbers a credit for its recipient's shard and keeps it until acknowledged.
    pub fn number(&mut self, update: CrossShardUpdate) -> u64 {
        let Some(out) = self.outbound.get_mut(update.recipient_shard.0 as usize) else {
            return 0;
        };
        out.numbered = out.numbered.saturating_add(1);
        out.unacked.push_back((out.numbered, update));
        out.numbered
    }

    /// How credit `sequence` from `from` fits the link.
    pub fn arrival(&mut self, from: ShardId, sequence: u64) -> Arrival {
        let Some(inbound) = self.inbound.get_mut(from.0 as usize) else {
            return Arrival::Early;
        };
        if sequence <= inbound.taken {
            inbound.ack_due = true;
            Arrival::Duplicate
        } else if sequence == inbound.taken.saturating_add(1) {
            Arrival::Next
        } else {
            inbound.ack_due = true;
            Arrival::Early
        }
    }

    /// Credit `sequence` from `from` was taken (applied or refused, and recorded).
    pub fn taken(&mut self, from: ShardId, sequence: u64) {
        if let Some(inbound) = self.inbound.get_mut(from.0 as usize) {
            inbound.taken = inbound.taken.max(sequence);
        }
    }

    /// An acknowledgement from `from`, arriving at `now`: every credit up to `through` is
    /// durable there.
    pub fn acknowledged(&mut self, now: Duration, from: ShardId, through: u64) {
        let Some(out) = self.outbound.get_mut(from.0 as usize) else {
            return;
        };
        // Never beyond what we numbered: an acknowledgement of the future is meaningless.
        let through = through.min(out.numbered);
        if through <= out.acked {
            return;
        }
        out.acked = through;
        while out.unacked.front().is_some_and(|(s, _)| *s <= through) {
            out.unacked.pop_front();
        }
        // Go-back-N restarts from what is still missing.
        out.sent = out.sent.max(through);
        out.timer = (!out.unacked.is_empty()).then_some(now);
    }

    /// The marks to make durable with the records logged so far: what was numbered (may
    /// leave once durable) and taken (may be acknowledged once durable), per shard.
    pub fn marks(&self, numbered: &mut Vec<u64>, taken: &mut Vec<u64>) {
        numbered.clear();
        numbered.extend(self.outbound.iter().map(|o| o.numbered));
        taken.clear();
        taken.extend(self.inbound.iter().map(|i| i.taken));
    }

    /// The records holding `numbered` and `taken` (from [`marks`](Self::marks)) are durable.
    pub fn made_durable(&mut self, numbered: &[u64], taken: &[u64]) {
        for (out, n) in self.outbound.iter_mut().zip(numbered) {
            out.releasable = out.releasable.max(*n);
        }
        for (inbound, t) in self.inbound.iter_mut().zip(taken) {
            inbound.durable = inbound.durable.max(*t);
        }
    }

    /// Frames due at `now`: credits that may leave (new ones at once; over lossy transports,
    /// the window again after [`LINK_RETRY`]) and acknowledgements owed, appended to `out`.
    pub fn transmit(&mut self, now: Duration, out: &mut Vec<LinkFrame>) {
        for j in 0..self.outbound.len() {
            let to = ShardId(j as u32);
            if to == self.me {
                continue;
            }
            let ack = self.inbound[j].durable;
            let before = out.len();
            let o = &mut self.outbound[j];
            let (first, last) = match self.transports[j] {
                Transport::Reliable => (o.sent, o.releasable),
                Transport::Lossy => {
                    let limit = o.releasable.min(o.acked.saturating_add(LINK_WINDOW));
                    let resend = !o.unacked.is_empty()
                        && o.timer.is_some_and(|t| now.saturating_sub(t) >= LINK_RETRY);
                    if resend {
                        o.sent = o.acked;
                        o.timer = None;
                    }
                    (o.sent, limit)
                }
            };
            if last > first {
                for (sequence, update) in o.unacked.iter().filter(|(s, _)| *s > first && *s <= last)
                {
                    out.push(LinkFrame {
                        from: self.me,
                        to,
                        ack,
                        payload: LinkPayload::Credit {
                            sequence: *sequence,
                            update: update.clone(),
                        },
                    });
                }
                o.sent = last;
                o.timer = o.timer.or(Some(now));
            }
            let inbound = &mut self.inbound[j];
            if out.len() == before && (inbound.ack_due || inbound.durable > inbound.ack_sent) {
                out.push(LinkFrame {
                    from: self.me,
                    to,
                    ack,
                    payload: LinkPayload::Ack,
                });
            }
            if out.len() > before {
                inbound.ack_sent = ack;
                inbound.ack_due = false;
            }
        }
    }

    /// When [`transmit`](Self::transmit) next has a resend due, if it ever will.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.outbound
            .iter()
            .zip(&self.transports)
            .filter(|(o, t)| **t == Transport::Lossy && !o.unacked.is_empty())
            .filter_map(|(o, _)| o.timer.map(|t| t + LINK_RETRY))
            .min()
    }

    /// Credits not yet acknowledged, over all destinations.
    pub fn unacked(&self) -> usize {
        self.outbound.iter().map(|o| o.unacked.len()).sum()
    }

    /// Credits not yet acknowledged by `to`, oldest first, with their numbers.
    pub fn outbox(&self, to: ShardId) -> impl Iterator<Item = &(u64, CrossShardUpdate)> {
        self.outbound
            .get(to.0 as usize)
            .into_iter()
            .flat_map(|o| o.unacked.iter())
    }

    /// The acknowledgement for `from`: the last number taken from it whose record is durable.
    pub fn durable_taken_from(&self, from: ShardId) -> u64 {
        self.inbound.get(from.0 as usize).map_or(0, |i| i.durable)
    }

    /// A one-line account of every link's marks, for failure reports.
    pub fn summary(&self) -> String {
        let out: Vec<String> = self
            .outbound
            .iter()
            .map(|o| {
                format!(
                    "numbered {} releasable {} sent {} acked {} unacked {} timer {:?}",
                    o.numbered,
                    o.releasable,
                    o.sent,
                    o.acked,
                    o.unacked.len(),
                    o.timer
                )
            })
            .collect();
        let inbound: Vec<String> = self
            .inbound
            .iter()
            .map(|i| {
                format!(
                    "taken {} durable {} ack sent {}",
                    i.taken, i.durable, i.ack_sent
                )
            })
            .collect();
        format!("shard {}: to {out:?}, from {inbound:?}", self.me.0)
    }

    /// The last number taken from `from`.
    pub fn taken_from(&self, from: ShardId) -> u64 {
        self.inbound.get(from.0 as usize).map_or(0, |i| i.taken)
    }

    /// The links' durable state, for a snapshot.
    pub fn state(&self) -> crate::log::LinkState {
        crate::log::LinkState {
            numbered: self.outbound.iter().map(|o| o.numbered).collect(),
            applied: self.inbound.iter().map(|i| i.taken).collect(),
            outbox: self
                .outbound
                .iter()
                .enumerate()
                .flat_map(|(d, o)| {
                    o.unacked
                        .iter()
                        .map(move |(s, u)| (d as u32, *s, u.clone()))
                })
                .collect(),
        }
    }

    /// Restores the links from a snapshot's state (everything in it is durable).
    pub fn restore(&mut self, state: crate::log::LinkState) {
        for (o, n) in self.outbound.iter_mut().zip(&state.numbered) {
            *o = Outbound {
                numbered: *n,
                releasable: *n,
                ..Outbound::default()
            };
        }
        for (i, t) in self.inbound.iter_mut().zip(&state.applied) {
            *i = Inbound {
                taken: *t,
                durable: *t,
                ..Inbound::default()
            };
        }
        for (d, sequence, update) in state.outbox {
            if let Some(o) = self.outbound.get_mut(d as usize) {
                o.unacked.push_back((sequence, update));
            }
        }
    }

    /// After recovery: everything replayed is durable, and every unacknowledged credit goes
    /// out again (the destination drops what it already took).
    pub fn recovered(&mut self) {
        for o in &mut self.outbound {
            o.releasable = o.numbered;
            o.acked = o.unacked.front().map_or(o.numbered, |(s, _)| s - 1);
            o.sent = o.acked;
            o.timer = None;
        }
        for i in &mut self.inbound {
            i.durable = i.taken;
            // Tell every source where we are, so it forgets what we took before the crash.
            i.ack_due = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastpay_wire::{
        AccountId, Amount, CertifiedTransferOrder, CommitteeId, KeyPair, SequenceNumber, Transfer,
        TransferOrder,
    };

    fn credit(n: u64) -> CrossShardUpdate {
        let key = KeyPair::from_seed([3; 32]);
        CrossShardUpdate {
            recipient_shard: ShardId(1),
            certificate: CertifiedTransferOrder {
                value: TransferOrder::new(
                    Transfer {
                        sender: key.account(),
                        recipient: AccountId([4; 32]),
                        amount: Amount::new(1),
                        sequence_number: SequenceNumber::new(n),
                        user_data: None,
                    },
                    // Links order and number credits; they never verify signatures.
                    &CommitteeId([0; 32]),
                    &key,
                ),
                signatures: Vec::new(),
            },
        }
    }

    fn durable(links: &mut CreditLinks) {
        let (mut n, mut t) = (Vec::new(), Vec::new());
        links.marks(&mut n, &mut t);
        links.made_durable(&n, &t);
    }

    /// Delivers frames to `b`, taking each credit it may; returns the numbers taken.
    fn deliver(frames: &[LinkFrame], b: &mut CreditLinks) -> Vec<u64> {
        let mut taken = Vec::new();
        for frame in frames {
            b.acknowledged(Duration::ZERO, frame.from, frame.ack);
            if let LinkPayload::Credit { sequence, .. } = &frame.payload
                && b.arrival(frame.from, *sequence) == Arrival::Next
            {
                b.taken(frame.from, *sequence);
                taken.push(*sequence);
            }
        }
        taken
    }

    #[test]
    fn credits_leave_only_once_durable_and_lossy_links_resend_the_window() {
        let mut a = CreditLinks::new(ShardId(0), vec![Transport::Lossy; 2]);
        let mut b = CreditLinks::new(ShardId(1), vec![Transport::Lossy; 2]);
        for n in 0..5 {
            a.number(credit(n));
        }
        let mut frames = Vec::new();
        a.transmit(Duration::ZERO, &mut frames);
        assert!(frames.is_empty(), "nothing leaves before it is durable");
        durable(&mut a);
        a.transmit(Duration::ZERO, &mut frames);
        assert_eq!(frames.len(), 5);
        // Lose the second frame: only the first is taken; the rest wait for the resend.
        frames.remove(1);
        assert_eq!(deliver(&frames, &mut b), vec![1]);
        durable(&mut b);
        let mut acks = Vec::new();
        b.transmit(Duration::ZERO, &mut acks);
        deliver(&acks, &mut a);
        assert_eq!(a.unacked(), 4);
        frames.clear();
        a.transmit(LINK_RETRY / 2, &mut frames);
        assert!(
            frames.is_empty(),
            "nothing is due before the retry interval"
        );
        assert_eq!(a.next_deadline(), Some(LINK_RETRY));
        a.transmit(LINK_RETRY, &mut frames);
        assert_eq!(deliver(&frames, &mut b), vec![2, 3, 4, 5]);
        durable(&mut b);
        acks.clear();
        b.transmit(LINK_RETRY, &mut acks);
        deliver(&acks, &mut a);
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn a_restarted_sender_resends_its_outbox_and_the_receiver_takes_each_once() {
        let mut a = CreditLinks::new(ShardId(0), vec![Transport::Reliable; 2]);
        let mut b = CreditLinks::new(ShardId(1), vec![Transport::Reliable; 2]);
        for n in 0..3 {
            a.number(credit(n));
        }
        durable(&mut a);
        let mut frames = Vec::new();
        a.transmit(Duration::ZERO, &mut frames);
        assert_eq!(deliver(&frames, &mut b), vec![1, 2, 3]);
        // A reliable transport gets each credit once.
        frames.clear();
        a.transmit(LINK_RETRY * 10, &mut frames);
        assert!(frames.is_empty());

        // The sender restarts from a snapshot that still holds all three.
        let mut restarted = CreditLinks::new(ShardId(0), vec![Transport::Reliable; 2]);
        restarted.restore(a.state());
        restarted.recovered();
        frames.clear();
        restarted.transmit(Duration::ZERO, &mut frames);
        assert_eq!(frames.len(), 3);
        assert!(deliver(&frames, &mut b).is_empty(), "all duplicates");
        durable(&mut b);
        let mut acks = Vec::new();
        b.transmit(Duration::ZERO, &mut acks);
        deliver(&acks, &mut restarted);
        assert_eq!(restarted.unacked(), 0);
    }
}
