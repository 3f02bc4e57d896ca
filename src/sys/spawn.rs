//! Spawning children with a clean slate.
//!
//! supd blocks nearly every signal (they are read from a signalfd), and std's `Command`
//! passes the parent's signal mask on to the child. So every child supd starts goes
//! through [`prepare`], whose `pre_exec` hook (between fork and exec: async-signal-safe
//! libc calls only, no allocation) puts it in its own process group, optionally makes
//! that group the terminal's foreground, empties the signal mask, resets every
//! disposition to SIG_DFL (SIG_IGN would survive exec) and marks inherited fds >= 3
//! close-on-exec.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where the child's process group sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Its own group; if stdin is a terminal whose foreground group is supd's, that
    /// group becomes the foreground one (interactive `docker run -it`: job control and
    /// Ctrl-C reach the service).
    Foreground,
    /// Its own group, never touching the terminal (callbacks).
    Background,
}

/// Install the clean-slate `pre_exec` hook on `command`.
pub fn prepare(command: &mut Command, group: Group) {
    // SAFETY: the closure only makes async-signal-safe libc calls and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Hand the terminal over only if it is ours to give: supd's group (which we
            // are still in) is its foreground group, as when supd leads the session of
            // `docker run -it`. A supd started as a background job must not steal the
            // terminal from the shell that started it.
            let take_terminal = group == Group::Foreground
                && libc::isatty(0) == 1
                && libc::tcgetpgrp(0) == libc::getpgrp();
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
    // The kernel's `struct sigaction` (generic layout, x86_64 and aarch64 alike).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    const SIGSET_SIZE: usize = 8;
    // SIGRTMAX is 64 on Linux; KILL and STOP simply fail.
    for signal in 1..=64 {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal as libc::c_long,
            &default as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            SIGSET_SIZE,
        );
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
/// Only async-signal-safe calls; meant for `pre_exec`.
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

/// A human description of a spawn error without std's "(os error N)" suffix.
pub fn describe_error(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_read_like_strerror() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(super::describe_error(&err), "No such file or directory");
    }
}
