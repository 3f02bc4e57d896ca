//! The ONE owner of `waitpid(-1)`.
//!
//! Everything supd spawns (the service, callbacks) is reaped here, together with every
//! orphan the kernel re-parents to us. Whoever spawns a child calls [`Reaper::watch`]
//! right after `Command::spawn` returns and before its next `.await`: the reaper only runs
//! when the event loop gets control back, so the waiter is always registered before the
//! child's status can be collected. Never call `Child::wait`, `output` or `status`, and
//! never use `tokio::process`: they race this loop (ECHILD, lost exit codes).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use nix::errno::Errno;
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the exit code, or 128+N for death by signal N.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(code) => code & 0xff,
            Exit::Signal(signal) => (128 + signal) & 0xff,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Signal(signal) => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                write!(f, "killed by {name} ({signal})")
            }
        }
    }
}

/// Registry of children someone is waiting for. Single-threaded by design (the event
/// loop is a current-thread runtime), hence `RefCell`.
#[derive(Default)]
pub struct Reaper {
    waiters: RefCell<HashMap<i32, oneshot::Sender<Exit>, BuildHasherDefault<PidHasher>>>,
}

/// Pids are their own good hash: no need for SipHash (its 60 instructions per reaped
/// child were a fifth of the reap). A multiply spreads them over the table's buckets;
/// the keys come from the kernel, not from a peer, so there is no flooding to resist.
#[derive(Default)]
struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, pid: i32) {
        self.0 = u64::from(pid as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Reaper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask for `pid`'s exit. Call before yielding to the event loop after spawning.
    pub fn watch(&self, pid: u32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(pid as i32, tx);
        rx
    }

    /// Whether anyone still waits for a child (the service or a callback).
    pub fn watched(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Collect every exited child without blocking; deliver watched ones to their waiter.
    /// Returns how many children were reaped. Call on every SIGCHLD (signals merge, so
    /// one SIGCHLD may stand for many exits).
    pub fn reap(&self) -> usize {
        let mut reaped = 0;
        loop {
            // libc, not nix's waitpid: nix turns a death by a real-time signal (34-64)
            // into Err(EINVAL) AFTER the kernel has reaped the child, so its status
            // would be lost (and a service killed by SIGRTMIN+n would hang supd).
            let mut status: libc::c_int = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if let Some(exit) = decode(status) {
                    reaped += 1;
                    self.deliver(Pid::from_raw(pid), exit);
                }
                // else stopped/continued: not requested (no WUNTRACED), skip.
                continue;
            }
            if pid == 0 {
                return reaped; // children left, none exited
            }
            match Errno::last() {
                Errno::ECHILD => return reaped,
                Errno::EINTR => continue,
                err => {
                    crate::warn!("waitpid failed", error = err);
                    return reaped;
                }
            }
        }
    }

    fn deliver(&self, pid: Pid, exit: Exit) {
        match self.waiters.borrow_mut().remove(&pid.as_raw()) {
            // The waiter may have given up (dropped its receiver): nothing to do.
            Some(waiter) => {
                let _ = waiter.send(exit);
            }
            None => crate::trace!("reaped orphan", pid = pid, exit = exit),
        }
    }
}

/// A raw wait status as an [`Exit`]; None for stop/continue reports.
fn decode(status: libc::c_int) -> Option<Exit> {
    if libc::WIFEXITED(status) {
        Some(Exit::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        None
    }
}

/// Whether this process has any child left (alive or zombie), without reaping it.
pub fn has_children() -> bool {
    // waitid with WNOWAIT leaves the status for `reap`.
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: plain syscall with a valid out-pointer.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
    // Only ECHILD means "none": on any other failure assume children, so that supd
    // never exits (or gives up on the main child) while one may still live.
    rc == 0 || Errno::last() != Errno::ECHILD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_convention() {
        assert_eq!(Exit::Code(3).status(), 3);
        assert_eq!(Exit::Signal(15).status(), 143);
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL (9)");
        assert_eq!(Exit::Signal(40).status(), 168);
        assert_eq!(Exit::Signal(40).to_string(), "killed by signal (40)");
    }

    #[test]
    fn decodes_real_time_signal_deaths() {
        // What waitpid reports: exit code in bits 8-15; signal in bits 0-6.
        assert_eq!(decode(5 << 8), Some(Exit::Code(5)));
        assert_eq!(decode(15), Some(Exit::Signal(15)));
        assert_eq!(decode(40), Some(Exit::Signal(40)));
        assert_eq!(decode(64 | 0x80), Some(Exit::Signal(64))); // core dumped
        assert_eq!(decode(0x137f), None); // stopped by SIGSTOP
        assert_eq!(decode(0xffff), None); // continued
    }
}
