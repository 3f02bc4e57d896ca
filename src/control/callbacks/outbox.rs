//! The queue between a run and the connection that asked for it.
//!
//! Backpressure, not loss: once [`OUTBOX_LIMIT`] bytes wait in the queue, the run stops
//! reading the callback's pipes (the callback then blocks in `write`, as it would on a
//! terminal) until the connection takes them. A client that makes no progress at all
//! for [`CLIENT_STALL`] while the queue is full is dropped, and the run reads on (to the
//! log only), so a client that stopped reading delays the callback by that much at most.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::control::protocol::Event;

/// How much may wait for a client before the run pauses its reading.
pub const OUTBOX_LIMIT: usize = 1 << 20;

/// A client that writes nothing off the socket for this long while its queue is full is
/// dropped (it stopped reading; a slow reader that makes progress is never dropped).
pub const CLIENT_STALL: Duration = Duration::from_secs(5);

/// The queue between a run and the connection that asked for it, bounded in bytes.
/// Single-threaded: the run pushes, the connection drains.
pub struct Outbox {
    state: RefCell<OutboxState>,
    /// Wakes the connection: new data, a drop, or the run finished.
    pub changed: Notify,
    /// Wakes a connection blocked in write: the client stopped reading and is dropped.
    pub dropped: Notify,
    /// Wakes the run waiting for room: the connection took the queue.
    pub drained: Notify,
}

struct OutboxState {
    buf: Vec<u8>,
    /// The final event is queued; nothing more comes.
    finished: bool,
    /// The client stopped reading and is being dropped.
    dropped: bool,
    /// The connection is gone; stop queueing.
    gone: bool,
    /// When the connection last took data or wrote some to the client.
    progress: Instant,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox {
            state: RefCell::new(OutboxState {
                buf: Vec::new(),
                finished: false,
                dropped: false,
                gone: false,
                progress: Instant::now(),
            }),
            changed: Notify::new(),
            dropped: Notify::new(),
            drained: Notify::new(),
        }
    }
}

/// What the connection side finds when it looks.
pub enum Take {
    Data(Vec<u8>),
    Wait,
    Finished,
    Dropped,
}

impl Outbox {
    /// Queue an event; returns false once the client is no longer served. Never refuses
    /// for size: the run checks [`is_full`](Self::is_full) before it reads more.
    pub fn push(&self, event: &Event) -> bool {
        let mut state = self.state.borrow_mut();
        if state.gone || state.dropped {
            return false;
        }
        state.buf.extend_from_slice(event.to_line().as_bytes());
        if event.is_final() {
            state.finished = true;
        }
        drop(state);
        self.changed.notify_one();
        true
    }

    /// At least [`OUTBOX_LIMIT`] bytes wait: read no more output until they drain.
    pub fn is_full(&self) -> bool {
        let state = self.state.borrow();
        !state.gone && !state.dropped && state.buf.len() >= OUTBOX_LIMIT
    }

    /// When the connection last made progress (took data, or wrote some).
    pub fn progress(&self) -> Instant {
        self.state.borrow().progress
    }

    /// The connection wrote some bytes to its client.
    pub fn wrote(&self) {
        self.state.borrow_mut().progress = Instant::now();
    }

    /// The client stopped reading: drop it (the run reads on without it).
    pub fn drop_client(&self) {
        let mut state = self.state.borrow_mut();
        state.dropped = true;
        state.buf = Vec::new();
        drop(state);
        self.dropped.notify_one();
        self.changed.notify_one();
    }

    pub fn take(&self) -> Take {
        let mut state = self.state.borrow_mut();
        if state.dropped {
            Take::Dropped
        } else if !state.buf.is_empty() {
            state.progress = Instant::now();
            let data = std::mem::take(&mut state.buf);
            drop(state);
            // `notify_one` keeps a permit when the run is not waiting yet.
            self.drained.notify_one();
            Take::Data(data)
        } else if state.finished {
            Take::Finished
        } else {
            Take::Wait
        }
    }

    /// The connection went away (or stopped listening after `started`).
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.gone = true;
        state.buf = Vec::new();
        drop(state);
        self.drained.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_fills_drains_and_drops() {
        let outbox = Outbox::default();
        let line = Event::Stdout {
            line: "x".repeat(1000),
        };
        let mut pushed = 0;
        while !outbox.is_full() {
            assert!(outbox.push(&line));
            pushed += 1;
        }
        assert!(pushed > 900 && pushed < 1100, "{pushed}");
        assert!(matches!(outbox.take(), Take::Data(d) if d.len() >= OUTBOX_LIMIT));
        assert!(!outbox.is_full());
        assert!(matches!(outbox.take(), Take::Wait));
        outbox.push(&Event::Exit {
            code: 0,
            duration_ms: 1,
            signal: None,
        });
        assert!(matches!(outbox.take(), Take::Data(_)));
        assert!(matches!(outbox.take(), Take::Finished));

        let outbox = Outbox::default();
        assert!(outbox.push(&line));
        outbox.drop_client();
        assert!(!outbox.push(&line));
        assert!(!outbox.is_full());
        assert!(matches!(outbox.take(), Take::Dropped));
    }
}
