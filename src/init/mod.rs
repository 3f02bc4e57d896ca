//! supd as PID 1: spawn the service, reap everything, forward signals, shut down.
//!
//! [`run`] is a checklist, in this order:
//! 1. block the handled signals (before any thread exists: threads inherit the mask),
//!    and mark inherited fds close-on-exec ([`spawn::seal_inherited_fds`]);
//! 2. when not PID 1, become the child subreaper so that orphans still reach us;
//! 3. [`drive::supervise`]: spawn the service; only when something in process needs
//!    it (the request socket, a schedule), start the thread that runs them
//!    ([`companion`], with its own tokio runtime); then loop on the signalfd over
//!    signals, the service's exit and the grace deadline until nothing is left. The
//!    init's own thread never runs an async runtime: a plain loop costs a few hundred
//!    instructions per signal or reaped child, where a turn of the runtime costs about
//!    a thousand more.

mod companion;
pub mod drive;
pub mod rules;
pub mod shutdown;
pub mod supervisor;

use std::ffi::OsString;
use std::time::Duration;

use crate::control::server;
use crate::exit;
use crate::sys::{signals, spawn};

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
    spawn::seal_inherited_fds();
    if std::process::id() != 1 {
        become_subreaper();
    }
    drive::supervise(config)
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
