//! The socket file's lifecycle: the lock, the stale check, bind with its final mode and
//! group, and the unlink at the end (only of the file we bound).

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The socket file this supd bound, and the lock that makes it the only one serving it.
pub(super) struct SocketFile {
    path: PathBuf,
    /// (dev, ino) of the socket file we bound: unlink only that one.
    inode: (u64, u64),
    /// Held for supd's lifetime: one supd per service at a time (see [`lock_service`]).
    _lock: Flock<std::fs::File>,
}

impl SocketFile {
    /// Lock the service, replace a stale socket (never a live one), and bind `path` with
    /// its final `mode` and `group`, non-blocking.
    pub(super) fn bind(
        path: PathBuf,
        mode: u32,
        group: Option<&str>,
    ) -> io::Result<(SocketFile, std::os::unix::net::UnixListener)> {
        let lock = lock_service(&path)?;
        let listener = bind(&path, mode, group)?;
        let meta = std::fs::symlink_metadata(&path)?;
        let file = SocketFile {
            path,
            inode: (meta.dev(), meta.ino()),
            _lock: lock,
        };
        Ok((file, listener))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Unlink the socket file, if it is still the one we bound.
    pub(super) fn remove(&self) {
        let path = &self.path;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.inode => {
                if let Err(e) = std::fs::remove_file(path) {
                    crate::warn!("cannot remove the socket", path = path.display(), error = e);
                }
            }
            Ok(_) => crate::info!(
                "socket file was replaced by someone else; leaving it",
                path = path.display()
            ),
            Err(_) => {}
        }
    }
}

/// Take `<socket>.lock` (flock, non-blocking) before touching the socket file. Without
/// it, two supds starting together could both find the socket stale, and the second's
/// unlink would remove the first's fresh socket, leaving it serving an unlinked file.
/// The kernel drops the lock when its holder dies, so a crashed supd never blocks the
/// next one. The small lock file stays (it is not a socket: `supctl services` skips it).
fn lock_service(socket: &Path) -> io::Result<Flock<std::fs::File>> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is live: another supd holds {}; not taking it over",
                    socket.display(),
                    path.display()
                ),
            )
        } else {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("cannot lock {}: {errno}", path.display()),
            )
        }
    })
}

/// Replace a stale socket, never a live one; bind with the final mode before accepting.
fn bind(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match answers(path) {
            Ok(true) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is live: another supd serves this service; not taking it over",
                        path.display()
                    ),
                ))
            }
            Ok(false) => {
                crate::info!("replacing stale socket", path = path.display());
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot check existing socket {}: {e}", path.display()),
                ))
            }
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind with a umask that leaves the socket owner-only, then open it up: nobody else
    // can connect before mode and group are final. (The runtime is single-threaded, so
    // the process-wide umask change races nothing.)
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    let setup = || -> io::Result<()> {
        if let Some(group) = group {
            let gid = resolve_group(group)?;
            nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::from)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)
    };
    if let Err(e) = setup() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// Whether someone listens on the socket file at `path`. The connect is non-blocking: a
/// blocking one waits for as long as a live listener's backlog stays full (a stopped or
/// flooded supd), and this runs in supd's only thread, before it serves its own service.
fn answers(path: &Path) -> io::Result<bool> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &address) {
        // Accepted, or queued / backlog full: a listener exists.
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(true),
        // Nobody listens (ECONNREFUSED), or the file just went away.
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn resolve_group(group: &str) -> io::Result<nix::unistd::Gid> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown socket group {group:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}
