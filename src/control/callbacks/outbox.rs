//! The queue between a run and the connection that asked for it.

use std::cell::RefCell;

use tokio::sync::Notify;

use crate::control::protocol::Event;

/// What a client may have queued and not yet read before it is dropped.
pub const OUTBOX_LIMIT: usize = 1 << 20;

/// The queue between a run and the connection that asked for it, bounded in bytes.
/// Single-threaded: the run pushes, the connection drains.
#[derive(Default)]
pub struct Outbox {
    state: RefCell<OutboxState>,
    /// Wakes the connection: new data, overflow, or the run finished.
    pub changed: Notify,
    /// Wakes a connection blocked in write: the client fell too far behind.
    pub dropped: Notify,
}

#[derive(Default)]
struct OutboxState {
    buf: Vec<u8>,
    /// The final event is queued; nothing more comes.
    finished: bool,
    /// The client fell more than [`OUTBOX_LIMIT`] behind and is being dropped.
    overflowed: bool,
    /// The connection is gone; stop queueing.
    gone: bool,
}

/// What the connection side finds when it looks.
pub enum Take {
    Data(Vec<u8>),
    Wait,
    Finished,
    Overflowed,
}

impl Outbox {
    /// Queue an event; returns false once the client is no longer served.
    pub fn push(&self, event: &Event) -> bool {
        let mut state = self.state.borrow_mut();
        if state.gone || state.overflowed {
            return false;
        }
        let line = event.to_line();
        let ok = if state.buf.len() + line.len() > OUTBOX_LIMIT && !event.is_final() {
            state.overflowed = true;
            state.buf = Vec::new();
            self.dropped.notify_one();
            false
        } else {
            state.buf.extend_from_slice(line.as_bytes());
            true
        };
        if event.is_final() {
            state.finished = true;
        }
        drop(state);
        self.changed.notify_one();
        ok
    }

    pub fn take(&self) -> Take {
        let mut state = self.state.borrow_mut();
        if state.overflowed {
            Take::Overflowed
        } else if !state.buf.is_empty() {
            Take::Data(std::mem::take(&mut state.buf))
        } else if state.finished {
            Take::Finished
        } else {
            Take::Wait
        }
    }

    pub fn overflowed(&self) -> bool {
        self.state.borrow().overflowed
    }

    /// The connection went away (or stopped listening after `started`).
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.gone = true;
        state.buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_is_bounded() {
        let outbox = Outbox::default();
        let line = Event::Stdout {
            line: "x".repeat(1000),
        };
        let mut pushed = 0;
        while outbox.push(&line) {
            pushed += 1;
        }
        assert!(pushed > 900 && pushed < 1100, "{pushed}");
        assert!(matches!(outbox.take(), Take::Overflowed));
        let outbox = Outbox::default();
        assert!(outbox.push(&line));
        assert!(matches!(outbox.take(), Take::Data(d) if d.len() > 1000));
        assert!(matches!(outbox.take(), Take::Wait));
        outbox.push(&Event::Exit {
            code: 0,
            duration_ms: 1,
            signal: None,
        });
        assert!(matches!(outbox.take(), Take::Data(_)));
        assert!(matches!(outbox.take(), Take::Finished));
    }
}
