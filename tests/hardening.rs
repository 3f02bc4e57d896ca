//! supd as a busy production host and an attacker would try it: a stalled log pipe,
//! no /proc, job control from an interactive shell.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{supd_bin, Guarded, TempDir};

/// Poll `check` every 10 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

fn ping(dir: &Path, service: &str) -> std::process::Output {
    Command::new(supd_bin())
        .args(["ctl", "--socket-dir"])
        .arg(dir)
        .args(["ping", service, "--timeout", "3s"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Bytes waiting in a pipe.
fn queued(read_end: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on a valid fd with a valid out-pointer.
    unsafe { libc::ioctl(read_end.as_raw_fd(), libc::FIONREAD, &mut n) };
    n
}

/// Everything readable now (the read end is non-blocking).
fn drain(read_end: &mut std::fs::File) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = read_end.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn a_stderr_pipe_nobody_reads_never_blocks_supd() {
    let dir = TempDir::new("stall");
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // One page: a few log lines fill it.
    // SAFETY: fcntl on a valid fd.
    let size = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "F_SETPIPE_SZ");
    let mut supd = Guarded(
        Command::new(supd_bin())
            .args(["-vvv", "--service", "stall", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(dir.write("callbacks.sh", "CB_lines() { seq 1 5000; }\n"))
            .args(["--callback-lib", "/nonexistent", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::from(write_end))
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("stall-request.sock");
    assert!(eventually(Duration::from_secs(10), || socket.exists()));
    // Fill the pipe and the queue behind it (16 KiB): every ping logs a line.
    for round in 0..250 {
        let out = ping(dir.path(), "stall");
        assert!(
            out.status.success(),
            "ping {round} with stderr full: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A callback with a lot of output runs to its end meanwhile.
    let out = Command::new(supd_bin())
        .args(["ctl", "--socket-dir"])
        .arg(dir.path())
        .args(["send", "stall", "lines", "--timeout", "20s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5000);
    let waiting = queued(&read_end);
    assert!(waiting > 3800, "the pipe is full: {waiting} bytes");
    // The reader comes back: the next line tells how many were dropped.
    let mut reader = std::fs::File::from(read_end);
    nix::fcntl::fcntl(
        reader.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut log = drain(&mut reader);
    assert!(ping(dir.path(), "stall").status.success());
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(supd.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        log.push_str(&drain(&mut reader));
        if let Some(status) = supd.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "supd did not exit on TERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    log.push_str(&drain(&mut reader));
    assert_eq!(status.code(), Some(143), "the service's status, after TERM");
    let notice = log
        .lines()
        .find(|line| line.contains("log lines dropped"))
        .unwrap_or_else(|| panic!("no dropped-lines report in:\n{log}"));
    let count: u64 = notice
        .rsplit("lines=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(count > 0, "{notice}");
}

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
    let child = unshare
        .args(["sh", "-c", script])
        .arg(supd_bin())
        .arg(service)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Guarded(child);
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

fn alive(pid: i32) -> bool {
    // Zombies count as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
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
        // SAFETY: plain kill of the leaked daemon this test started.
        unsafe { libc::kill(daemon, libc::SIGKILL) };
    }
    assert_eq!(code, Some(0), "log:\n{err}");
    assert!(
        took < Duration::from_secs(4),
        "supd must not wait for ever: {took:?}\n{err}"
    );
    assert!(
        eventually(Duration::from_secs(2), || !alive(in_group)),
        "the service's group is terminated"
    );
    assert!(daemon_alive, "the daemon outside the group cannot be found");
    assert!(err.contains("no /proc"), "the leak is reported:\n{err}");
}
