//! Reaping: thousands of orphans leave no zombie, even under a burst of signals.

use std::time::Duration;

use super::start;
use crate::util::{fixture, read_lines, send, wait_for, Mode, TempDir};

fn orphans_are_reaped(mode: Mode, count: usize, burst: bool) {
    let dir = TempDir::new("orphans");
    let mut supd = start(mode, |c| {
        c.args(["--grace", "5s", "--", "bash"])
            .arg(fixture("init/orphans.sh"))
            .arg(dir.path())
            .arg(count.to_string());
    });
    wait_for(Duration::from_secs(10), "orphans fixture ready", || {
        dir.file("ready").exists()
    });
    if burst {
        // 1,000 signals while the orphans are being made: reaping and forwarding go on.
        for i in 0..1000 {
            let signal = if i % 2 == 0 {
                libc::SIGUSR1
            } else {
                libc::SIGWINCH
            };
            send(supd.pid, signal);
        }
    }
    wait_for(Duration::from_secs(60), "orphans reaped", || {
        if let Ok(why) = std::fs::read_to_string(dir.file("failed")) {
            panic!("{mode:?}: {why}");
        }
        dir.file("reaped").exists()
    });
    if burst {
        // Standard signals merge, so the service saw USR1 at least once; a fresh USR2
        // after the burst must still arrive.
        assert!(read_lines(&dir.file("signals.log")).contains(&"USR1".to_string()));
        send(supd.pid, libc::SIGUSR2);
        wait_for(Duration::from_secs(10), "USR2 after the burst", || {
            read_lines(&dir.file("signals.log")).contains(&"USR2".to_string())
        });
    }
    supd.signal(libc::SIGTERM);
    let status = supd.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{mode:?}");
}

#[test]
fn two_thousand_orphans_leave_no_zombie_as_pid1() {
    orphans_are_reaped(Mode::Pid1, 2000, false);
}

#[test]
fn two_thousand_orphans_leave_no_zombie_as_subreaper() {
    orphans_are_reaped(Mode::Subreaper, 2000, false);
}

#[test]
fn signal_burst_does_not_stop_reaping_or_forwarding() {
    orphans_are_reaped(Mode::Pid1, 500, true);
    orphans_are_reaped(Mode::Subreaper, 500, true);
}
