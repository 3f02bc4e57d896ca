//! Spawning children with a clean slate.
//!
//! supd blocks nearly every signal (they are read from a signalfd), and a child inherits
//! the mask, SIG_IGN dispositions and every fd not marked close-on-exec. So every child
//! starts in its own process group, with an empty mask, every disposition SIG_DFL and
//! no fd >= 3 but the ones it is given. Two ways there:
//!
//! - the service, [`prepare`]: std's `Command` with a `pre_exec` hook (between fork and
//!   exec: async-signal-safe libc calls only, no allocation), which may also make the
//!   new group the terminal's foreground (a thing posix_spawn cannot do). Spawned once.
//! - callbacks, `list` and the on-failure hook, [`Background`]: `posix_spawn`, which
//!   glibc and musl both implement with `clone(CLONE_VM|CLONE_VFORK)`: no copy of
//!   supd's page tables, ~150 µs less per callback than fork (bench/RESULTS.md). The
//!   clean slate comes from its attributes, and for fds from [`seal_inherited_fds`],
//!   run once at startup.

use std::ffi::{CStr, CString, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

use tokio::sync::oneshot;

use crate::sys::reaper::{Exit, Reaper};
use crate::sys::signals;

/// Install the clean-slate `pre_exec` hook on `command` (the service: callbacks, `list`
/// and the hook start through [`Background`]). The child gets its own process group;
/// if stdin is a terminal whose foreground group is supd's, that group becomes the
/// foreground one (interactive `docker run -it`: job control and Ctrl-C reach the
/// service).
pub fn prepare(command: &mut Command) {
    // SAFETY: the closure only makes async-signal-safe libc calls and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Hand the terminal over only if it is ours to give: supd's group (which we
            // are still in) is its foreground group, as when supd leads the session of
            // `docker run -it`. A supd started as a background job must not steal the
            // terminal from the shell that started it.
            let take_terminal = libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp();
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if take_terminal {
                // SIGTTOU is still blocked here (inherited mask), so our new background
                // group may take the terminal. Errors are not fatal: no job control.
                libc::tcsetpgrp(0, libc::getpid());
            }
            reset_signals();
            close_inherited_fds();
            Ok(())
        });
    }
}

/// Empty mask and default dispositions for all signals.
///
/// Raw `rt_sigaction`/`rt_sigprocmask` syscalls rather than libc's wrappers: glibc and
/// musl refuse to touch the signals they reserve for themselves (32-34), so a SIG_IGN
/// inherited there would survive into the service.
///
/// # Safety
/// Only async-signal-safe calls; meant for `pre_exec`.
unsafe fn reset_signals() {
    const SIGSET_SIZE: usize = 8;
    // SIGRTMAX is 64 on Linux; KILL and STOP simply fail.
    for signal in 1..=64 {
        signals::set_disposition(signal, libc::SIG_DFL);
    }
    let empty: u64 = 0;
    libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK as libc::c_long,
        &empty as *const u64,
        std::ptr::null_mut::<u64>(),
        SIGSET_SIZE,
    );
}

/// Mark every fd >= 3 close-on-exec (fds the container runtime handed us included).
/// std's own exec-error pipe is already CLOEXEC, so it keeps working.
///
/// # Safety
/// Only async-signal-safe calls; fit for `pre_exec`.
unsafe fn close_inherited_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let rc = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
    if rc != 0 {
        // Kernels before 5.11: walk a generous range by hand.
        for fd in 3..4096 {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Mark the fds supd inherited (>= 3) close-on-exec, once at startup, before any child
/// and before any thread exists. Every fd supd opens itself is O_CLOEXEC (std, tokio,
/// and the raw opens in `sys`), so from then on a [`Background`] child gets no fd but
/// the ones it is given, as if it had closed them all itself. No fd is meant for the
/// service either: its `pre_exec` marks the same range.
pub fn seal_inherited_fds() {
    // SAFETY: two plain syscalls on fd numbers; no memory of ours is touched.
    unsafe { close_inherited_fds() }
}

/// What a [`Background`] child gets as one of its fds 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// supd's own.
    Inherit,
    /// /dev/null.
    Null,
    /// A pipe whose other end supd keeps ([`Spawned`]).
    Piped,
}

/// A child of its own background group, started by `posix_spawn` (see the module doc).
///
/// The clean slate: `POSIX_SPAWN_SETPGROUP` with group 0 (its own), `SETSIGMASK` with an
/// empty mask, `SETSIGDEF` with every signal 1-64, so that no SIG_IGN survives the exec
/// (32-34 included: see [`every_signal`]); fds 0-2 as asked, fd 3 if given, nothing else
/// ([`seal_inherited_fds`]). Its environment is supd's with the overrides set here.
pub struct Background {
    program: CString,
    /// argv[0] (the program, as std's `Command` passes it) and the arguments.
    argv: Vec<CString>,
    /// `KEY=VALUE` overrides of supd's environment.
    env: Vec<CString>,
    stdio: [Stdio; 3],
    fd3: Option<OwnedFd>,
    /// An argument or variable held a NUL byte: the spawn fails, as std's does.
    nul: bool,
}

/// A started [`Background`] child: its pid, its exit (from the reaper), and supd's ends
/// of the pipes it asked for.
pub struct Spawned {
    pub pid: u32,
    pub exit: oneshot::Receiver<Exit>,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Background {
    /// `program` with a `/` is run as it is, without one it is looked up in $PATH.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let mut background = Background {
            program: CString::default(),
            argv: Vec::new(),
            env: Vec::new(),
            stdio: [Stdio::Inherit; 3],
            fd3: None,
            nul: false,
        };
        background.program = background.c_string(program.as_ref().as_bytes().to_vec());
        background.argv.push(background.program.clone());
        background
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        let arg = self.c_string(arg.as_ref().as_bytes().to_vec());
        self.argv.push(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Self {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    /// Set `key` in the child's environment (replacing supd's value, if any).
    pub fn env(&mut self, key: &str, value: impl AsRef<OsStr>) -> &mut Self {
        let mut entry = Vec::with_capacity(key.len() + 1 + value.as_ref().len());
        entry.extend_from_slice(key.as_bytes());
        entry.push(b'=');
        entry.extend_from_slice(value.as_ref().as_bytes());
        let entry = self.c_string(entry);
        self.env.push(entry);
        self
    }

    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[0] = stdio;
        self
    }

    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[1] = stdio;
        self
    }

    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[2] = stdio;
        self
    }

    /// Hand `fd` to the child as its fd 3 (supd's copy is closed after the spawn).
    pub fn fd3(&mut self, fd: OwnedFd) -> &mut Self {
        self.fd3 = Some(fd);
        self
    }

    fn c_string(&mut self, bytes: Vec<u8>) -> CString {
        CString::new(bytes).unwrap_or_else(|_| {
            self.nul = true;
            CString::default()
        })
    }

    /// Start the child and register its waiter with `reaper` (under its lock, refused
    /// once the init shuts down: [`Reaper::spawn_with`]).
    pub fn spawn(self, reaper: &Reaper) -> std::io::Result<Spawned> {
        if self.nul {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            ));
        }
        let mut actions = FileActions::new()?;
        // The child's ends, kept open in supd until the spawn is done.
        let mut theirs = Vec::new();
        let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
        for (fd, (stdio, ours)) in (0..).zip(self.stdio.iter().zip(&mut ours)) {
            match stdio {
                Stdio::Inherit => {}
                Stdio::Null => {
                    let mode = if fd == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_WRONLY
                    };
                    actions.open(fd, c"/dev/null", mode)?;
                }
                Stdio::Piped => {
                    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                    let (mine, child) = if fd == 0 {
                        (write, read)
                    } else {
                        (read, write)
                    };
                    // (supd started with this fd closed: pipe2 may have taken it)
                    let child = not_at(child, fd)?;
                    actions.dup2(&child, fd)?;
                    theirs.push(child);
                    *ours = Some(mine);
                }
            }
        }
        // fd 3 last: a pipe end that happens to be fd 3 is on 0-2 by then. The fd given
        // for 3 is moved off 3 if it is there: a dup2 of 3 onto 3 keeps close-on-exec in
        // some libc versions.
        let fd3 = self.fd3.map(|fd| not_at(fd, 3)).transpose()?;
        if let Some(fd3) = &fd3 {
            actions.dup2(fd3, 3)?;
        }
        let attributes = Attributes::clean_slate()?;
        let argv = pointers(self.argv.iter().map(CString::as_c_str));
        let envp = pointers(environment(&self.env));
        let (pid, exit) = reaper.spawn_with(
            || spawn(&self.program, &actions, &attributes, &argv, &envp),
            |&pid| pid,
        )?;
        let [stdin, stdout, stderr] = ours;
        Ok(Spawned {
            pid,
            exit,
            stdin,
            stdout,
            stderr,
        })
    }
}

/// `posix_spawn`, or `posix_spawnp` for a program without a `/` (std's rule).
fn spawn(
    program: &CStr,
    actions: &FileActions,
    attributes: &Attributes,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> std::io::Result<u32> {
    let spawner = if program.to_bytes().contains(&b'/') {
        libc::posix_spawn
    } else {
        libc::posix_spawnp
    };
    let mut pid: libc::pid_t = 0;
    // SAFETY: `program` and every string argv and envp point to are NUL-terminated and
    // outlive the call; both arrays end with a null pointer; the file actions and the
    // attributes were initialised by their constructors.
    let rc = unsafe {
        spawner(
            &mut pid,
            program.as_ptr(),
            actions.as_ptr(),
            attributes.as_ptr(),
            argv.as_ptr().cast(),
            envp.as_ptr().cast(),
        )
    };
    // musl restores this thread's mask without 32-34 (see signals::block_reserved).
    signals::block_reserved();
    check(rc)?;
    Ok(pid as u32)
}

/// A null-terminated array of pointers to `strings`, for argv and envp.
fn pointers<'a>(strings: impl Iterator<Item = &'a CStr>) -> Vec<*const libc::c_char> {
    strings
        .map(CStr::as_ptr)
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// supd's environment without the variables `overrides` sets, then `overrides`.
fn environment(overrides: &[CString]) -> impl Iterator<Item = &CStr> {
    inherited_environment()
        .iter()
        .filter(|entry| !overrides.iter().any(|o| key(o) == key(entry)))
        .chain(overrides)
        .map(CString::as_c_str)
}

/// The name of a `KEY=VALUE` entry.
fn key(entry: &CStr) -> &[u8] {
    let bytes = entry.to_bytes();
    bytes.split(|&b| b == b'=').next().unwrap_or(bytes)
}

/// supd's environment as `KEY=VALUE` strings, read once: supd never changes its
/// environment (no `set_var` anywhere), so this is what std's `Command` would pass on,
/// without std's copy of it into a map and back for each spawn (~2.5k instructions a
/// variable, bench/RESULTS.md).
fn inherited_environment() -> &'static [CString] {
    static ENVIRONMENT: OnceLock<Vec<CString>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(key, value)| {
                let mut entry = key.into_encoded_bytes();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                CString::new(entry).ok()
            })
            .collect()
    })
}

/// `fd` itself, or a copy of it above 3 if it is `target` (closing that one): a
/// `dup2(n, n)` file action keeps close-on-exec on musl (it does nothing for the same
/// fd), so the child would lose the fd.
fn not_at(fd: OwnedFd, target: RawFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() != target {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 4) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Every signal 1-64, for `POSIX_SPAWN_SETSIGDEF`. Built by hand, not with
/// `sigfillset`/`sigaddset`: glibc refuses 32-33 and musl 32-34, and a SIG_IGN that supd
/// inherited there would survive into the child. Both libcs' spawn children (glibc's
/// `__spawni_child`, musl's `child` in posix_spawn.c) test this set bit by bit for
/// 1 to 64 and reset each member with their internal sigaction, which takes 32-34
/// (tests/control/clean_slate.rs proves it for glibc; musl checked by hand).
fn every_signal() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero bits are the empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: on Linux, glibc's and musl's sigset_t both begin with the kernel's 64-bit
    // mask (signal N is bit N-1) and are larger than 8 bytes (as in signals::handled_set).
    unsafe { std::ptr::write_unaligned(std::ptr::addr_of_mut!(set).cast::<u64>(), u64::MAX) };
    set
}

/// A posix_spawn error number as an io::Error.
fn check(rc: libc::c_int) -> std::io::Result<()> {
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// `posix_spawn_file_actions_t`, boxed: it is initialised in place and never moves.
struct FileActions(Box<MaybeUninit<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> std::io::Result<Self> {
        let mut actions = Box::new(MaybeUninit::uninit());
        // SAFETY: init takes uninitialised storage and initialises it.
        check(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
        Ok(FileActions(actions))
    }

    fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
        self.0.as_ptr()
    }

    /// dup2(`from`, `to`) in the child (which clears close-on-exec on `to`).
    fn dup2(&mut self, from: &OwnedFd, to: RawFd) -> std::io::Result<()> {
        // SAFETY: initialised in `new`; plain fd numbers.
        check(unsafe {
            libc::posix_spawn_file_actions_adddup2(self.0.as_mut_ptr(), from.as_raw_fd(), to)
        })
    }

    /// open(`path`, `flags`) as `fd` in the child.
    fn open(&mut self, fd: RawFd, path: &'static CStr, flags: libc::c_int) -> std::io::Result<()> {
        // SAFETY: initialised in `new`; `path` is NUL-terminated and static (the action
        // may keep the pointer until the spawn).
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(self.0.as_mut_ptr(), fd, path.as_ptr(), flags, 0)
        })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

/// `posix_spawnattr_t` set for the clean slate, boxed like [`FileActions`].
struct Attributes(Box<MaybeUninit<libc::posix_spawnattr_t>>);

impl Attributes {
    fn clean_slate() -> std::io::Result<Self> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: init takes uninitialised storage and initialises it.
        check(unsafe { libc::posix_spawnattr_init(storage.as_mut_ptr()) })?;
        let mut attributes = Attributes(storage);
        let raw = attributes.0.as_mut_ptr();
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        // SAFETY: an empty set is all zeroes (sigemptyset's result, in both libcs).
        let empty: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `raw` was initialised above; the sets are valid and copied in.
        unsafe {
            check(libc::posix_spawnattr_setflags(raw, flags as libc::c_short))?;
            // Group 0: a new group whose id is the child's pid.
            check(libc::posix_spawnattr_setpgroup(raw, 0))?;
            check(libc::posix_spawnattr_setsigmask(raw, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(raw, &every_signal()))?;
        }
        Ok(attributes)
    }

    fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
        self.0.as_ptr()
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `clean_slate` before this value existed; destroyed once.
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

/// A human description of a spawn error without std's "(os error N)" suffix.
pub fn describe_error(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_the_inherited_variable() {
        let path = CString::new("PATH=/override").unwrap();
        let entries: Vec<&CStr> = environment(std::slice::from_ref(&path)).collect();
        assert_eq!(entries.iter().filter(|e| key(e) == b"PATH").count(), 1);
        assert_eq!(entries.last(), Some(&path.as_c_str()));
    }

    #[test]
    fn a_nul_byte_fails_the_spawn_before_anything_starts() {
        let mut command = Background::new("/bin/true");
        command.arg("a\0b");
        let err = command.spawn(&Reaper::new()).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn errors_read_like_strerror() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(super::describe_error(&err), "No such file or directory");
    }
}
