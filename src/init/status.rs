//! Pure decisions of the init: which signal to forward, which status to exit with.
//!
//! Kept apart from the event loop so that each rule is a small function with unit tests.

use std::io;

/// The status for a CMD that could not be started, as a shell reports it: 127 when it
/// does not exist (ENOENT, or a path through a non-directory), 126 for every other exec
/// failure (not executable, a directory, bad format...).
pub fn spawn_failure(err: &io::Error) -> i32 {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => 127,
        _ => 126,
    }
}

/// A human description of a spawn error without std's "(os error N)" suffix.
pub fn describe_spawn_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

/// `--remap-exit FROM:TO`: the first pair whose FROM matches wins.
pub fn remap_exit(status: i32, pairs: &[(u8, u8)]) -> i32 {
    pairs
        .iter()
        .find(|(from, _)| i32::from(*from) == status)
        .map_or(status, |(_, to)| i32::from(*to))
}

/// `--rewrite FROM:TO`: the first pair whose FROM matches wins.
pub fn rewrite_signal(signal: i32, pairs: &[(i32, i32)]) -> i32 {
    pairs
        .iter()
        .find(|(from, _)| *from == signal)
        .map_or(signal, |(_, to)| *to)
}

/// Signals that mean "stop": they start the grace period (after any rewrite). HUP is
/// not one of them: it means "reload" to nginx, haproxy and apache.
pub fn is_terminating(signal: i32) -> bool {
    matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT)
}

/// Where a forwarded signal goes (unless `--single-child`: the main child only). The
/// terminating ones (after `--rewrite`) go to the service's whole process group, so a
/// shell entrypoint that did not `exec` still gets its children stopped; every other
/// one to the main child only, as tini and the legacy supervisor did: a master process
/// (php-fpm, apache) passes reload/reopen signals on itself, and its workers may die of
/// a stray USR1. `--signal-group` (`all`) sends every signal to the group (dumb-init).
pub fn to_group(signal: i32, all: bool) -> bool {
    all || is_terminating(signal)
}

/// Job-control stops a terminal sends to its foreground process group.
pub fn is_tty_stop(signal: i32) -> bool {
    matches!(signal, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

/// A signal's name for logs (`SIGTERM`), or its number for real-time signals.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_failures_follow_the_shell() {
        assert_eq!(
            spawn_failure(&io::Error::from_raw_os_error(libc::ENOENT)),
            127
        );
        assert_eq!(
            spawn_failure(&io::Error::from_raw_os_error(libc::ENOTDIR)),
            127
        );
        assert_eq!(
            spawn_failure(&io::Error::from_raw_os_error(libc::EACCES)),
            126
        );
        assert_eq!(
            spawn_failure(&io::Error::from_raw_os_error(libc::ENOEXEC)),
            126
        );
        assert_eq!(
            spawn_failure(&io::Error::from_raw_os_error(libc::EISDIR)),
            126
        );
        assert_eq!(
            describe_spawn_error(&io::Error::from_raw_os_error(libc::ENOENT)),
            "No such file or directory"
        );
    }

    #[test]
    fn remap_first_match_wins() {
        let pairs = [(143, 0), (143, 5), (1, 2)];
        assert_eq!(remap_exit(143, &pairs), 0);
        assert_eq!(remap_exit(1, &pairs), 2);
        assert_eq!(remap_exit(7, &pairs), 7);
        assert_eq!(remap_exit(0, &[]), 0);
    }

    #[test]
    fn rewrite_maps_only_the_named_signal() {
        let pairs = [
            (libc::SIGTERM, libc::SIGQUIT),
            (libc::SIGUSR1, libc::SIGHUP),
        ];
        assert_eq!(rewrite_signal(libc::SIGTERM, &pairs), libc::SIGQUIT);
        assert_eq!(rewrite_signal(libc::SIGUSR1, &pairs), libc::SIGHUP);
        assert_eq!(rewrite_signal(libc::SIGINT, &pairs), libc::SIGINT);
    }

    #[test]
    fn terminating_signals() {
        assert!(is_terminating(libc::SIGTERM));
        assert!(is_terminating(libc::SIGINT));
        assert!(is_terminating(libc::SIGQUIT));
        assert!(!is_terminating(libc::SIGHUP));
        assert!(!is_terminating(libc::SIGUSR1));
        assert!(!is_terminating(libc::SIGWINCH));
        assert!(to_group(libc::SIGTERM, false) && to_group(libc::SIGQUIT, false));
        assert!(!to_group(libc::SIGUSR1, false) && !to_group(libc::SIGHUP, false));
        assert!(to_group(libc::SIGUSR1, true) && to_group(libc::SIGWINCH, true));
        assert!(is_tty_stop(libc::SIGTSTP));
        assert!(!is_tty_stop(libc::SIGSTOP));
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(40), "signal 40");
    }
}
