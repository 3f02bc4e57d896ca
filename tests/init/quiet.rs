//! Logging and idleness: nothing logged by default, and an idle supd never wakes up.

use std::process::Stdio;
use std::time::Duration;

use super::{run, start};
use crate::util::{wait_for, Mode, Supd, TempDir, MODES};

#[test]
fn quiet_by_default_and_says_subreaper_once_at_debug() {
    for mode in MODES {
        let (code, stderr) = run(mode, &["--", "true"]);
        assert_eq!(code, 0);
        assert_eq!(stderr, "", "{mode:?}: nothing logged by default");
        let (code, stderr) = run(mode, &["-vv", "--", "true"]);
        assert_eq!(code, 0);
        let said = stderr.matches("child subreaper").count();
        let expected = usize::from(mode == Mode::Subreaper);
        assert_eq!(said, expected, "{mode:?}: {stderr}");
        assert!(
            stderr.lines().all(|l| l.contains(" supd[")),
            "{mode:?}: {stderr}"
        );
    }
}

/// Context switches of every thread of `pid` (/proc/PID/status counts the main thread
/// only; the request server runs on a thread of its own).
fn context_switches(pid: i32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut sum = 0;
    let mut threads = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                sum += n.trim().parse::<u64>().unwrap();
            }
        }
        threads += 1;
    }
    assert!(threads >= 1);
    sum
}

#[test]
fn idle_supd_makes_no_wakeups() {
    // Both modes without the socket, and once with the request socket served (the
    // default in a container): an idle listener must not wake supd either.
    let dir = TempDir::new("idle");
    for (mode, socket) in [
        (Mode::Pid1, false),
        (Mode::Subreaper, false),
        (Mode::Subreaper, true),
    ] {
        let mut supd = if socket {
            let supd = Supd::start(mode, |c| {
                c.args([
                    "--service",
                    "idle",
                    "--callbacks",
                    "/dev/null",
                    "--socket-dir",
                ])
                .arg(dir.path())
                .args(["--", "sleep", "1000"])
                .stdin(Stdio::null());
            });
            wait_for(Duration::from_secs(10), "the socket", || {
                dir.file("idle-request.sock").exists()
            });
            let threads = std::fs::read_dir(format!("/proc/{}/task", supd.pid)).unwrap();
            assert_eq!(threads.count(), 2, "the init's thread and the server's");
            supd
        } else {
            start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            })
        };
        supd.service_running("sleep");
        // A measuring window, not a synchronisation: any timer or polling loop would
        // wake supd at least once in it. (200 ms first for supd to reach its loop.)
        std::thread::sleep(Duration::from_millis(200));
        let before = context_switches(supd.pid);
        std::thread::sleep(Duration::from_millis(1500));
        let after = context_switches(supd.pid);
        assert_eq!(
            after, before,
            "{mode:?} socket={socket}: supd woke up while idle"
        );
        supd.signal(libc::SIGTERM);
        assert_eq!(supd.wait(Duration::from_secs(5)).code(), Some(143));
    }
}
