//! Pure decisions of the init: which signal to forward, and what it means.
//!
//! Kept apart from the event loop so that each rule is a small function with unit tests.

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
/// Job-control signals (TSTP, TTIN, TTOU, CONT) go to the group too: a terminal sends
/// them to its whole foreground group, and stopping or continuing half a job is never
/// what Ctrl-Z or `fg` means.
pub fn to_group(signal: i32, all: bool) -> bool {
    all || is_terminating(signal) || is_tty_stop(signal) || signal == libc::SIGCONT
}

/// Job-control stops a terminal sends to its foreground process group.
pub fn is_tty_stop(signal: i32) -> bool {
    matches!(signal, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(to_group(libc::SIGTSTP, false) && to_group(libc::SIGCONT, false));
        assert!(to_group(libc::SIGUSR1, true) && to_group(libc::SIGWINCH, true));
        assert!(is_tty_stop(libc::SIGTSTP));
        assert!(!is_tty_stop(libc::SIGSTOP));
    }
}
