//! The socket file's lifecycle: the lock, the stale check, bind with its final mode and
//! group, and the unlink at the end (only of the file we bound).
//!
//! The socket directory may be writable by others (a Kubernetes `emptyDir` is 0777,
//! `/tmp`-like dirs are 1777), so nothing here follows a symlink, blocks on a FIFO or
//! acts on a path after deciding on what it named:
//! - the lock file is created with `O_EXCL|O_NOFOLLOW`, or opened with
//!   `O_NOFOLLOW|O_NONBLOCK` and `fstat`ed; anything but a regular file of ours with one
//!   link is unlinked (by name: `unlink` never follows) and replaced ([`lock_verdict`]);
//! - a socket found live is believed only when its listener (SO_PEERCRED) is root or
//!   supd's own uid; an impostor's is unlinked and replaced ([`socket_verdict`]);
//! - the socket is born with its final mode and group (umask and fsgid around `bind`):
//!   no chmod or chown by path after bind, the window the symlink-swap attack used.
//!
//! The decisions are pure functions of what was found, in `verdict.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::fcntl::{Flock, FlockArg};

use super::verdict::{lock_verdict, socket_verdict, LockVerdict, Probe, SocketVerdict};
use crate::sys::fs::{self, Kind, Stat};

/// One try at taking the service's socket.
pub(super) enum Attempt {
    /// Ours: serve it.
    /// (Shared with the init's thread, which may unlink it: `Shared::remove_socket`.)
    Bound(Arc<SocketFile>, std::os::unix::net::UnixListener),
    /// Not now (another supd holds the lock or serves the socket, a planted file could
    /// not be replaced yet): try again after `retry`. `reason` says why, for the log.
    Wait {
        reason: String,
        retry: std::time::Duration,
    },
}

/// How often a supd waiting for the lock tries again: well within the 1 s in which it
/// must serve once the holder has gone (DESIGN §7).
pub(super) const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// How often a supd that found a live socket of another (lock-less) supd, or a planted
/// file it could not remove, tries again: each probe is a connection the other supd
/// has to accept.
pub(super) const DEFER_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The socket file this supd bound, and the lock that makes it the only one serving it.
pub(super) struct SocketFile {
    path: PathBuf,
    /// The socket file we bound: unlink only that one.
    bound: Stat,
    /// Held until the socket is removed: one supd per service at a time (see
    /// [`lock_service`]); released right after the unlink so that a waiting successor
    /// takes over at once.
    /// `None` once removed (the mutex also makes the removal happen once, from either
    /// thread).
    lock: Mutex<Option<Flock<std::fs::File>>>,
}

impl SocketFile {
    /// Lock the service, replace a stale socket or an impostor (never a live socket of
    /// another supd), and bind `path` with its final `mode` and `group`, non-blocking.
    /// `Err` is for what retrying will not fix (a missing directory, a bad group, a
    /// directory at the socket's name).
    pub(super) fn try_bind(path: &Path, mode: u32, group: Option<&str>) -> io::Result<Attempt> {
        let own_uid = fs::euid();
        let gid = group.map(resolve_group).transpose()?;
        let lock = match lock_service(path, own_uid)? {
            Locked::Yes(lock) => lock,
            Locked::No { reason, retry } => return Ok(Attempt::Wait { reason, retry }),
        };
        let found = match fs::lstat(path) {
            Ok(st) => Some(st),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let probe = match found {
            Some(st) if st.kind == Kind::Socket => answers(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot check existing socket {}: {e}", path.display()),
                )
            })?,
            _ => Probe::Refused,
        };
        let verdict = socket_verdict(found.map(|st| (st.kind, st.uid)), probe, own_uid);
        match (verdict, found) {
            (SocketVerdict::Bind, _) => {}
            (SocketVerdict::Defer, _) => {
                return Ok(Attempt::Wait {
                    reason: format!(
                        "{} is live: another supd (uid {}) serves this service; not taking \
                         it over",
                        path.display(),
                        match probe {
                            Probe::Live {
                                peer_uid: Some(uid),
                            } => uid,
                            _ => found.map_or(0, |st| st.uid),
                        }
                    ),
                    retry: DEFER_RETRY,
                })
            }
            (SocketVerdict::Refuse, Some(st)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is a {} (uid {}), not a socket; not replacing it",
                        path.display(),
                        st.kind,
                        st.uid
                    ),
                ))
            }
            (SocketVerdict::ReplaceStale, Some(st))
            | (SocketVerdict::ReplaceImpostor, Some(st)) => {
                if verdict == SocketVerdict::ReplaceStale {
                    crate::info!("replacing stale socket", path = path.display());
                } else {
                    crate::warn!(
                        "replacing an impostor at the socket's path (we hold the lock, so no \
                         supd serves it)",
                        path = path.display(),
                        kind = st.kind,
                        file_uid = st.uid,
                        peer_uid = match probe {
                            Probe::Live {
                                peer_uid: Some(uid),
                            } => uid.to_string(),
                            _ => "-".to_string(),
                        }
                    );
                }
                if let Err(e) = fs::unlink_if_same(path, &st) {
                    return Ok(Attempt::Wait {
                        reason: format!("cannot remove {}: {e}", path.display()),
                        retry: DEFER_RETRY,
                    });
                }
            }
            // A verdict other than Bind always comes with something found.
            (_, None) => {}
        }
        let (listener, bound) = match bind_final(path, mode, gid)? {
            Ok(bound) => bound,
            // Someone put a file there since the check, or swapped ours right after bind
            // (an attacker in a writable dir): decide again on the next try.
            Err(reason) => {
                return Ok(Attempt::Wait {
                    reason,
                    retry: LOCK_RETRY,
                })
            }
        };
        Ok(Attempt::Bound(
            Arc::new(SocketFile {
                path: path.to_path_buf(),
                bound,
                lock: Mutex::new(Some(lock)),
            }),
            listener,
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Unlink the socket file, if it is still the one we bound; then release the lock.
    pub(super) fn remove(&self) {
        let mut lock = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if lock.is_none() {
            return; // removed already
        }
        let path = &self.path;
        match fs::unlink_if_same(path, &self.bound) {
            Ok(true) => {}
            Ok(false) => crate::info!(
                "socket file was replaced or removed by someone else; leaving it",
                path = path.display()
            ),
            Err(e) => crate::warn!("cannot remove the socket", path = path.display(), error = e),
        }
        lock.take();
    }
}

enum Locked {
    Yes(Flock<std::fs::File>),
    No {
        reason: String,
        retry: std::time::Duration,
    },
}

/// Take `<socket>.lock` (flock, non-blocking) before touching the socket file. Without
/// it, two supds starting together could both find the socket stale, and the second's
/// unlink would remove the first's fresh socket, leaving it serving an unlinked file.
/// The kernel drops the lock when its holder dies, so a crashed supd never blocks the
/// next one. The small lock file stays (it is not a socket: `supctl services` skips it).
///
/// The file is created `O_EXCL|O_NOFOLLOW` or opened `O_NOFOLLOW|O_NONBLOCK` and checked
/// with `fstat` ([`lock_verdict`]): a FIFO planted there cannot block supd in `open`, a
/// symlink cannot make it create a file at its target. After locking, the name must
/// still be the file we locked (someone may have replaced it meanwhile).
fn lock_service(socket: &Path, own_uid: u32) -> io::Result<Locked> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    // A few rounds: each one that finds the name changed under it starts over.
    for _ in 0..4 {
        let file = match fs::create_new(&path, 0o600) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::open_existing(&path) {
                Ok(file) => {
                    let st = fs::fstat(&file).map_err(annotate)?;
                    if lock_verdict(st.kind, st.uid, st.nlink, own_uid) == LockVerdict::Use {
                        file
                    } else {
                        drop(file);
                        if let Some(no) = replace_lock(&path, &st)? {
                            return Ok(no);
                        }
                        continue;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // ELOOP (a symlink), ENXIO (a socket), EACCES (another uid's file)...:
                // look at the name itself.
                Err(open_error) => match fs::lstat(&path) {
                    Ok(st)
                        if lock_verdict(st.kind, st.uid, st.nlink, own_uid)
                            == LockVerdict::Replace =>
                    {
                        if let Some(no) = replace_lock(&path, &st)? {
                            return Ok(no);
                        }
                        continue;
                    }
                    Ok(_) => return Err(annotate(open_error)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(annotate(e)),
                },
            },
            Err(e) => return Err(annotate(e)),
        };
        let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Ok(Locked::No {
                    reason: format!(
                        "{} is live: another supd holds {}; waiting for it to leave",
                        socket.display(),
                        path.display()
                    ),
                    retry: LOCK_RETRY,
                })
            }
            Err((_, errno)) => {
                return Err(io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("cannot lock {}: {errno}", path.display()),
                ))
            }
        };
        let ours = fs::fstat(&locked).map_err(annotate)?;
        match fs::lstat(&path) {
            Ok(now) if now.same_file(&ours) => return Ok(Locked::Yes(locked)),
            _ => continue,
        }
    }
    Ok(Locked::No {
        reason: format!("{} keeps changing under supd", path.display()),
        retry: LOCK_RETRY,
    })
}

/// Unlink a lock file that failed [`lock_verdict`]; `Some` when that is not possible
/// now (e.g. another uid's file in a sticky directory, for a supd that is not root).
fn replace_lock(path: &Path, st: &Stat) -> io::Result<Option<Locked>> {
    match fs::unlink_if_same(path, st) {
        Ok(removed) => {
            if removed {
                crate::warn!(
                    "refusing the lock file; replaced it",
                    path = path.display(),
                    kind = st.kind,
                    uid = st.uid,
                    mode = format!("{:04o}", st.mode),
                    links = st.nlink
                );
            }
            Ok(None)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            Ok(Some(Locked::No {
                reason: format!(
                    "refusing the lock file: {} is a {} of uid {} that supd may not remove \
                     ({e}); waiting for it to go",
                    path.display(),
                    st.kind,
                    st.uid
                ),
                retry: DEFER_RETRY,
            }))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
    }
}

/// Bind `path` born with its final mode and group: the umask leaves exactly `mode`
/// (bits above 0777 mean nothing for a socket), and the thread's fsgid is the group.
/// Nothing acts on the path after bind, except when the fsgid could not be set (a
/// non-root supd naming a supplementary group) or a set-group-ID directory imposed its
/// own group: then `fchownat(AT_SYMLINK_NOFOLLOW)` on the name, after checking it is
/// still our socket. The umask is process-wide: supd's runtime is one thread, and this
/// runs without an `.await`, so no spawn (which would inherit it) can happen meanwhile.
/// `Ok(Err(reason))`: the name was taken or swapped under us; worth another try.
fn bind_final(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> io::Result<Result<(std::os::unix::net::UnixListener, Stat), String>> {
    let saved_fsgid = gid.map(fs::set_fsgid);
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(!mode & 0o777));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old_umask);
    if let Some(saved) = saved_fsgid {
        fs::set_fsgid(saved);
    }
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            return Ok(Err(format!("cannot bind {}: {e}", path.display())))
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot bind {}: {e}", path.display()),
            ))
        }
    };
    // Whatever is at the name now is not ours to remove when it is not our socket.
    let st = match fs::lstat(path) {
        Ok(st) if st.kind == Kind::Socket && st.nlink == 1 => st,
        Ok(st) => {
            return Ok(Err(format!(
                "{} was replaced right after bind (now a {} of uid {})",
                path.display(),
                st.kind,
                st.uid
            )))
        }
        Err(e) => {
            return Ok(Err(format!(
                "{} vanished right after bind: {e}",
                path.display()
            )))
        }
    };
    let setup = || -> io::Result<()> {
        if let Some(gid) = gid {
            if st.gid != gid {
                fs::lchgrp(path, gid).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot set group {gid} on {}: {e}", path.display()),
                    )
                })?;
            }
        }
        if st.mode != mode & 0o777 {
            crate::warn!(
                "the socket's mode is not the one asked for (a default ACL on the directory?)",
                path = path.display(),
                mode = format!("{:04o}", st.mode),
                wanted = format!("{:04o}", mode & 0o777)
            );
        }
        listener.set_nonblocking(true)
    };
    if let Err(e) = setup() {
        let _ = fs::unlink_if_same(path, &st);
        return Err(e);
    }
    Ok(Ok((listener, st)))
}

/// Whether someone listens on the socket file at `path`, and who. The connect is
/// non-blocking: a blocking one waits for as long as a live listener's backlog stays
/// full (a stopped or flooded supd), and this runs in supd's only thread, before it
/// serves its own service.
fn answers(path: &Path) -> io::Result<Probe> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &address) {
        // Accepted or queued: the listener's credentials are known.
        Ok(()) | Err(Errno::EINPROGRESS) => {
            let peer_uid = getsockopt(&fd, sockopt::PeerCredentials)
                .ok()
                .map(|cred| cred.uid());
            Ok(Probe::Live { peer_uid })
        }
        // Backlog full: a listener exists, its credentials are not known.
        Err(Errno::EAGAIN) => Ok(Probe::Live { peer_uid: None }),
        // Nobody listens (ECONNREFUSED), or the file just went away.
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Ok(Probe::Refused),
        Err(e) => Err(e.into()),
    }
}

fn resolve_group(group: &str) -> io::Result<u32> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown socket group {group:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}
