//! The processes a test starts. Every one is a [`Guarded`]: if the test ends (passes or
//! panics) while it still runs, it is SIGKILLed with every process below it, so a failed
//! test leaves nothing behind and a hung one cannot hang the suite.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::proc::{self, children_of};
use super::wait::{lazy, wait_for};
use super::{supd, supd_bin};

/// The fd [`dirty_slate`] leaves open. High, far above what the test process has open:
/// std's spawn learns that the exec happened when the child's end of a close-on-exec
/// pipe closes, and when that end was this fd (7 once was, with the whole suite's fds
/// open), the `dup2` onto it closed it early: spawn returned before the exec, and the
/// test read the harness's own state as supd's.
const DIRTY_FD: i32 = 900;

/// The signals [`dirty_slate`] ignores.
const DIRTY_IGNORED: [i32; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGPIPE,
    libc::SIGUSR1,
    33,
    34,
];

/// Prove that [`dirty_slate`]'s state reached `pid` (supd itself): the fd, and no
/// default disposition for the ignored signals (ignored, or caught: glibc takes 33 over
/// with a handler of its own once a second thread starts).
pub fn assert_dirty(pid: i32) {
    let fds = proc::open_fds(pid);
    assert!(
        fds.contains(&DIRTY_FD),
        "{pid} lacks fd {DIRTY_FD}: {fds:?}"
    );
    let mask = |field| u64::from_str_radix(&proc::status_field(pid, field), 16).unwrap();
    let not_default = mask("SigIgn:") | mask("SigCgt:");
    for signal in DIRTY_IGNORED {
        assert!(
            not_default & 1 << (signal - 1) != 0,
            "{pid} does not ignore {signal}; its status:\n{}",
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
        );
    }
}

/// Start `command` (supd, or the `unshare` above it: exec keeps all of this) with the
/// state a careless parent may hand an init: `extra` open as fd [`DIRTY_FD`] without
/// close-on-exec; SIGHUP, SIGINT, SIGPIPE, SIGUSR1 and the real-time 33 and 34 (which
/// glibc's and musl's own sigaction refuse) ignored; SIGUSR2 blocked. Nothing supd starts
/// may get any of it.
pub fn dirty_slate(command: &mut Command, extra: &std::fs::File) {
    let extra = extra.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls (dup2, rt_sigaction, rt_sigprocmask) on values on its stack; it allocates
    // nothing (last_os_error only reads errno).
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(extra, DIRTY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The kernel's `struct sigaction` (x86_64, aarch64): handler, flags,
            // restorer, mask. Raw, as libc's sigaction refuses 33 (and musl's 34).
            let ignore: [usize; 4] = [libc::SIG_IGN, 0, 0, 0];
            for signal in DIRTY_IGNORED {
                let rc = libc::syscall(
                    libc::SYS_rt_sigaction,
                    libc::c_long::from(signal),
                    ignore.as_ptr(),
                    std::ptr::null_mut::<usize>(),
                    8usize,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let blocked: u64 = 1 << (libc::SIGUSR2 - 1);
            let rc = libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::c_long::from(libc::SIG_BLOCK),
                &blocked as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child process, killed with its whole tree on drop if it still runs.
pub struct Guarded(Child);

impl Guarded {
    pub fn spawn(command: &mut Command) -> Guarded {
        Guarded(command.spawn().expect("cannot start the process"))
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Send `signal` (the test fails if it cannot be sent).
    pub fn signal(&self, signal: i32) {
        proc::send(self.pid(), signal);
    }

    /// Wait for the exit, at most `timeout` (then the test fails, naming `what`).
    pub fn wait_exit(&mut self, timeout: Duration, what: impl std::fmt::Display) -> ExitStatus {
        let child = &mut self.0;
        wait_for(timeout, what, || child.try_wait().unwrap())
    }

    /// SIGTERM (unless it has exited already), then [`Guarded::wait_exit`].
    pub fn terminate(&mut self, timeout: Duration, what: impl std::fmt::Display) -> ExitStatus {
        if let Ok(None) = self.0.try_wait() {
            self.signal(libc::SIGTERM);
        }
        self.wait_exit(timeout, what)
    }
}

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    /// Our direct child, not yet waited for, so its pid cannot have been reused: when it
    /// still runs, SIGKILL it and everything below it (leaves first), then reap it.
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            for pid in proc::tree(self.pid()).iter().rev() {
                let _ = proc::kill(*pid, libc::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
}

/// How supd is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a fresh PID namespace: `unshare --pid --fork --mount-proc supd ...`.
    Pid1,
    /// Run directly: not PID 1, so it must make itself child subreaper.
    Subreaper,
}

pub const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

impl Mode {
    /// The command line that starts supd in this mode, before supd's own arguments.
    pub fn command(self) -> Command {
        match self {
            Mode::Pid1 => {
                let mut command = Command::new("unshare");
                command
                    .args(["--pid", "--fork", "--mount-proc"])
                    .arg(supd_bin());
                command
            }
            Mode::Subreaper => supd(),
        }
    }
}

/// A running supd, maybe inside `unshare`.
pub struct Supd {
    /// What we started: supd, or the `unshare` above it.
    pub child: Guarded,
    /// supd's own pid (in our PID namespace).
    pub pid: i32,
    pub mode: Mode,
}

impl Supd {
    /// Start `mode`'s command line with the arguments `configure` adds.
    pub fn start(mode: Mode, configure: impl FnOnce(&mut Command)) -> Supd {
        let mut command = mode.command();
        configure(&mut command);
        let child = Guarded::spawn(&mut command);
        let pid = match mode {
            Mode::Subreaper => child.pid(),
            // unshare's child, once it has exec'd supd.
            Mode::Pid1 => wait_for(Duration::from_secs(10), "supd under unshare", || {
                children_of(child.pid()).into_iter().find(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == supd_bin())
                })
            }),
        };
        Supd { child, pid, mode }
    }

    /// The service: supd's (first) child.
    pub fn service(&self) -> i32 {
        wait_for(Duration::from_secs(10), "the service", || {
            children_of(self.pid).first().copied()
        })
    }

    /// The service, once it has exec'd `name`.
    pub fn service_running(&self, name: &str) -> i32 {
        let service = self.service();
        wait_for(
            Duration::from_secs(10),
            format!("the service to exec {name}"),
            || proc::runs(service, name),
        );
        service
    }

    pub fn signal(&self, signal: i32) {
        proc::send(self.pid, signal);
    }

    /// Wait for supd to exit; its status (through unshare, which passes it on).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("supd ({:?}) to exit", self.mode);
        self.child.wait_exit(timeout, what)
    }
}

/// A process whose stderr lines are collected as they come.
pub struct Logged {
    pub child: Guarded,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    pub fn spawn(command: &mut Command) -> Logged {
        let mut child = Guarded::spawn(command.stderr(Stdio::piped()).stdout(Stdio::null()));
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Logged { child, lines }
    }

    /// The first line containing every needle, waiting up to `timeout`.
    pub fn line_with(&self, needles: &[&str], timeout: Duration) -> String {
        let what = lazy(|| format!("a log line with {needles:?}; log:\n{}", self.all()));
        wait_for(timeout, what, || {
            let lines = self.lines.lock().unwrap();
            lines
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned()
        })
    }

    /// Everything logged so far.
    pub fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }
}
