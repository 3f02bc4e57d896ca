//! Reaping: thousands of orphans leave no zombie, even under a burst of signals.

use std::process::Command;
use std::time::Duration;

use super::start;
use crate::util::{fixture, read_lines, send, supd, wait_for, Mode, Supd, TempDir};

fn orphans_are_reaped(mode: Mode, count: usize, burst: bool) {
    let dir = TempDir::new("orphans");
    let supd = start(mode, |c| orphans_service(c, &dir, count));
    flood_and_check(supd, &dir, mode, burst, || {});
}

fn orphans_service(command: &mut Command, dir: &TempDir, count: usize) {
    command
        .args(["--grace", "5s", "--", "bash"])
        .arg(fixture("init/orphans.sh"))
        .arg(dir.path())
        .arg(count.to_string());
}

/// Wait for the orphans to be made and reaped (with a burst of 1,000 signals meanwhile,
/// if `burst`, then `meanwhile`), then stop supd.
fn flood_and_check(
    mut supd: Supd,
    dir: &TempDir,
    mode: Mode,
    burst: bool,
    meanwhile: impl FnOnce(),
) {
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
    meanwhile();
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

/// With the request socket open, the server runs on a thread of its own and spawns the
/// callbacks there, while the init's thread reaps: every callback's exit code must still
/// reach its client (none reaped before its waiter exists, none taken for an orphan),
/// amid 2,000 orphans and a burst of 1,000 signals, and every orphan is still reaped.
#[test]
fn with_the_socket_open_callbacks_keep_their_exit_codes_amid_orphans_and_signals() {
    for mode in crate::util::MODES {
        let dir = TempDir::new("orphans-socket");
        let service = "reap";
        let supd_process = Supd::start(mode, |c| {
            c.arg("--socket-dir")
                .arg(dir.path())
                .args(["--service", service, "--callbacks"])
                .arg(fixture("control/callbacks.sh"))
                .arg("--callback-lib")
                .arg(fixture("control/lib.sh"));
            orphans_service(c, &dir, 2000);
        });
        let socket = dir.file(&format!("{service}-request.sock"));
        wait_for(Duration::from_secs(10), "the socket", || socket.exists());
        // Callbacks that exit at once, one after another, while the orphans are made.
        let clients = || {
            for code in 0..40u8 {
                let output = supd()
                    .arg("ctl")
                    .arg("--socket-dir")
                    .arg(dir.path())
                    .args(["send", service, "exit", &code.to_string()])
                    .output()
                    .unwrap();
                assert_eq!(
                    output.status.code(),
                    Some(i32::from(code)),
                    "callback `exit {code}`: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        flood_and_check(supd_process, &dir, mode, true, clients);
    }
}
