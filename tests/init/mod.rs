//! supd as PID 1 (in a fresh PID namespace) and as a subreaper (run directly): exit
//! statuses, signal forwarding, reaping, the grace period, the child's clean state,
//! logging and idleness, and interactive use under a pty.

mod clean_slate;
mod exit_status;
mod no_proc;
mod quiet;
mod reaping;
mod shutdown;
mod signals;
mod tty;

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Guarded, Mode, Supd};

/// The command line that starts supd in `mode`, without the socket (tests run in parallel).
fn supd_command(mode: Mode) -> Command {
    let mut command = mode.command();
    command.arg("--no-socket");
    command
}

/// Start supd in `mode` without the socket, with the arguments `configure` adds.
fn start(mode: Mode, configure: impl FnOnce(&mut Command)) -> Supd {
    Supd::start(mode, |c| {
        c.arg("--no-socket");
        configure(c);
    })
}

/// Run supd to completion with `args`; (exit code, stderr). A supd still running after
/// 30 s fails the test (and is killed with its tree) instead of hanging the suite.
fn run(mode: Mode, args: &[&str]) -> (i32, String) {
    let mut child = Guarded::spawn(
        supd_command(mode)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut stderr = child.stderr.take().expect("piped stderr");
    // EOF once supd and everything that inherited its stderr are gone.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = child.wait_exit(Duration::from_secs(30), "supd to exit");
    let code = status
        .code()
        .unwrap_or_else(|| panic!("supd died: {status:?}"));
    (code, reader.join().unwrap())
}
