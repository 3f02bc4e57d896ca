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
        assert!(is_tty_stop(libc::SIGTSTP));
        assert!(!is_tty_stop(libc::SIGSTOP));
    }
}
