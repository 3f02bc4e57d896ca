//! "Is anything below supd stopped?", asked on every terminating signal (a stopped
//! service needs a SIGCONT before it can act on the TERM, see `init::supervisor`).
//!
//! The full answer needs the process tree (`sys::process::descendants_with_state`: a
//! map of every process of /proc). That cost 70,000 instructions per TERM for an answer
//! that is nearly always "no", so this asks the cheap question first: is ANY process in
//! /proc stopped? One pass, no allocation: a stack buffer per /proc/PID/stat. Only when
//! one is does the tree walk decide whether it is below supd. (The kernel's
//! /proc/PID/task/TID/children, which would list only our descendants, is an optional
//! kernel feature, absent here.)

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::process::descendants_with_state;

/// Whether any process below supd is stopped (`T` or `t` in /proc/PID/stat).
pub fn any_stopped_below_self() -> bool {
    if !any_stopped() {
        return false;
    }
    descendants_with_state(std::process::id() as i32)
        .iter()
        .any(|below| below.stopped())
}

/// Whether any process visible in /proc, other than supd itself, is stopped. False
/// without /proc (then the walk would find nothing either).
///
/// Raw `open`/`getdents64` on a stack buffer rather than `opendir`: musl's `opendir`
/// mallocs (here an mmap and a munmap of 8 KiB) and its `open` follows every `O_CLOEXEC`
/// open with an `fcntl(F_SETFD)`; on the TERM path those were 5 of the scan's 16
/// syscalls with one service, and supd's own /proc/PID/stat 4 more.
fn any_stopped() -> bool {
    let Some(dir) = open_raw(c"/proc", libc::O_DIRECTORY) else {
        return false;
    };
    let mut own = [0u8; 20];
    let own = digits(std::process::id(), &mut own);
    // linux_dirent64 records: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
    let mut buf = [0u64; 512];
    let mut found = false;
    'read: loop {
        // SAFETY: getdents64 into our own buffer of that many bytes, on the fd we opened.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            )
        };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        // SAFETY: u64s viewed as the bytes they are; `n` is at most the buffer's size.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let mut at = 0;
        while let Some(record) = bytes.get(at..) {
            let Some(&[lo, hi]) = record.get(16..18) else {
                break;
            };
            let len = usize::from(u16::from_ne_bytes([lo, hi]));
            // (a length below 19 is no record: get() is None, the loop ends)
            let Some(name) = record.get(19..len.min(record.len())) else {
                break;
            };
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            if !name.is_empty()
                && name.iter().all(u8::is_ascii_digit)
                && name != own
                && is_stopped(name)
            {
                found = true;
                break 'read;
            }
            at += len;
        }
    }
    found
}

/// `pid`'s decimal digits, written into `out`.
fn digits(mut pid: u32, out: &mut [u8; 20]) -> &[u8] {
    let mut start = out.len();
    loop {
        start -= 1;
        out[start] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            return &out[start..];
        }
    }
}

/// `open(2)` itself, read-only and close-on-exec (no `fcntl` after it, unlike musl's).
pub(crate) fn open_raw(path: &CStr, flags: libc::c_int) -> Option<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | flags;
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a successful open returns a fresh fd that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether /proc/PID/stat (PID given as its digits) shows a stopped process.
fn is_stopped(pid: &[u8]) -> bool {
    // "/proc/" + at most 20 digits + "/stat" + NUL.
    let mut path = [0u8; 40];
    let parts: [&[u8]; 3] = [b"/proc/", pid, b"/stat"];
    let mut len = 0;
    for part in parts {
        let Some(slot) = path.get_mut(len..len + part.len()) else {
            return false;
        };
        slot.copy_from_slice(part);
        len += part.len();
    }
    if len >= path.len() {
        return false;
    }
    // The state follows the command name, at most 64 bytes in parentheses: the first
    // 256 bytes hold it.
    let mut stat = [0u8; 256];
    // `path` is NUL-terminated: zero-filled past `len`.
    let Ok(path) = CStr::from_bytes_until_nul(&path) else {
        return false;
    };
    let Some(fd) = open_raw(path, 0) else {
        return false; // gone meanwhile
    };
    // SAFETY: read into our own buffer of that size from the fd we opened (closed on drop).
    let n = unsafe { libc::read(fd.as_raw_fd(), stat.as_mut_ptr().cast(), stat.len()) };
    drop(fd);
    let Some(stat) = usize::try_from(n).ok().and_then(|n| stat.get(..n)) else {
        return false;
    };
    state_of(stat).is_some_and(|state| matches!(state, b'T' | b't'))
}

/// The state letter of a /proc/PID/stat line: the first field after the LAST ')' (the
/// command name may itself contain ')' and blanks).
fn state_of(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 1..)?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letter() {
        assert_eq!(state_of(b"42 (sleep) S 7 40"), Some(b'S'));
        assert_eq!(state_of(b"42 (a) b (c) T 9 42"), Some(b'T'));
        assert_eq!(state_of(b"42 (x"), None);
    }

    #[test]
    fn pid_digits() {
        let mut out = [0u8; 20];
        assert_eq!(digits(0, &mut out), b"0");
        assert_eq!(digits(1, &mut out), b"1");
        assert_eq!(digits(4_194_304, &mut out), b"4194304");
        assert_eq!(digits(u32::MAX, &mut out), b"4294967295");
    }

    #[test]
    fn sees_a_stopped_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        assert!(!is_stopped(pid.as_bytes()));
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
        let stopped = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            is_stopped(pid.as_bytes())
        });
        assert!(stopped);
        assert!(any_stopped());
        let _ = child.kill();
        let _ = child.wait();
    }
}
