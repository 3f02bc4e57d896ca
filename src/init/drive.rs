//! The loop of the init, over two sources, in a plain `ppoll` on the signalfd with the
//! next timer as its timeout: no async runtime on this thread (the request server
//! and the schedule have their own, on their own thread: `companion`). Every pending
//! signal is read at once (a batch per `read(2)`) and handled at once.
//!
//! - the signalfd: SIGCHLD reaps, every other signal is rewritten and forwarded, and a
//!   terminating one (TERM, INT, QUIT after rewrite) starts the grace period. Right
//!   after each reap supd checks whether the main child was among the reaped (not on a
//!   later turn: once reaped, its pid may be reused, and a signal forwarded in between
//!   could hit a stranger). When it was, the rest (callbacks, stragglers) get SIGTERM
//!   and the grace period starts, if it has not already;
//! - the timers, which exist only while shutting down (an idle supd makes no wakeups):
//!   10 ms after a terminating signal, SIGCONT to stopped processes that got it; at the
//!   grace deadline, SIGKILL to everything left, retried (100 ms, doubling up to 5 s)
//!   until the last child is reaped.
//!
//! Exit condition, checked at the top of every turn: the main child has exited AND supd
//! has no child left (alive or zombie). Because supd is PID 1 or a subreaper, "no child"
//! means nothing is left anywhere below it: supd never exits while it still has
//! children, and never hangs once they are all gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::companion::Companion;
use super::supervisor::Supervisor;
use super::Config;
use crate::exit;
use crate::sys::reaper::Reaper;
use crate::sys::signals::{empty_batch, SignalFd};

/// Spawn the service, start the request server's thread (if there is a socket or a
/// schedule) and supervise everything below supd until it is gone: the signalfd is
/// polled directly, with the next timer as the timeout. Returns supd's exit status.
pub fn supervise(config: Config) -> i32 {
    let signals = match SignalFd::new() {
        Ok(signals) => signals,
        Err(err) => {
            crate::error!("cannot create the signalfd", error = err);
            return exit::FAILURE;
        }
    };
    let reaper = Arc::new(Reaper::new());
    let mut supervisor = match Supervisor::start(&config, Arc::clone(&reaper)) {
        Ok(supervisor) => supervisor,
        Err(code) => return code,
    };
    supervisor.server = Companion::start(&config, &reaper, supervisor.service as u32);
    let mut batch = empty_batch();
    let code = loop {
        if let Some(code) = supervisor.finished() {
            break code;
        }
        let timeout = supervisor
            .next_timer()
            .map(|at| at.saturating_duration_since(Instant::now()));
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
        supervisor.on_timers();
    };
    if let Some(server) = supervisor.server.take() {
        server.finish();
        // Not dropped: the drop of its channel would wake the thread for nothing, just
        // before the process exit has to stop it.
        std::mem::forget(server);
    }
    // The process exit closes it; a close(2) here would only delay the container's stop.
    std::mem::forget(signals);
    supervisor.exit_status(code, &config)
}
