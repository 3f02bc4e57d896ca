//! The loop of the init, over two sources. Two drivers share every decision: without
//! the request socket (`--no-socket`) a plain `ppoll` on the signalfd with the grace
//! deadline as its timeout ([`supervise_plain`]: no runtime at all); with it, the tokio
//! event loop that also serves the socket, where signals are handled from the
//! runtime's park hook, outside any task ([`supervise`], [`on_park`]). Both read every
//! pending signal at once (a batch per `read(2)`) and handle it at once.
//!
//! - the signalfd: SIGCHLD reaps, every other signal is rewritten and forwarded, and a
//!   terminating one (TERM, INT, QUIT after rewrite) starts the grace period. Right
//!   after each reap supd checks whether the main child was among the reaped (not on a
//!   later turn: once reaped, its pid may be reused, and a signal forwarded in between
//!   could hit a stranger). When it was, the rest (callbacks, stragglers) get SIGTERM
//!   and the grace period starts, if it has not already;
//! - the grace deadline, a timer that exists only while shutting down (an idle supd
//!   makes no wakeups): SIGKILL to everything left, retried (100 ms, doubling up to 5 s)
//!   until the last child is reaped.
//!
//! Exit condition, checked at the top of every turn: the main child has exited AND supd
//! has no child left (alive or zombie). Because supd is PID 1 or a subreaper, "no child"
//! means nothing is left anywhere below it: supd never exits while it still has
//! children, and never hangs once they are all gone.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::supervisor::Supervisor;
use super::Config;
use crate::control::server::{self, ServerContext};
use crate::exit;
use crate::sys::reaper::Reaper;
use crate::sys::signals::{empty_batch, Batch, SignalFd, Signals, BATCH};

/// Supervise without an event loop (no request socket, nothing else in process): the
/// signalfd is polled directly, with the grace deadline as the timeout. Returns supd's
/// exit status.
pub fn supervise_plain(config: Config) -> i32 {
    let signals = match SignalFd::new() {
        Ok(signals) => signals,
        Err(err) => {
            crate::error!("cannot create the signalfd", error = err);
            return exit::FAILURE;
        }
    };
    let mut supervisor = match Supervisor::start(&config, Rc::new(Reaper::new())) {
        Ok(supervisor) => supervisor,
        Err(code) => return code,
    };
    let mut batch = empty_batch();
    let code = loop {
        if let Some(code) = supervisor.finished() {
            break code;
        }
        let timeout = supervisor
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match signals
            .wait(timeout)
            .and_then(|_| signals.read_batch(&mut batch))
        {
            Ok(count) => {
                if let Some(code) = supervisor.on_signals(&batch[..count]) {
                    break code;
                }
            }
            Err(err) => {
                // Should never happen; do not spin on it.
                crate::error!("cannot read signals", error = err);
                supervisor.reap();
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        if supervisor
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            supervisor.on_deadline();
        }
    };
    supervisor.exit_status(code, &config)
}

/// Spawn the service, start the request socket and supervise both until everything
/// below supd is gone. Returns supd's exit status. Runs inside a current-thread runtime
/// built with [`on_park`] as its park hook (`sys::event_loop_with_park`), and a
/// `LocalSet`.
///
/// Signals never wake a task: the signalfd is registered with the runtime (so that a
/// signal wakes it from epoll) but nobody awaits it; [`on_park`] reads and handles it
/// right before the runtime blocks and right after it wakes, with the state in [`HOT`].
/// The main future below is woken only when supd may leave or the grace deadline
/// changed. A turn of the runtime through a task (the `select!` of before) cost ~1,500
/// instructions per signal more.
pub async fn supervise(config: Config) -> i32 {
    let signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => {
            crate::error!("cannot create the signalfd", error = err);
            return exit::FAILURE;
        }
    };
    let reaper = Rc::new(Reaper::new());
    let mut supervisor = match Supervisor::start(&config, Rc::clone(&reaper)) {
        Ok(supervisor) => supervisor,
        Err(code) => return code,
    };
    // Started after the spawn and the registration of its waiter (no .await between).
    let server = config.server.clone().and_then(|server_config| {
        let context = ServerContext {
            config: server_config,
            reaper: Rc::clone(&reaper),
            service_pid: supervisor.service as u32,
            supd_pid: std::process::id(),
        };
        server::start(context)
            .map_err(|err| {
                crate::error!(
                    "request socket unavailable; running the service without it",
                    error = err
                )
            })
            .ok()
    });
    // `--schedule`: the service's own jobs, through the server's executor.
    supervisor.server = crate::schedule::inproc::attach(
        config.schedule.clone(),
        server,
        &reaper,
        supervisor.service as u32,
    );
    HOT.with(|cell| {
        *cell.borrow_mut() = Some(Hot {
            supervisor,
            signals,
            batch: empty_batch(),
            waker: None,
            armed: None,
        })
    });
    let code = until_finished().await;
    let Some(hot) = HOT.with(|cell| cell.borrow_mut().take()) else {
        return exit::FAILURE;
    };
    if let Some(server) = &hot.supervisor.server {
        server.close();
        // Let the request server send the last callbacks' exit events to their
        // clients; a client too slow to read them is not worth delaying the
        // container's stop for. (No wait at all when no client is connected.)
        let _ = tokio::time::timeout(DRAIN_LIMIT, server.drained()).await;
    }
    hot.supervisor.exit_status(code, &config)
}

thread_local! {
    /// The init's state while the event loop runs, reached from the park hook
    /// ([`on_park`]) and from the main future ([`until_finished`]): never both at once
    /// (one thread; the hook never runs while a task is being polled).
    static HOT: RefCell<Option<Hot>> = const { RefCell::new(None) };
}

struct Hot {
    supervisor: Supervisor,
    signals: Signals,
    batch: Batch,
    /// The main future's waker, for when the hook changed what it waits for.
    waker: Option<Waker>,
    /// The deadline the main future's timer is armed for.
    armed: Option<Instant>,
}

impl Hot {
    /// Read and handle every pending signal, without waiting. Returns whether the main
    /// future must look again (supd may be able to leave, or the deadline changed).
    fn drain(&mut self) -> bool {
        loop {
            match self.signals.read_now(&mut self.batch) {
                Ok(0) => break,
                Ok(count) => {
                    // An early finish is seen by the main future.
                    if self.supervisor.on_signals(&self.batch[..count]).is_some() || count < BATCH {
                        break;
                    }
                }
                Err(err) => {
                    // Should never happen; the next signal or wakeup tries again.
                    crate::error!("cannot read signals", error = err);
                    self.supervisor.reap();
                    break;
                }
            }
        }
        self.supervisor.main_status.is_some() || self.supervisor.deadline != self.armed
    }
}

/// The runtime's park hook (before it blocks in epoll, after it wakes): handle every
/// pending signal here, outside any task. Before blocking, so that a signal whose
/// epoll event a non-blocking turn of the runtime consumed is not left waiting; after
/// waking, for the signal that woke it. Wakes the main future only when it has
/// something to do.
pub(crate) fn on_park() {
    HOT.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        let Some(hot) = guard.as_mut() else {
            return;
        };
        if hot.drain() {
            if let Some(waker) = &hot.waker {
                waker.wake_by_ref();
            }
        }
    });
}

/// The main future: the exit condition and the grace deadline (a timer that exists
/// only while shutting down). Also reads the signalfd each time it is polled: while
/// the `LocalSet` is busy the runtime turns without parking, and this poll comes first.
async fn until_finished() -> i32 {
    let mut sleep: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        HOT.with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            };
            let Some(hot) = guard.as_mut() else {
                return Poll::Ready(exit::FAILURE);
            };
            if !hot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                hot.waker = Some(cx.waker().clone());
            }
            hot.drain();
            loop {
                if let Some(code) = hot.supervisor.finished() {
                    return Poll::Ready(code);
                }
                let Some(deadline) = hot.supervisor.deadline else {
                    sleep = None;
                    hot.armed = None;
                    return Poll::Pending;
                };
                let timer = match &mut sleep {
                    Some(timer) if hot.armed == Some(deadline) => timer,
                    Some(timer) => {
                        timer.as_mut().reset(deadline.into());
                        timer
                    }
                    None => sleep.insert(Box::pin(tokio::time::sleep_until(deadline.into()))),
                };
                hot.armed = Some(deadline);
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                hot.supervisor.on_deadline();
            }
        })
    })
    .await
}

/// How long supd waits at exit for clients to receive their final events.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
