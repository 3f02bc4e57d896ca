//! A timerfd on CLOCK_REALTIME, armed at an absolute time, read by the event loop.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use jiff::Timestamp;
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A timerfd on CLOCK_REALTIME, readable by the event loop.
pub struct Timer {
    fd: AsyncFd<TimerFdRaw>,
}

struct TimerFdRaw(TimerFd);

impl AsRawFd for TimerFdRaw {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    pub fn new() -> std::io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the timerfd and keeps it open as long as itself.
        let fd = unsafe { AsyncFd::register_with_interest(TimerFdRaw(fd), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Timer { fd })
    }

    /// Arm at an absolute wall-clock time (None: disarm).
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

    /// Wait for expiry; Ok(true) when the wall clock was set (ECANCELED).
    pub async fn wait(&self) -> std::io::Result<bool> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            match nix::unistd::read(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(_) => return Ok(false),
                Err(Errno::ECANCELED) => return Ok(true),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
