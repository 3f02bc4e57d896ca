//! Every exit status supd, supctl and the scheduler return, in one place.
//!
//! The numbers follow the conventions their users already script against: clap's 2
//! for a bad command line, sysexits.h (64-78) for request and service errors, GNU
//! `timeout`'s 124, the shell's 126/127 for a command that cannot run and 128+N for
//! death by signal N. docs/DESIGN.md lists which face returns which.

use std::io;

pub const SUCCESS: i32 = 0;
/// A generic failure (supd itself could not start: no signalfd, no event loop).
pub const FAILURE: i32 = 1;
/// A bad command line: clap's own status, used for what clap cannot check too.
pub const USAGE: i32 = 2;
/// sysexits.h EX_USAGE: a request the server refuses as malformed (unknown action,
/// bad request), or a supctl argument that cannot form a request.
pub const EX_USAGE: i32 = 64;
/// sysexits.h EX_DATAERR: an invalid schedule file.
pub const EX_DATAERR: i32 = 65;
/// sysexits.h EX_NOINPUT: a schedule file that cannot be read.
pub const EX_NOINPUT: i32 = 66;
/// sysexits.h EX_UNAVAILABLE: the service's socket is absent or refuses connections.
pub const EX_UNAVAILABLE: i32 = 69;
/// sysexits.h EX_SOFTWARE: an internal error (the connection broke, a bad reply).
pub const EX_SOFTWARE: i32 = 70;
/// sysexits.h EX_TEMPFAIL: the action is already running (busy).
pub const EX_TEMPFAIL: i32 = 75;
/// sysexits.h EX_PROTOCOL: the server is not one to believe. The process listening on
/// the socket (SO_PEERCRED) is neither root, nor the `--server-uid`, nor (for a client
/// that is not root) the client's own uid: an impostor squatting on the socket's name.
/// The client sent it nothing.
pub const EX_PROTOCOL: i32 = 76;
/// sysexits.h EX_NOPERM: the server denied the request.
pub const EX_NOPERM: i32 = 77;
/// GNU timeout(1): a deadline passed (the callback's, or supctl's --timeout).
pub const TIMEOUT: i32 = 124;
/// The shell's status for a command found but not executable.
pub const CANNOT_EXECUTE: i32 = 126;
/// The shell's status for a command not found.
pub const NOT_FOUND: i32 = 127;

/// The shell's status for death by signal N: 128+N, in 0-255.
pub fn signalled(signal: i32) -> i32 {
    (128 + signal) & 0xff
}

/// The status for a CMD that could not be started, as a shell reports it: 127 when it
/// does not exist (ENOENT, or a path through a non-directory), 126 for every other exec
/// failure (not executable, a directory, bad format...).
pub fn spawn_failure(err: &io::Error) -> i32 {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => NOT_FOUND,
        _ => CANNOT_EXECUTE,
    }
}

/// `--remap-exit FROM:TO`: the first pair whose FROM matches wins.
pub fn remap(status: i32, pairs: &[(u8, u8)]) -> i32 {
    pairs
        .iter()
        .find(|(from, _)| i32::from(*from) == status)
        .map_or(status, |(_, to)| i32::from(*to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_failures_follow_the_shell() {
        let status = |errno| spawn_failure(&io::Error::from_raw_os_error(errno));
        assert_eq!(status(libc::ENOENT), 127);
        assert_eq!(status(libc::ENOTDIR), 127);
        assert_eq!(status(libc::EACCES), 126);
        assert_eq!(status(libc::ENOEXEC), 126);
        assert_eq!(status(libc::EISDIR), 126);
    }

    #[test]
    fn remap_first_match_wins() {
        let pairs = [(143, 0), (143, 5), (1, 2)];
        assert_eq!(remap(143, &pairs), 0);
        assert_eq!(remap(1, &pairs), 2);
        assert_eq!(remap(7, &pairs), 7);
        assert_eq!(remap(0, &[]), 0);
    }

    #[test]
    fn signalled_wraps_like_the_shell() {
        assert_eq!(signalled(libc::SIGTERM), 143);
        assert_eq!(signalled(64), 192);
    }
}
