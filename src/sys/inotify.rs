//! An inotify watch on one path, read by the event loop. It tells that something
//! happened, not what: the events are drained unparsed, and the caller looks again at
//! what it watches.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One inotify instance watching one path.
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
}

impl Watcher {
    /// Watch `path` for the events in `mask` (`libc::IN_*`); call inside the runtime.
    pub fn new(path: &Path, mask: u32) -> std::io::Result<Watcher> {
        // SAFETY: inotify_init1 takes only flags and touches no memory of ours.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, open inotify fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::other("path contains NUL"))?;
        // SAFETY: `fd` is an open inotify fd and `c_path` a NUL-terminated string that
        // outlives the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_path.as_ptr(), mask) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open (and the same
        // fd) until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Watcher { fd })
    }

    /// Wait until at least one event arrived, and drain all that are queued.
    pub async fn changed(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut got = false;
            loop {
                match nix::unistd::read(self.fd.get_ref().as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(_) => got = true,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if got {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_file_written_in_the_watched_directory_is_seen() {
        let dir = std::env::temp_dir().join(format!("supd-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = crate::sys::event_loop().unwrap();
        runtime.block_on(async {
            let mut watcher = Watcher::new(&dir, libc::IN_CLOSE_WRITE).unwrap();
            std::fs::write(dir.join("file"), b"x").unwrap();
            let seen = tokio::time::timeout(Duration::from_secs(5), watcher.changed());
            seen.await.unwrap().unwrap();
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
