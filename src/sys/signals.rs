//! Signals arrive through a signalfd, read by the event loop like any other fd.
//!
//! [`block_all`] must run first thing in `main`, before the tokio runtime (or any other
//! thread) exists: threads inherit the mask, and a thread that left a signal unblocked
//! would have it delivered there instead of to the signalfd. The fault signals
//! (SEGV, BUS, ILL, FPE, ABRT, TRAP, SYS) stay unblocked: blocking them would hide
//! supd's own crashes. Everything else is handled, real-time signals included (1-64).

use std::os::fd::AsRawFd;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const KERNEL_FAULTS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// Every signal supd handles through the signalfd: 1-64 but the kernel faults (KILL and
/// STOP cannot be blocked; the kernel leaves them out).
///
/// Built by hand, not with `sigfillset`: glibc leaves out 32-33 and musl 32-34, the
/// signals they reserve for threads. supd is single-threaded and its children get a
/// fresh mask (spawn::reset_signals), so it takes those too. Left out, they were never
/// forwarded, and as they default to "terminate", one of them killed a supd that was not
/// PID 1 (orphaning the service); musl's SIGRTMIN is 35, so 34 is the SIGRTMIN of
/// glibc-built senders such as `kill -s RTMIN` on the host.
pub fn handled_set() -> SigSet {
    // SAFETY: sigset_t is plain data; all-zero bits are the empty set.
    let mut raw: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: on Linux, glibc's and musl's sigset_t both begin with the kernel's 64-bit
    // mask (signal N is bit N-1) and are larger than 8 bytes.
    unsafe { std::ptr::write_unaligned(std::ptr::addr_of_mut!(raw).cast::<u64>(), handled_mask()) };
    // SAFETY: a zeroed sigset_t with mask bits set is a valid, initialized set.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
}

/// The kernel's 64-bit mask of [`handled_set`].
fn handled_mask() -> u64 {
    let mut mask = u64::MAX;
    for signal in KERNEL_FAULTS {
        mask &= !(1u64 << (signal as i32 - 1));
    }
    mask
}

/// Block the handled set in this (still single-threaded) process. A raw syscall: glibc's
/// `sigprocmask` silently drops 32-33 from the set.
pub fn block_all() -> nix::Result<()> {
    let mask = handled_mask();
    // SAFETY: plain syscall with a valid 8-byte set (the kernel's sigset size).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as libc::c_long,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// A received signal with the sender's pid (0 from the kernel or the tty).
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: i32,
    pub sender_pid: i32,
}

/// Async reader of the handled signals.
pub struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// Create the signalfd; call inside the runtime, after [`block_all`].
    pub fn new() -> std::io::Result<Self> {
        let fd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        // SAFETY: the SignalFd is owned by the AsyncFd and stays open as long as it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    /// Wait for the next signal.
    pub async fn recv(&mut self) -> std::io::Result<Received> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.get_inner_mut().read_signal() {
                Ok(Some(info)) => {
                    return Ok(Received {
                        signal: info.ssi_signo as i32,
                        sender_pid: info.ssi_pid as i32,
                    })
                }
                Ok(None) => guard.clear_ready(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.get_ref().as_raw_fd()
    }
}

/// A signal's name for logs (`SIGTERM`), or its number for real-time signals.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(40), "signal 40");
    }
}
