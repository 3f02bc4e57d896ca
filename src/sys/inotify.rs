//! inotify on a file's directory, read by the event loop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// inotify on the schedule's directory: any write-close, rename into it or attribute
/// change may have changed the file (the content is compared before reloading).
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
}

impl Watcher {
    pub fn new(file: &Path) -> std::io::Result<Watcher> {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // SAFETY: plain syscalls; the fd is owned right away.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh inotify fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::other("directory name contains NUL"))?;
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_ATTRIB;
        // SAFETY: valid fd and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), mask) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the inotify fd.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Watcher { fd })
    }

    /// Wait for events and drain them.
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
