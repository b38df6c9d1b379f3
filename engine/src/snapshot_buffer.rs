//! The buffer a shard's next snapshot is encoded into, prepared ahead on a thread of its
//! own. A snapshot of a few hundred thousand accounts with pending votes is tens of
//! megabytes: allocating and first touching that much on the shard thread (a page fault a
//! page, and copies each time a growing buffer moves) stalled every order behind it for tens
//! of milliseconds. Prepared here, the shard only writes the encoding.

use crossbeam_channel::{Receiver, TryRecvError, bounded};
use mio::Waker;
use std::sync::Arc;

/// A snapshot buffer being prepared, or ready.
pub(crate) struct SnapshotBuffer {
    state: State,
    waker: Arc<Waker>,
    me: u32,
}

enum State {
    Idle,
    Preparing(Receiver<Vec<u8>>),
    Ready(Vec<u8>),
}

/// What [`SnapshotBuffer::take`] found.
pub(crate) enum Taken {
    /// A buffer of the length asked for, its pages touched (its bytes are to be written
    /// over).
    Ready(Vec<u8>),
    /// Still being prepared: the shard is woken when it is ready.
    Preparing,
    /// None was asked for, or its thread could not run: the caller allocates one itself.
    Missing,
}

impl SnapshotBuffer {
    /// For shard `me`, whose loop `waker` wakes when a buffer is ready.
    pub(crate) fn new(waker: Arc<Waker>, me: u32) -> Self {
        Self {
            state: State::Idle,
            waker,
            me,
        }
    }

    /// Starts preparing a buffer of `capacity()` bytes, unless one is ready or on its way.
    pub(crate) fn prepare(&mut self, capacity: impl FnOnce() -> usize) {
        if !matches!(self.state, State::Idle) {
            return;
        }
        let capacity = capacity();
        let (ready, receiver) = bounded(1);
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("snapbuf-{}", self.me))
            .spawn(move || {
                // The least priority: touching the pages is work the shard and its log
                // writer must not wait for (the snapshot waits for it instead).
                let _ = fastpay_udp::lower_thread_priority();
                if ready.send(touched(capacity)).is_ok() {
                    let _ = waker.wake();
                }
            });
        match spawned {
            Ok(_) => self.state = State::Preparing(receiver),
            Err(e) => tracing::warn!(
                shard = self.me,
                "shard {}: cannot prepare a snapshot buffer ({e}); the shard allocates it",
                self.me
            ),
        }
    }

    /// The prepared buffer, if it is ready (it is then taken).
    pub(crate) fn take(&mut self) -> Taken {
        if let State::Preparing(receiver) = &self.state {
            match receiver.try_recv() {
                Ok(buffer) => self.state = State::Ready(buffer),
                Err(TryRecvError::Empty) => return Taken::Preparing,
                Err(TryRecvError::Disconnected) => self.state = State::Idle,
            }
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready(buffer) => Taken::Ready(buffer),
            State::Idle | State::Preparing(_) => Taken::Missing,
        }
    }
}

/// A buffer of `capacity` bytes, every page of it written, so the kernel backs them now, on
/// this thread, rather than one fault at a time while the shard encodes over them.
fn touched(capacity: usize) -> Vec<u8> {
    // Not zeros: a zeroed allocation may be the kernel's shared zero page until written.
    vec![0xa5; capacity]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn a_prepared_buffer_arrives_at_its_length_once_and_wakes_the_shard() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut buffer = SnapshotBuffer::new(waker, 0);
        assert!(
            matches!(buffer.take(), Taken::Missing),
            "none was asked for"
        );
        buffer.prepare(|| 1 << 20);
        buffer.prepare(|| unreachable!("one is on its way"));
        let mut events = Events::with_capacity(4);
        let prepared = loop {
            match buffer.take() {
                Taken::Ready(prepared) => break prepared,
                Taken::Preparing => {
                    poll.poll(&mut events, Some(Duration::from_secs(1)))
                        .unwrap();
                }
                Taken::Missing => panic!("the buffer was lost"),
            }
        };
        assert_eq!(prepared.len(), 1 << 20);
        assert!(matches!(buffer.take(), Taken::Missing), "taken once");
    }
}
