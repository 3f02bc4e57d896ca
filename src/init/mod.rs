//! supd as PID 1: spawn the service, reap everything, forward signals, shut down.
//!
//! [`run`] is a checklist, in this order:
//! 1. block the handled signals (before any thread exists: threads inherit the mask);
//! 2. when not PID 1, become the child subreaper so that orphans still reach us;
//! 3. only when something in process needs it (the request socket): a current-thread
//!    tokio runtime and a `LocalSet` (no extra threads), whose park hook handles the
//!    signals without waking a task. Without it supd runs no runtime at all: a plain
//!    loop on the signalfd costs a few hundred instructions per signal or reaped child,
//!    where a turn of the runtime costs about a thousand;
//! 4. [`supervisor::supervise`] (or [`drive::supervise_plain`]): spawn the service,
//!    start the request socket, and loop over signals, the service's exit and the grace
//!    deadline until nothing is left.

pub mod drive;
pub mod rules;
pub mod shutdown;
pub mod supervisor;

use std::ffi::OsString;
use std::time::Duration;

use crate::control::server;
use crate::exit;
use crate::sys::signals;

/// The entrypoint run when no CMD is given (the legacy personality contract).
pub const DEFAULT_ENTRYPOINT: &str = "/usr/local/sbin/entrypoint.sh";

/// The init's settings, as the command line gave them (built by `cli`).
#[derive(Clone, Debug)]
pub struct Config {
    /// The service entrypoint and its arguments; empty: [`DEFAULT_ENTRYPOINT`].
    pub cmd: Vec<OsString>,
    /// Time between the terminating signal and SIGKILL of everything left.
    pub grace: Duration,
    /// Forward every signal, TERM included, to the main child only.
    pub single_child: bool,
    /// Forward every signal to the service's whole group (default: only TERM, INT and
    /// QUIT; every other signal to the main child, see `rules::to_group`).
    pub signal_group: bool,
    /// Map a received signal to another before forwarding (first match wins).
    pub rewrite: Vec<(i32, i32)>,
    /// Map the service's exit status to another (first match wins).
    pub remap_exit: Vec<(u8, u8)>,
    /// The request socket; `None` with `--no-socket`.
    pub server: Option<server::Config>,
    /// `--schedule`: the service's own jobs, run in this supd (DESIGN §5).
    pub schedule: Option<crate::schedule::InProcess>,
}

/// Run as the container's init; returns supd's exit status.
pub fn run(config: Config) -> i32 {
    if let Err(err) = signals::block_all() {
        crate::error!("cannot block signals", error = err);
        return exit::FAILURE;
    }
    if std::process::id() != 1 {
        become_subreaper();
    }
    if !needs_event_loop(&config) {
        return drive::supervise_plain(config);
    }
    let runtime = match crate::sys::event_loop_with_park(drive::on_park) {
        Ok(runtime) => runtime,
        Err(err) => {
            crate::error!("cannot start the event loop", error = err);
            return exit::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&runtime, drive::supervise(config));
    // supd exits right after this: every child is gone and the socket file is unlinked,
    // so tearing the runtime down (deregistering and closing each fd, freeing every
    // task) would only delay the container's stop. The process exit closes the fds.
    std::mem::forget(local);
    std::mem::forget(runtime);
    code
}

/// Whether anything besides the init itself runs in process: the request socket (and
/// any later in-process feature, e.g. a schedule: add it here). The init's own work
/// never needs the event loop.
fn needs_event_loop(config: &Config) -> bool {
    config.server.is_some() || config.schedule.is_some()
}

/// Without PID 1 or this flag, orphans of the service escape to the host's reaper and
/// their zombies are not ours to collect. The flag is per process and not inherited.
fn become_subreaper() {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        crate::debug!("not PID 1: acting as child subreaper");
    } else {
        crate::warn!(
            "not PID 1 and cannot become child subreaper: orphans will not be reaped \
             (run supd as PID 1, e.g. as the container's ENTRYPOINT)",
            error = std::io::Error::last_os_error()
        );
    }
}
