//! No /proc (not mounted, or hidden in a hardened container): supd cannot walk the
//! processes below it and falls back on what it knows, and never waits for ever.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{alive, send, supd_bin, wait_for, Guarded, TempDir};

/// Run supd with an empty tmpfs over /proc, in a mount namespace of its own; as PID 1
/// of a fresh PID namespace when `pid1`. Returns supd's exit status, its stderr and how
/// long it took.
fn supd_without_proc(pid1: bool, service: &str) -> (Option<i32>, String, Duration) {
    let mut unshare = Command::new("unshare");
    unshare.arg("--mount");
    if pid1 {
        unshare.args(["--pid", "--fork"]);
    }
    let script = r#"mount -t tmpfs none /proc && exec "$0" --no-socket --grace 1s -- bash -c "$1""#;
    let started = Instant::now();
    let mut child = Guarded::spawn(
        unshare
            .args(["sh", "-c", script])
            .arg(supd_bin())
            .arg(service)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code(), err, started.elapsed())
}

#[test]
fn without_proc_pid1_terminates_stragglers_with_term() {
    let dir = TempDir::new("noproc1");
    let marker = dir.path().join("termed");
    // A daemon in its own session, trapping TERM: only kill(-1) reaches it.
    let service = format!(
        "setsid bash -c 'trap \"echo TERM > {m}; exit 0\" TERM; sleep 1000 & wait' & sleep 0.3; exit 3",
        m = marker.display()
    );
    let (code, err, took) = supd_without_proc(true, &service);
    assert_eq!(code, Some(3), "the service's status; log:\n{err}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        "TERM",
        "the straggler got TERM before the grace period's KILL; log:\n{err}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[test]
fn without_proc_a_subreaper_ends_its_group_and_never_hangs() {
    let dir = TempDir::new("noproc2");
    let pids = dir.path().join("pids");
    // One leftover in the service's group (found: the group is known), one daemon that
    // left it with setsid (cannot be found without /proc).
    let service = format!(
        // (The leaked daemon must not hold our stderr pipe open.)
        "exec >/dev/null 2>&1; sleep 1000 & echo $! >> {p}; setsid sleep 1001 & echo $! >> {p}; sleep 0.3; exit 0",
        p = pids.display()
    );
    let (code, err, took) = supd_without_proc(false, &service);
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (in_group, daemon) = (pids[0], pids[1]);
    let daemon_alive = alive(daemon);
    if daemon_alive {
        send(daemon, libc::SIGKILL); // the daemon this test leaked on purpose
    }
    assert_eq!(code, Some(0), "log:\n{err}");
    assert!(
        took < Duration::from_secs(4),
        "supd must not wait for ever: {took:?}\n{err}"
    );
    wait_for(Duration::from_secs(2), "the service's group to end", || {
        !alive(in_group)
    });
    assert!(daemon_alive, "the daemon outside the group cannot be found");
    assert!(err.contains("no /proc"), "the leak is reported:\n{err}");
}
