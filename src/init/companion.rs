//! The request server and the in-process schedule (everything in supd that is not the
//! init itself) run on a thread of their own, in a current-thread tokio runtime, so
//! that the init's loop ([`super::drive::supervise`]) stays a plain `ppoll` on the
//! signalfd whether the socket is open or not: a forwarded signal or a reaped orphan
//! costs a few hundred instructions, where a turn of the runtime on the init's thread
//! cost about a thousand more (see bench/RESULTS.md, "Lean PID 1").
//!
//! What the two threads share: the one [`Reaper`] (the init reaps; the server spawns
//! through [`Reaper::spawn`], which registers the waiter under the registry's lock, so a
//! callback that exits at once is never reaped before its waiter exists), the
//! [`server::Shared`] view (the socket file, the number of clients and of runs) and the
//! log. At a terminating signal (and, if none came, when the service exits) the init
//! closes, itself and at once: no child may start any more ([`Reaper::refuse_spawns`]:
//! the shutdown walk that follows would miss it), the socket file is unlinked and its
//! lock released; then it tells the server ([`Phase::Closed`]: stop accepting, drop the
//! requests half read), whose thread ends as soon as no client and no run is left
//! (without a schedule), while the service is still stopping. When nothing is left
//! below supd and a client is still connected, a run's end is unrecorded or a schedule
//! runs (whose last results the server records), it asks the server to let the clients
//! read their exit events and waits for the answer, at most [`DRAIN_LIMIT`]
//! ([`Phase::Leaving`]); otherwise it leaves without waking the thread: a round trip
//! between CPUs is ~100 µs of a container's stop on a VM.
//!
//! Signals stay the init's alone: every signal is blocked before this thread starts
//! (threads inherit the mask; `sys::thread::spawn` blocks again the 32-34 that the libcs
//! unblock on the way), so a process-directed signal waits in the process's queue until
//! the init reads its signalfd. Children the server spawns are the process's:
//! the init's `waitpid(-1)` collects them (a thread may wait for its siblings'
//! children), their /proc `PPid` is supd's pid and the shutdown walk finds them. Only
//! /proc/PID/task/TID/children is per thread: it lists them under this thread's TID.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Config;
use crate::control::server::{self, ServerContext, Shared};
use crate::sys::reaper::Reaper;

/// How long supd waits at exit for clients to receive their final events.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// How far the init has got: only ever moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// The service exited: no new callback; those running go on.
    Closed,
    /// Nothing is left below supd: drain the clients and answer.
    Leaving,
}

/// The init's handle on the server thread.
pub(super) struct Companion {
    phase: watch::Sender<Phase>,
    /// One message (or a hang-up, if the thread died) once the clients are drained.
    drained: mpsc::Receiver<()>,
    shared: Arc<Shared>,
    reaper: Arc<Reaper>,
    /// An in-process schedule runs on the thread: its last results must be recorded.
    schedule: bool,
}

impl Companion {
    /// Start the server thread when the config asks for a socket or a schedule. The
    /// service is already running (its pid is in `status` and in the schedule's
    /// `$SUPD_SERVICE_PID`). Failures are logged; the service runs on without them.
    pub(super) fn start(config: &Config, reaper: &Arc<Reaper>, service_pid: u32) -> Option<Self> {
        if config.server.is_none() && config.schedule.is_none() {
            return None;
        }
        let (phase, phase_seen) = watch::channel(Phase::Serving);
        let (drained_tx, drained) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared::default());
        let work = Work {
            shared: Arc::clone(&shared),
            server: config.server.clone(),
            schedule: config.schedule.clone(),
            reaper: Arc::clone(reaper),
            service_pid,
        };
        let spawned = crate::sys::thread::spawn("supd-server", move || {
            work.run(phase_seen);
            let _ = drained_tx.send(());
        });
        match spawned {
            Ok(_) => Some(Companion {
                phase,
                drained,
                shared,
                reaper: Arc::clone(reaper),
                schedule: config.schedule.is_some(),
            }),
            Err(err) => {
                crate::error!(
                    "cannot start the request server's thread; running the service without it",
                    error = err
                );
                None
            }
        }
    }

    /// The service exited: no new callback, the socket unlinked, no more accepting.
    /// Callbacks that run go on (the shutdown walk that follows signals them).
    ///
    /// The thread is woken only when it has something to stop (a client connected, a
    /// schedule): with the socket unlinked and spawns refused, the most it could do
    /// otherwise is answer a client still in the listen backlog, and supd's exit would
    /// have to stop a thread it had just woken for nothing.
    pub(super) fn close(&self) {
        self.reaper.refuse_spawns();
        self.shared.remove_socket();
        if self.schedule || self.shared.connections() > 0 {
            self.advance(Phase::Closed);
        }
    }

    /// A terminating signal went to the service: supd stops taking requests now, as a
    /// server that drains does (a request started now would get its TERM within the
    /// grace period; refused, its client knows it did not run, and during a rolling
    /// update the next supd takes the socket and its lock at once). The same as
    /// [`close`](Self::close), and the thread is always told: with no client and no
    /// schedule it leaves at once, while the service is still stopping, so that supd's
    /// exit has one thread to end, not two (bench/RESULTS.md, after-drain).
    pub(super) fn close_at_shutdown(&self) {
        self.reaper.refuse_spawns();
        self.shared.remove_socket();
        self.advance(Phase::Closed);
    }

    /// Nothing is left below supd: wait (bounded) until the last callbacks' exit
    /// events have reached their clients and the socket is gone.
    pub(super) fn finish(&self) {
        // Nothing to wait for: no client, no callback's end to record (a `--no-wait`
        // run's), no schedule, no socket being bound (closed already, nothing binds
        // after: `Shared::try_bind`).
        let shared = &self.shared;
        if !self.schedule && shared.connections() == 0 && shared.runs() == 0 && !shared.binding() {
            return;
        }
        self.advance(Phase::Leaving);
        // The thread's own drain is bounded by DRAIN_LIMIT; the margin covers its
        // wakeup. A thread that died has dropped its sender: no wait at all.
        let _ = self
            .drained
            .recv_timeout(DRAIN_LIMIT + Duration::from_millis(100));
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|phase| {
            let moved = *phase < to;
            *phase = (*phase).max(to);
            moved
        });
    }
}

/// What the server thread runs: everything it needs, moved onto it.
struct Work {
    shared: Arc<Shared>,
    server: Option<server::Config>,
    schedule: Option<crate::schedule::InProcess>,
    reaper: Arc<Reaper>,
    service_pid: u32,
}

impl Work {
    fn run(self, mut phase: watch::Receiver<Phase>) {
        let runtime = match crate::sys::event_loop() {
            Ok(runtime) => runtime,
            Err(err) => {
                crate::error!(
                    "cannot start the event loop; running the service without the request socket",
                    error = err
                );
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        let has_schedule = self.schedule.is_some();
        local.block_on(&runtime, async move {
            let server = self.server.and_then(|config| {
                let context = ServerContext {
                    config,
                    shared: Arc::clone(&self.shared),
                    reaper: Arc::clone(&self.reaper),
                    service_pid: self.service_pid,
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
            let server = crate::schedule::inproc::attach(
                self.schedule,
                server,
                &self.shared,
                &self.reaper,
                self.service_pid,
            );
            // A dropped sender (the init is gone) counts as leaving.
            let _ = phase.wait_for(|phase| *phase >= Phase::Closed).await;
            if let Some(server) = &server {
                server.close();
                // One turn for the LocalSet: the aborted accept task is dropped, and
                // with it the listener (clients still in its backlog get a reset, not a
                // wait until supd's exit). `block_on` polls this future first.
                tokio::task::yield_now().await;
            }
            if !has_schedule {
                // Nothing can connect any more: once no client and no callback is left
                // there is nothing to do here, and the thread ends (a schedule's last
                // results are recorded at Leaving).
                let idle = async {
                    if let Some(server) = &server {
                        server.idle().await;
                    }
                };
                tokio::select! {
                    biased;
                    _ = phase.wait_for(|phase| *phase >= Phase::Leaving) => {}
                    () = idle => return,
                }
            }
            let _ = phase.wait_for(|phase| *phase >= Phase::Leaving).await;
            if let Some(server) = &server {
                // A client too slow to read its last events is not worth delaying the
                // container's stop for. (No wait at all when no client is connected.)
                let _ = tokio::time::timeout(DRAIN_LIMIT, server.idle()).await;
            }
        });
        // supd exits right after this: tearing the runtime down (deregistering and
        // closing each fd, freeing every task) would only compete with that exit.
        std::mem::forget(local);
        std::mem::forget(runtime);
    }
}
