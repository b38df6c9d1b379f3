//! Virtual time and the event queue, and the addresses of everything on the simulated network.

use fastpay_wire::LinkFrame;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

/// A participant's network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// An authority's public port.
    Authority(usize),
    /// A client.
    Client(usize),
    /// The final sync's injector, whose replies nobody reads.
    Injector,
}

impl Node {
    /// The socket address an authority sees for this node.
    pub fn address(self) -> SocketAddr {
        match self {
            Node::Client(c) => SocketAddr::from(([10, 0, 0, 1], c as u16)),
            Node::Authority(a) => SocketAddr::from(([10, 1, 0, 1], a as u16)),
            Node::Injector => SocketAddr::from(([10, 2, 0, 1], 1)),
        }
    }

    /// The node behind an address an authority replies to.
    pub fn from_address(address: SocketAddr) -> Option<Node> {
        let SocketAddr::V4(v4) = address else {
            return None;
        };
        let port = usize::from(v4.port());
        match v4.ip().octets() {
            [10, 0, 0, 1] => Some(Node::Client(port)),
            [10, 1, 0, 1] => Some(Node::Authority(port)),
            [10, 2, 0, 1] => Some(Node::Injector),
            _ => None,
        }
    }
}

/// Something that happens at a point of virtual time.
// Thousands in flight at most: boxing the frames would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A datagram arrives.
    Datagram {
        /// The sender.
        from: Node,
        /// The receiver.
        to: Node,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A frame between two shards of an authority arrives.
    Frame {
        /// The authority.
        authority: usize,
        /// The receiving shard's incarnation when it was sent in process (frames between
        /// threads of a process die with it).
        incarnation: Option<u64>,
        /// The frame.
        frame: LinkFrame,
    },
    /// A shard processes a batch of what it received.
    ShardWake {
        /// The authority.
        authority: usize,
        /// The shard.
        shard: usize,
        /// The shard's incarnation when scheduled.
        incarnation: u64,
    },
    /// A shard's retransmission timer.
    ShardTimer {
        /// The authority.
        authority: usize,
        /// The shard.
        shard: usize,
        /// The shard's incarnation when scheduled.
        incarnation: u64,
    },
    /// A shard's log write is synced.
    DiskSync {
        /// The authority.
        authority: usize,
        /// The shard.
        shard: usize,
        /// The shard's incarnation when written.
        incarnation: u64,
        /// Absolute log offset synced.
        end: u64,
        /// The node's log position those bytes reach.
        position: u64,
    },
    /// A shard's background snapshot lands.
    SnapshotLanded {
        /// The authority.
        authority: usize,
        /// The shard.
        shard: usize,
        /// The shard's incarnation when started.
        incarnation: u64,
    },
    /// A crash: the whole authority process, or one shard process.
    Crash {
        /// The authority.
        authority: usize,
        /// The shard, when shards run as separate processes.
        shard: Option<usize>,
    },
    /// A crashed process restarts from its disks: the whole authority, or one shard process.
    Restart {
        /// The authority.
        authority: usize,
        /// The shard, when shards run as separate processes.
        shard: Option<usize>,
    },
    /// A deposit lands on the simulated primary chain.
    ChainDeposit,
    /// A shard's deposit follower looks at the chain.
    DepositPoll {
        /// The authority.
        authority: usize,
        /// The shard.
        shard: usize,
        /// The shard's incarnation when scheduled.
        incarnation: u64,
    },
    /// A client wakes up.
    Tick {
        /// The client.
        client: usize,
    },
    /// A client's operation asked to be woken at `at` (virtual microseconds).
    ClientWake {
        /// The client.
        client: usize,
        /// The time it asked for: a later request supersedes it.
        at: u64,
    },
}

struct Scheduled {
    time: u64,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.order) == (other.time, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.order).cmp(&(self.time, self.order))
    }
}

/// Events in virtual-time order (ties in scheduling order, so a run is deterministic).
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    order: u64,
}

impl EventQueue {
    /// Schedules `event` at `time`.
    pub fn push(&mut self, time: u64, event: Event) {
        self.order += 1;
        self.heap.push(Scheduled {
            time,
            order: self.order,
            event,
        });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|s| (s.time, s.event))
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
