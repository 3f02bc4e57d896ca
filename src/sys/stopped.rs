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

/// Whether any process visible in /proc is stopped. False without /proc (then the walk
/// would find nothing either).
fn any_stopped() -> bool {
    // SAFETY: a NUL-terminated literal path.
    let dir = unsafe { libc::opendir(c"/proc".as_ptr()) };
    if dir.is_null() {
        return false;
    }
    let mut found = false;
    loop {
        // SAFETY: `dir` is an open directory stream, used by this thread only.
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            break;
        }
        // SAFETY: readdir returns a valid entry whose d_name is NUL-terminated; it
        // stays valid until the next readdir on `dir`.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) && is_stopped(name) {
            found = true;
            break;
        }
    }
    // SAFETY: `dir` is open and not used after this.
    unsafe { libc::closedir(dir) };
    found
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
    // SAFETY: `path` is NUL-terminated (zero-filled past `len`); plain flags.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false; // gone meanwhile
    }
    // SAFETY: read into our own buffer of that size, then close the fd we opened.
    let n = unsafe { libc::read(fd, stat.as_mut_ptr().cast(), stat.len()) };
    // SAFETY: `fd` is ours and not used after this.
    unsafe { libc::close(fd) };
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
