//! The child's clean slate: whatever signal mask, ignored signals and extra fds supd
//! inherits, its service starts with none of them.

use std::time::Duration;

use super::start;
use crate::util::proc::{open_fds, status_field};
use crate::util::{assert_dirty, dirty_slate, lazy, wait_for, MODES};

#[test]
fn child_gets_clean_signal_state_and_only_stdio() {
    for mode in MODES {
        // Hand supd a dirty state (an extra fd, ignored and blocked signals). None of it
        // may reach the service.
        let extra = std::fs::File::open("/dev/null").unwrap();
        let mut supd = start(mode, |c| {
            c.args(["--", "sleep", "1000"]);
            dirty_slate(c, &extra);
        });
        // Prove the dirty state did reach supd itself.
        assert_dirty(supd.pid);

        // Wait for the exec (the fork may still be in pre_exec).
        let service = supd.service_running("sleep");
        assert_eq!(
            status_field(service, "SigBlk:"),
            "0000000000000000",
            "{mode:?}"
        );
        assert_eq!(
            status_field(service, "SigIgn:"),
            "0000000000000000",
            "{mode:?}"
        );
        let fds = || open_fds(service);
        // The kernel renames the process (what service_running waits for) a moment
        // before it closes the close-on-exec fds (std's exec-error pipe, fd 3): give the
        // exec that moment; an fd that really leaked stays.
        wait_for(
            Duration::from_secs(1),
            lazy(|| format!("{mode:?}: the service's fds to be 0-2: {:?}", fds())),
            || fds() == [0, 1, 2],
        );
        supd.signal(libc::SIGTERM);
        assert_eq!(
            supd.wait(Duration::from_secs(5)).code(),
            Some(143),
            "{mode:?}"
        );
        drop(extra);
    }
}
