//! A one-shot timerfd on CLOCK_REALTIME, armed at an absolute wall-clock time
//! (`TFD_TIMER_ABSTIME`) and read by the event loop, so a process waiting for it sleeps in
//! the kernel until then.
//!
//! It is armed with `TFD_TIMER_CANCEL_ON_SET`: when the wall clock is set (settime, an
//! NTP step, a resume), the wait ends early with [`Wake::ClockSet`], and the caller
//! decides what the step means.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use jiff::Timestamp;
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Why [`Timer::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The time it was armed at has come.
    Expired,
    /// The wall clock was set before that (the read failed with ECANCELED).
    ClockSet,
}

/// A timerfd on CLOCK_REALTIME, readable by the event loop.
pub struct Timer {
    fd: AsyncFd<RawTimer>,
}

/// The timerfd, with the `AsRawFd` that `AsyncFd` needs.
struct RawTimer(TimerFd);

impl AsRawFd for RawTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    /// Create the timer, disarmed; call inside the runtime.
    pub fn new() -> std::io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the RawTimer owns the timerfd, which stays open (and the same fd) until
        // the AsyncFd that owns the RawTimer is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(RawTimer(fd), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Timer { fd })
    }

    /// Arm at an absolute wall-clock time, replacing any earlier time (None: disarm).
    pub fn arm(&self, at: Option<Timestamp>) -> nix::Result<()> {
        let timer = &self.fd.get_ref().0;
        let Some(at) = at else {
            return timer.unset();
        };
        // A zero it_value would disarm; anything before now fires at once.
        let (secs, nanos) = (at.as_second().max(1), at.subsec_nanosecond().max(0));
        let spec = TimeSpec::new(secs, i64::from(nanos));
        timer.set(
            Expiration::OneShot(spec),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )
    }

    /// Wait until the armed time, or until the wall clock is set. A disarmed timer
    /// waits until it is set.
    pub async fn wait(&self) -> std::io::Result<Wake> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match nix::unistd::read(self.fd.get_ref().as_raw_fd(), &mut expirations) {
                Ok(_) => return Ok(Wake::Expired),
                Err(Errno::ECANCELED) => return Ok(Wake::ClockSet),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_already_past_expires_at_once() {
        let runtime = crate::sys::event_loop().unwrap();
        runtime.block_on(async {
            let timer = Timer::new().unwrap();
            timer.arm(Some(Timestamp::UNIX_EPOCH)).unwrap();
            let woke = tokio::time::timeout(std::time::Duration::from_secs(5), timer.wait());
            assert_eq!(woke.await.unwrap().unwrap(), Wake::Expired);
        });
    }

    #[test]
    fn a_disarmed_timer_does_not_expire() {
        let runtime = crate::sys::event_loop().unwrap();
        runtime.block_on(async {
            let timer = Timer::new().unwrap();
            timer.arm(Some(Timestamp::now())).unwrap();
            timer.arm(None).unwrap();
            let woke = tokio::time::timeout(std::time::Duration::from_millis(50), timer.wait());
            assert!(woke.await.is_err(), "a disarmed timer woke");
        });
    }
}
