//! A log reader that stalls (a stuck log driver): supd's stderr is a full pipe nobody
//! reads, and supd still answers, shuts down, and reports what it had to drop.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{supd_bin, wait_for, Guarded, TempDir};

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
    let mut supd = Guarded::spawn(
        Command::new(supd_bin())
            .args(["-vvv", "--service", "stall", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(dir.write("callbacks.sh", "CB_lines() { seq 1 5000; }\n"))
            .args(["--callback-lib", "/nonexistent", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::from(write_end)),
    );
    let socket = dir.path().join("stall-request.sock");
    wait_for(Duration::from_secs(10), "the socket", || socket.exists());
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
    supd.signal(libc::SIGTERM);
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

#[test]
fn a_log_line_longer_than_the_queue_is_written_when_nothing_waits() {
    // The queue bounds what waits for a stalled reader (16 KiB); a reader that keeps up
    // still gets a longer line (a callback's output line, logged at -v).
    let dir = TempDir::new("longline");
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut supd = Guarded::spawn(
        Command::new(supd_bin())
            .args(["-v", "--service", "longline", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(dir.write(
                "callbacks.sh",
                "CB_long() { printf 'y%.0s' {1..30000}; echo; }\n",
            ))
            .args(["--callback-lib", "/nonexistent", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::from(write_end)),
    );
    let mut reader = std::fs::File::from(read_end);
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = reader.read_to_string(&mut all);
        all
    });
    let socket = dir.path().join("longline-request.sock");
    wait_for(Duration::from_secs(10), "the socket", || socket.exists());
    let out = Command::new(supd_bin())
        .args(["ctl", "--socket-dir"])
        .arg(dir.path())
        .args(["send", "longline", "long"])
        .output()
        .unwrap();
    assert!(out.status.success());
    supd.signal(libc::SIGTERM);
    supd.wait_exit(Duration::from_secs(10), "supd to exit");
    let log = log.join().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("callback output") && l.contains(&"y".repeat(30000))),
        "the 30 KB line is in the log"
    );
    assert!(
        !log.contains("log lines dropped"),
        "{}",
        &log[..log.len().min(2000)]
    );
}
