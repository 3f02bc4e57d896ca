//! Processes below supd, read from /proc, and `kill` with its result handled.
//!
//! No policy here: which processes to signal and when is `init::shutdown`'s business.
//! Reads /proc with plain blocking `std::fs` (no tokio::fs, which needs a thread pool):
//! procfs reads do not block on I/O.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One row of /proc: a process, its state letter (`S`, `T`, `Z`...), its parent and its
/// process group.
struct ProcEntry {
    pid: i32,
    ppid: i32,
    below: Below,
}

/// A process found below supd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Below {
    pub pid: i32,
    /// The state letter of /proc/PID/stat: `T`/`t` stopped, `Z` zombie...
    pub state: char,
    pub pgrp: i32,
}

impl Below {
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

/// Whether /proc shows this process (it may be missing, or an empty tmpfs over it, in a
/// hardened container); without it, nothing below supd can be found by walking.
pub fn proc_available() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

/// Every process visible in /proc. Processes that vanish while we read are skipped.
fn process_table() -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut table = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid, pgrp)) = parse_stat(&stat) {
            let below = Below { pid, state, pgrp };
            table.push(ProcEntry { pid, ppid, below });
        }
    }
    table
}

/// Every live (or zombie) process below `root`, found through /proc's parent links,
/// with its state and group.
pub fn descendants_with_state(root: i32) -> Vec<Below> {
    let mut children: HashMap<i32, Vec<Below>> = HashMap::new();
    for entry in process_table() {
        debug_assert_eq!(entry.pid, entry.below.pid);
        children.entry(entry.ppid).or_default().push(entry.below);
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        if let Some(kids) = children.remove(&parent) {
            for kid in kids {
                if kid.pid != root {
                    found.push(kid);
                    queue.push(kid.pid);
                }
            }
        }
    }
    found
}

/// Every live (or zombie) process below `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    descendants_with_state(root)
        .into_iter()
        .map(|below| below.pid)
        .collect()
}

/// The state letter, parent pid and process group from a /proc/PID/stat line. The
/// command name (field 2) is in parentheses and may itself contain blanks and ')', so
/// parse from the LAST ')'.
fn parse_stat(stat: &str) -> Option<(char, i32, i32)> {
    let close = stat.rfind(')')?;
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// The pid most recently handed out in supd's pid namespace, or None without /proc.
/// Pids are handed out in increasing order, wrapping at `pid_max`: with
/// [`born_since`] this tells the processes forked after a moment from those that
/// existed then, which no other field of /proc can (the start time counts clock ticks,
/// 10 ms). `/proc/sys/kernel/ns_last_pid` first (the reader's namespace; LXCFS
/// overlays /proc/loadavg, not /proc/sys), else the last field of /proc/loadavg (the
/// same number, always there); a value that is not a pid counts as unknown.
pub fn last_pid() -> Option<i32> {
    read_number_file(c"/proc/sys/kernel/ns_last_pid")
        .or_else(|| read_number_file(c"/proc/loadavg"))
        .filter(|&pid| pid > 0)
}

/// The last blank-separated field of a small /proc file, as a number.
fn read_number_file(path: &std::ffi::CStr) -> Option<i32> {
    let file = crate::sys::stopped::open_raw(path, 0)?;
    let mut buf = [0u8; 128];
    // SAFETY: read into our own buffer of that many bytes, on the fd we opened.
    let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    parse_last_pid(text)
}

/// "0.00 0.01 0.05 1/123 45678\n" (loadavg) or "45678\n" (ns_last_pid): the last field.
fn parse_last_pid(loadavg: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(loadavg).ok()?;
    text.split_ascii_whitespace().last()?.parse().ok()
}

/// Whether `pid` was handed out after `then` and up to `now` (two [`last_pid`]
/// readings), wrapping at `pid_max`. Exact unless the namespace went through all of
/// its pids in between (then a process older than `then` may be counted as newer).
pub fn born_since(pid: i32, then: i32, now: i32) -> bool {
    if then <= now {
        pid > then && pid <= now
    } else {
        pid > then || pid <= now
    }
}

/// Send `signal` to `target` (a pid, or a process group when negative). A target that is
/// already gone (ESRCH) is not an error: it is what we wanted.
pub fn send(target: i32, signal: i32) {
    let Ok(sig) = Signal::try_from(signal) else {
        // Real-time signals are not in nix's enum: use libc directly.
        // SAFETY: plain syscall.
        let rc = unsafe { libc::kill(target, signal) };
        if rc != 0 && Errno::last() != Errno::ESRCH {
            crate::warn!(
                "cannot forward signal",
                target = target,
                signal = signal,
                error = Errno::last()
            );
        }
        return;
    };
    match kill(Pid::from_raw(target), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => crate::warn!(
            "cannot send signal",
            target = target,
            signal = sig.as_str(),
            error = err
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_parsing_survives_odd_command_names() {
        assert_eq!(parse_stat("42 (sleep) S 7 40 42 0 -1"), Some(('S', 7, 40)));
        assert_eq!(parse_stat("42 (a) b (c) T 9 42 42 0"), Some(('T', 9, 42)));
        assert_eq!(parse_stat("42 (x y) Z 1 0"), Some(('Z', 1, 0)));
        assert_eq!(parse_stat("42 (x y) Z 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("42 (x)"), None);
    }

    #[test]
    fn the_last_pid_is_the_last_field_of_loadavg_and_moves_with_forks() {
        assert_eq!(parse_last_pid(b"0.00 0.01 0.05 1/123 45678\n"), Some(45678));
        assert_eq!(parse_last_pid(b"45678\n"), Some(45678));
        assert_eq!(parse_last_pid(b"0.00 0.01"), None);
        assert_eq!(parse_last_pid(b""), None);
        let before = last_pid().expect("/proc/loadavg");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let after = last_pid().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(born_since(pid, before, after), "{before} {pid} {after}");
        assert!(!born_since(std::process::id() as i32, before, after));
    }

    #[test]
    fn born_since_counts_the_pids_handed_out_in_between_across_the_wrap() {
        // No wrap: (then, now].
        assert!(born_since(101, 100, 200));
        assert!(born_since(200, 100, 200));
        assert!(!born_since(100, 100, 200));
        assert!(!born_since(201, 100, 200));
        assert!(!born_since(50, 100, 200));
        // Wrapped at pid_max: (then, pid_max] and [1, now].
        assert!(born_since(4_000_000, 3_999_000, 300));
        assert!(born_since(2, 3_999_000, 300));
        assert!(!born_since(301, 3_999_000, 300));
        assert!(!born_since(3_998_000, 3_999_000, 300));
        // Nothing handed out.
        assert!(!born_since(100, 100, 100));
    }

    #[test]
    fn finds_own_children_and_grandchildren() {
        // sh starts a sleep; both must show up below us.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo ready; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let below = descendants(std::process::id() as i32);
        assert!(below.contains(&(child.id() as i32)), "{below:?}");
        // Only touch our own subtree: other tests of this binary run in parallel.
        let grandchildren = descendants(child.id() as i32);
        assert_eq!(grandchildren.len(), 1, "{grandchildren:?}");
        for pid in &grandchildren {
            assert!(below.contains(pid), "{below:?}");
            send(*pid, libc::SIGKILL);
        }
        send(child.id() as i32, libc::SIGKILL);
        let _ = child.wait();
    }
}
