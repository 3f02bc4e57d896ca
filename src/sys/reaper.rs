//! The ONE owner of `waitpid(-1)`.
//!
//! Everything supd spawns (the service, callbacks) is reaped here, together with every
//! orphan the kernel re-parents to us. Every child is started through [`Reaper::spawn`]
//! or [`Reaper::spawn_with`], which spawn it and register the waiter under the
//! registry's lock: the thread that reaps (the init's loop) may be another than the one
//! that spawns (the request server's), and a child that exits at once is collected only after its waiter is in
//! place, so its status is never lost. Never call `Child::wait`, `output` or `status`,
//! and never use `tokio::process`: they race this loop (ECHILD, lost exit codes).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// Who waits for which child, and whether new children may still be started.
#[derive(Default)]
struct Registry {
    waiters: HashMap<i32, oneshot::Sender<Exit>, BuildHasherDefault<PidHasher>>,
    /// Set by [`Reaper::refuse_spawns`]: the init is shutting down.
    refusing: bool,
}

/// Registry of children someone is waiting for. Shared by the init's thread (which
/// reaps) and the request server's (which spawns callbacks); the lock is uncontended
/// but for a spawn meeting a reap.
#[derive(Default)]
pub struct Reaper {
    registry: Mutex<Registry>,
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

    /// Spawn `command` and ask for its exit (see [`spawn_with`](Self::spawn_with)).
    pub fn spawn(
        &self,
        command: &mut Command,
    ) -> std::io::Result<(Child, oneshot::Receiver<Exit>)> {
        self.spawn_with(|| command.spawn(), Child::id)
    }

    /// Start a child with `start` and ask for its exit; `pid` tells its pid. The lock is
    /// held from before the spawn until the waiter is registered: a reap on another
    /// thread that collects the child at once delivers to it (it waits for the lock),
    /// never to nobody. `start` must return only once the child exists (fork, or the
    /// vfork of posix_spawn), and not wait for supd's other thread.
    pub fn spawn_with<T>(
        &self,
        start: impl FnOnce() -> std::io::Result<T>,
        pid: impl FnOnce(&T) -> u32,
    ) -> std::io::Result<(T, oneshot::Receiver<Exit>)> {
        let mut registry = self.registry();
        if registry.refusing {
            return Err(std::io::Error::other("supd is shutting down"));
        }
        let child = start()?;
        let (tx, rx) = oneshot::channel();
        registry.waiters.insert(pid(&child) as i32, tx);
        Ok((child, rx))
    }

    /// From now on [`spawn`](Self::spawn) starts nothing: the init is shutting down,
    /// and a child started after its last look for processes to stop would be missed
    /// by it. Taken under the spawn's lock, so every child either exists when this
    /// returns or is never started.
    pub fn refuse_spawns(&self) {
        self.registry().refusing = true;
    }

    /// Whether [`refuse_spawns`](Self::refuse_spawns) was called.
    pub fn refusing(&self) -> bool {
        self.registry().refusing
    }

    /// Whether anyone still waits for a child (the service or a callback).
    pub fn watched(&self) -> usize {
        self.registry().waiters.len()
    }

    /// The registry. A panic elsewhere while holding it leaves it whole (each operation
    /// is one insert, remove or store), so a poisoned lock is used as it is: PID 1 must
    /// keep reaping.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collect every exited child without blocking; deliver watched ones to their waiter.
    /// Returns how many children were reaped, and whether none is left. Call on every
    /// SIGCHLD (signals merge, so one SIGCHLD may stand for many exits).
    pub fn reap(&self) -> Reaped {
        let mut reaped = Reaped::default();
        loop {
            // libc, not nix's waitpid: nix turns a death by a real-time signal (34-64)
            // into Err(EINVAL) AFTER the kernel has reaped the child, so its status
            // would be lost (and a service killed by SIGRTMIN+n would hang supd).
            let mut status: libc::c_int = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if let Some(exit) = decode(status) {
                    reaped.count += 1;
                    self.deliver(Pid::from_raw(pid), exit);
                }
                // else stopped/continued: not requested (no WUNTRACED), skip.
                continue;
            }
            if pid == 0 {
                return reaped; // children left, none exited
            }
            match Errno::last() {
                Errno::ECHILD => {
                    reaped.childless = true;
                    return reaped;
                }
                Errno::EINTR => continue,
                err => {
                    crate::warn!("waitpid failed", error = err);
                    return reaped;
                }
            }
        }
    }

    fn deliver(&self, pid: Pid, exit: Exit) {
        let waiter = self.registry().waiters.remove(&pid.as_raw());
        match waiter {
            // The waiter may have given up (dropped its receiver): nothing to do.
            Some(waiter) => {
                let _ = waiter.send(exit);
            }
            None => crate::trace!("reaped orphan", pid = pid, exit = exit),
        }
    }
}

/// What one [`Reaper::reap`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Children collected.
    pub count: usize,
    /// The kernel said no child is left at all (ECHILD), alive or zombie.
    pub childless: bool,
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
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A child that exits right after the fork (before spawn even returns), while
    /// another thread reaps without pause: its status must reach its waiter every
    /// time. Registering the waiter after the spawn, outside the lock, loses it.
    #[test]
    fn a_child_exiting_at_once_reaches_its_waiter_though_another_thread_reaps() {
        const NAME: &str = "sys::reaper::tests::a_child_exiting_at_once_reaches_its_waiter_though_another_thread_reaps";
        if std::env::var_os("SUPD_TEST_REAPER_ALONE").is_none() {
            // waitpid(-1) would take other tests' children: run alone, in a process
            // of its own (this test binary, filtered to this test).
            let status = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env("SUPD_TEST_REAPER_ALONE", "1")
                .status()
                .unwrap();
            assert!(status.success(), "the test run alone: {status}");
            return;
        }
        let reaper = Arc::new(Reaper::new());
        let stop = Arc::new(AtomicBool::new(false));
        let reaping = std::thread::spawn({
            let (reaper, stop) = (Arc::clone(&reaper), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    reaper.reap();
                }
            }
        });
        for round in 0..300 {
            let code = round % 100 + 1;
            let mut command = Command::new("/bin/true");
            // SAFETY: _exit is async-signal-safe.
            unsafe {
                command.pre_exec(move || libc::_exit(code));
            }
            let (_child, mut exit) = reaper.spawn(&mut command).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let got = loop {
                match exit.try_recv() {
                    Ok(exit) => break exit,
                    Err(oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                        std::thread::yield_now()
                    }
                    Err(err) => {
                        panic!("round {round}: the exit never reached its waiter ({err:?})")
                    }
                }
            };
            assert_eq!(got, Exit::Code(code), "round {round}");
        }
        stop.store(true, Ordering::Relaxed);
        reaping.join().unwrap();
    }

    /// After the init's last look for processes to stop, nothing may start.
    #[test]
    fn nothing_starts_after_refuse_spawns() {
        let reaper = Reaper::new();
        let marker = std::env::temp_dir().join(format!("supd-refused-{}", std::process::id()));
        reaper.refuse_spawns();
        let mut command = Command::new("touch");
        command.arg(&marker);
        let err = reaper.spawn(&mut command).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("shutting down"), "{err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!marker.exists(), "the command ran");
        assert_eq!(reaper.watched(), 0);
    }

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
