//! stderr that never blocks supd.
//!
//! supd's stderr is the container log: a pipe to the log driver, which may stall (a
//! stuck driver, a full journald). PID 1 blocked in `write(2)` reaps nothing, forwards
//! nothing and answers no request, so log lines are written without blocking: what does
//! not fit waits in a small queue, what does not fit there is dropped and counted, and
//! the count is reported as soon as stderr takes lines again.
//!
//! `O_NONBLOCK` cannot be set on fd 2 itself: its open file description is shared with
//! the service, whose writes would start failing with EAGAIN. So for a pipe or a
//! terminal supd opens `/proc/self/fd/2` again (a new description of the same pipe or
//! tty) with `O_NONBLOCK`; a socket is written with `MSG_DONTWAIT`; a regular file does
//! not block. Without /proc, supd polls for room before each write of at most
//! `PIPE_BUF` bytes (the kernel writes those whole or not at all).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Most bytes kept waiting for a stalled stderr (whole lines; beyond this, lines are
/// dropped and counted). A line longer than this is still written when nothing waits.
const QUEUE_LIMIT: usize = 16 * 1024;

/// How a write reaches stderr.
enum Target {
    /// A regular file or block device: writes do not block on a reader.
    Blocking,
    /// A private non-blocking description of the same pipe or terminal.
    Reopened(OwnedFd),
    /// A socket: `send(MSG_DONTWAIT)`.
    Socket,
    /// No /proc to reopen through: poll for room, then write at most PIPE_BUF bytes.
    Polled,
}

struct Sink {
    target: Target,
    /// Bytes accepted but not yet written, in order (whole lines, the first maybe
    /// partly written already).
    queue: VecDeque<u8>,
    /// Lines dropped since stderr last took everything.
    dropped: u64,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Choose how to write fd 2. Called once by `log::init`; before that, `write` opens
/// lazily.
pub fn open() {
    let sink = Sink {
        target: target(),
        queue: VecDeque::new(),
        dropped: 0,
    };
    if let Ok(mut slot) = SINK.lock() {
        *slot = Some(sink);
    }
}

fn target() -> Target {
    // SAFETY: `stat` is plain data, valid zeroed; fstat fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on fd 2 with a valid out-pointer.
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut stat) } != 0 {
        return Target::Blocking; // no stderr: writes fail at once, nothing blocks
    }
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK => Target::Blocking,
        libc::S_IFSOCK => Target::Socket,
        _ => reopen().map_or(Target::Polled, Target::Reopened),
    }
}

/// A new open file description of whatever fd 2 is, non-blocking.
fn reopen() -> Option<OwnedFd> {
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a NUL-terminated literal path and plain flags.
    let fd = unsafe { libc::open(c"/proc/self/fd/2".as_ptr(), flags) };
    // SAFETY: a successful open returns a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Write one formatted line (ending in a newline). `notice` formats the line that
/// reports N dropped lines; it is written before `line` once stderr has room again.
pub fn write(line: &str, notice: impl FnOnce(u64) -> String) {
    let Ok(mut slot) = SINK.lock() else {
        return;
    };
    let sink = slot.get_or_insert_with(|| Sink {
        target: target(),
        queue: VecDeque::new(),
        dropped: 0,
    });
    sink.flush();
    if sink.queue.is_empty() && sink.dropped > 0 {
        let text = notice(sink.dropped);
        sink.dropped = 0;
        sink.push(text.as_bytes());
    }
    // Nothing waiting: try the line, however long (what stderr does not take now waits).
    // Something waiting: queue it only within the limit.
    if !sink.queue.is_empty() && sink.queue.len() + line.len() > QUEUE_LIMIT {
        sink.dropped += 1;
        return;
    }
    sink.push(line.as_bytes());
}

/// At exit: give a stalled stderr up to `limit` to take what waits (and the report of
/// dropped lines), so that the last lines of a container's life are not lost to a
/// reader that was merely slow. Bounded: exit is never held up longer.
pub fn finish(limit: std::time::Duration, notice: impl FnOnce(u64) -> String) {
    let Ok(mut slot) = SINK.lock() else {
        return;
    };
    let Some(sink) = slot.as_mut() else {
        return;
    };
    let deadline = std::time::Instant::now() + limit;
    let mut notice = Some(notice);
    loop {
        sink.flush();
        if sink.queue.is_empty() {
            match (sink.dropped, notice.take()) {
                (dropped, Some(notice)) if dropped > 0 => {
                    sink.dropped = 0;
                    sink.push(notice(dropped).as_bytes());
                    continue;
                }
                _ => return,
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !sink.wait_for_room(left) {
            return;
        }
    }
}

impl Sink {
    /// Wait up to `limit` for stderr to take bytes; false when it did not.
    fn wait_for_room(&self, limit: std::time::Duration) -> bool {
        let fd = match &self.target {
            Target::Reopened(fd) => fd.as_raw_fd(),
            _ => libc::STDERR_FILENO,
        };
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, millis) };
        n == 1 && poll.revents & libc::POLLOUT != 0
    }

    /// Queue `bytes` behind what waits, then write as much as stderr takes now.
    fn push(&mut self, bytes: &[u8]) {
        if self.queue.is_empty() {
            let written = self.write_some(bytes);
            if written < bytes.len() {
                self.queue.extend(&bytes[written..]);
            }
        } else {
            self.queue.extend(bytes);
            self.flush();
        }
    }

    /// Write queued bytes until stderr would block.
    fn flush(&mut self) {
        while !self.queue.is_empty() {
            let (front, _) = self.queue.as_slices();
            let written = self.write_some(front);
            if written == 0 {
                return;
            }
            self.queue.drain(..written);
        }
    }

    /// One write without blocking: how many bytes stderr took. A broken stderr (EPIPE,
    /// EBADF) takes everything: there is nobody to tell.
    fn write_some(&self, bytes: &[u8]) -> usize {
        let result = match &self.target {
            Target::Blocking => raw_write(libc::STDERR_FILENO, bytes),
            Target::Reopened(fd) => raw_write(fd.as_raw_fd(), bytes),
            Target::Socket => {
                // SAFETY: a valid buffer of `len` bytes on fd 2.
                let n = unsafe {
                    libc::send(
                        libc::STDERR_FILENO,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                result_of(n)
            }
            Target::Polled => {
                if !has_room(libc::STDERR_FILENO) {
                    return 0;
                }
                raw_write(
                    libc::STDERR_FILENO,
                    &bytes[..bytes.len().min(libc::PIPE_BUF)],
                )
            }
        };
        match result {
            Ok(n) => n,
            Err(errno) if errno == libc::EAGAIN || errno == libc::EINTR => 0,
            Err(_) => bytes.len(),
        }
    }
}

fn raw_write(fd: RawFd, bytes: &[u8]) -> Result<usize, i32> {
    // SAFETY: a valid buffer of `len` bytes.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    result_of(n)
}

fn result_of(n: isize) -> Result<usize, i32> {
    if n >= 0 {
        Ok(n as usize)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Whether a write to `fd` would not block now.
fn has_room(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n == 1 && poll.revents & libc::POLLOUT != 0
}
