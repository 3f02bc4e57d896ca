//! Signals arrive through a signalfd: read in batches by the init's plain `ppoll` loop,
//! or one at a time by the scheduler's event loop like any other fd.
//!
//! [`block_all`] must run first thing in `main`, before the tokio runtime (or any other
//! thread) exists: threads inherit the mask, and a thread that left a signal unblocked
//! would have it delivered there instead of to the signalfd. The fault signals
//! (SEGV, BUS, ILL, FPE, ABRT, TRAP, SYS) stay unblocked: blocking them would hide
//! supd's own crashes. Everything else is handled, real-time signals included (1-64).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
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
/// signals they reserve for threads. supd uses none of what needs them (no thread
/// cancellation, no setuid-family call or `setrlimit`, which musl would broadcast to
/// every thread with 34: with it blocked that would hang) and its children get a fresh
/// mask (spawn::reset_signals), so it takes those too. Left out, they were never
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
/// `sigprocmask` silently drops 32-33 from the set. Also sets 32-34 to SIG_IGN (see
/// [`block_reserved`]): the safety net for the moments a libc unblocks them in a thread.
pub fn block_all() -> nix::Result<()> {
    ignore_reserved();
    block(handled_mask())
}

/// The signals glibc (32-33) and musl (32-34) reserve for their threads.
const RESERVED: u64 = 0b111 << 31;

/// Block 32-34 again in the calling thread. The libcs unblock them behind supd's back:
/// musl's first `pthread_create` in the creating thread, every new thread (glibc: 32;
/// musl: those its creator had unblocked), and musl's `posix_spawn`, which restores
/// the caller's mask through `pthread_sigmask`, which hides 32-34 from the mask it
/// saves. A thread with one of them unblocked would take a process-directed one (34 is
/// glibc's SIGRTMIN: `kill -s RTMIN` from the host) instead of the init's signalfd, and
/// its default action would kill supd. Call it right after each of those (see
/// `sys::thread::spawn` and `sys::spawn`); between the two, the SIG_IGN that
/// [`block_all`] set makes such a signal lost rather than fatal.
pub fn block_reserved() {
    // Nothing to report: the set is valid, and the call cannot fail otherwise.
    let _ = block(RESERVED);
}

/// SIG_IGN for 32-34 in this process (raw `rt_sigaction`: the libcs refuse those). Safe
/// because supd uses none of what the libcs need them for (thread cancellation, musl's
/// `__synccall`, SIGEV_THREAD timers), and every child gets SIG_DFL for all 64
/// (`sys::spawn`): ignored, not blocked-and-ignored, only in a thread that has them
/// unblocked, where the init would not have read them anyway.
fn ignore_reserved() {
    for signal in 32..=34 {
        set_disposition(signal, libc::SIG_IGN);
    }
}

/// Set `signal`'s disposition to `handler` (SIG_DFL or SIG_IGN) with a raw
/// `rt_sigaction`, which takes 32-34 where the libcs' wrappers refuse them. Fails
/// silently (KILL, STOP). Async-signal-safe: `sys::spawn` calls it between fork and exec.
pub(crate) fn set_disposition(signal: i32, handler: libc::sighandler_t) {
    // The kernel's `struct sigaction` (generic layout, x86_64 and aarch64 alike).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let action = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: plain syscall with a valid kernel sigaction, no old-action pointer, and the
    // kernel's sigset size.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal as libc::c_long,
            &action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// `rt_sigprocmask(SIG_BLOCK, mask)` for the calling thread.
fn block(mask: u64) -> nix::Result<()> {
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

/// How many signals one `read(2)` of the signalfd may return: a burst (1,000 USR1, a
/// storm of SIGCHLD) costs one syscall per this many, not one each.
pub const BATCH: usize = 16;

/// A batch of received signals, filled by [`SignalFd::read_batch`].
pub type Batch = [Received; BATCH];

/// An empty [`Batch`].
pub const fn empty_batch() -> Batch {
    [Received {
        signal: 0,
        sender_pid: 0,
    }; BATCH]
}

/// The signalfd of the handled set, non-blocking. Read it in batches, either after
/// `poll` ([`SignalFd::wait`], the init without an event loop) or when the event loop
/// says it is readable ([`Signals`]).
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Create the signalfd; call after [`block_all`].
    pub fn new() -> std::io::Result<Self> {
        let set = handled_set();
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: a valid sigset; -1 asks for a new fd.
        let raw = unsafe { libc::signalfd(-1, set.as_ref(), flags) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Every signal pending, up to [`BATCH`], without blocking; 0 when none is.
    pub fn read_batch(&self, out: &mut Batch) -> std::io::Result<usize> {
        self.read_into(out)
    }

    /// Up to `out.len()` (at most [`BATCH`]) pending signals, without blocking.
    fn read_into(&self, out: &mut [Received]) -> std::io::Result<usize> {
        const SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let want = out.len().min(BATCH);
        // Not zeroed: 2 KiB of memset per read cost more than the rest of the read.
        let mut raw = std::mem::MaybeUninit::<[libc::signalfd_siginfo; BATCH]>::uninit();
        loop {
            // SAFETY: read into a buffer of exactly that many bytes, owned by us.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    raw.as_mut_ptr().cast::<libc::c_void>(),
                    SIZE * want,
                )
            };
            if n >= 0 {
                // The kernel returns whole siginfos only.
                let count = n as usize / SIZE;
                let first = raw.as_ptr().cast::<libc::signalfd_siginfo>();
                for (index, slot) in out.iter_mut().enumerate().take(count) {
                    // SAFETY: the kernel wrote `count` whole siginfos from the start.
                    let info = unsafe { &*first.add(index) };
                    *slot = Received {
                        signal: info.ssi_signo as i32,
                        sender_pid: info.ssi_pid as i32,
                    };
                }
                return Ok(count);
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(err),
            }
        }
    }

    /// One pending signal, if any, without blocking.
    pub fn read_one(&self) -> std::io::Result<Option<Received>> {
        let mut one = [Received {
            signal: 0,
            sender_pid: 0,
        }; 1];
        Ok((self.read_into(&mut one)? == 1).then_some(one[0]))
    }

    /// Block until a signal is pending or `timeout` has passed (None: no timeout).
    /// Returns whether a signal is pending.
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<bool> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let spec = timeout.map(|t| libc::timespec {
            // Capped: a grace period of years still fits in time_t.
            tv_sec: t.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
        });
        let spec_ptr = spec
            .as_ref()
            .map_or(std::ptr::null(), |spec| spec as *const libc::timespec);
        // SAFETY: one valid pollfd, a valid or null timespec, no signal mask change.
        let rc = unsafe { libc::ppoll(&mut pollfd, 1, spec_ptr, std::ptr::null()) };
        match rc {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The signalfd inside a tokio event loop (the scheduler's).
pub struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// Create the signalfd; call inside the runtime, after [`block_all`].
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: the SignalFd is owned by the AsyncFd and stays open as long as it.
        let fd = unsafe { AsyncFd::register_with_interest(SignalFd::new()?, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Wait for the next signal (one at a time: the scheduler's few signals).
    pub async fn recv(&mut self) -> std::io::Result<Received> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.get_inner().read_one()? {
                Some(received) => return Ok(received),
                None => guard.clear_ready(),
            }
        }
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
