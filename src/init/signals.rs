//! Signals arrive through a signalfd, read by the event loop like any other fd.
//!
//! [`block_all`] must run first thing in `main`, before the tokio runtime (or any other
//! thread) exists: threads inherit the mask, and a thread that left a signal unblocked
//! would have it delivered there instead of to the signalfd. The fault signals
//! (SEGV, BUS, ILL, FPE, ABRT, TRAP, SYS) stay unblocked: blocking them would hide
//! supd's own crashes.

use std::os::fd::AsRawFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
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

/// Every signal supd handles through the signalfd.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::all();
    for signal in KERNEL_FAULTS {
        set.remove(signal);
    }
    set
}

/// Block the handled set in this (still single-threaded) process.
pub fn block_all() -> nix::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)
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
