//! What to do with what was found in the socket directory: pure decisions from a file's
//! type, owner and link count, and from what a live socket answered (`socket.rs` acts
//! on them). Kept apart and public so that the fuzzer and the unit tests drive them
//! without a filesystem.

use crate::sys::fs::Kind;

/// What to do with the file found at `<socket>.lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockVerdict {
    /// A regular file of ours: lock it.
    Use,
    /// Anything else (a FIFO, a symlink, a device, another uid's file, a hard link):
    /// never open it for locking; unlink the name and create our own.
    Replace,
}

/// The lock file decision: only a regular file owned by supd's own uid with exactly
/// one link is used. The mode is not part of it: supd creates the file 0600, and a
/// file of ours that others can read only lets them hold the lock (what a writable
/// directory allows anyway), never follow us anywhere.
pub fn lock_verdict(kind: Kind, uid: u32, nlink: u64, own_uid: u32) -> LockVerdict {
    if kind == Kind::Regular && uid == own_uid && nlink == 1 {
        LockVerdict::Use
    } else {
        LockVerdict::Replace
    }
}

/// What the non-blocking probe connect to an existing socket file found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nobody listens (ECONNREFUSED), or the file went away.
    Refused,
    /// A listener exists. `peer_uid` is its SO_PEERCRED uid when the connect went
    /// through; `None` when its backlog was full (EAGAIN): then the file's owner stands in.
    Live { peer_uid: Option<u32> },
}

/// What to do about the name `<service>-request.sock`, with our lock held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketVerdict {
    /// Nothing there: bind.
    Bind,
    /// A socket nobody listens on: unlink it and bind.
    ReplaceStale,
    /// A file of another uid (a live socket, a symlink, anything but a directory): an
    /// impostor, since a legitimate supd would hold the lock we hold. Unlink and bind.
    ReplaceImpostor,
    /// A live socket of root or of our own uid without the lock (a supd from before the
    /// lock): leave it alone and try again later.
    Defer,
    /// Something we will not remove (a directory, a non-socket file of root or ours).
    Refuse,
}

/// Whether a uid may own the socket another supd serves: root, or supd's own uid.
pub fn trusted_owner(uid: u32, own_uid: u32) -> bool {
    uid == 0 || uid == own_uid
}

/// The socket path decision. `found`: the `lstat` of the name (kind, owner), `None`
/// when nothing is there; `probe`: for a socket, what connecting to it found.
pub fn socket_verdict(found: Option<(Kind, u32)>, probe: Probe, own_uid: u32) -> SocketVerdict {
    let Some((kind, file_uid)) = found else {
        return SocketVerdict::Bind;
    };
    match kind {
        Kind::Directory => SocketVerdict::Refuse,
        Kind::Socket => match probe {
            Probe::Refused => SocketVerdict::ReplaceStale,
            Probe::Live { peer_uid } => {
                if trusted_owner(peer_uid.unwrap_or(file_uid), own_uid) {
                    SocketVerdict::Defer
                } else {
                    SocketVerdict::ReplaceImpostor
                }
            }
        },
        _ if trusted_owner(file_uid, own_uid) => SocketVerdict::Refuse,
        _ => SocketVerdict::ReplaceImpostor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_decisions() {
        assert_eq!(lock_verdict(Kind::Regular, 0, 1, 0), LockVerdict::Use);
        assert_eq!(lock_verdict(Kind::Regular, 1000, 1, 1000), LockVerdict::Use);
        for kind in [Kind::Fifo, Kind::Symlink, Kind::Socket, Kind::CharDevice] {
            assert_eq!(lock_verdict(kind, 0, 1, 0), LockVerdict::Replace);
        }
        assert_eq!(
            lock_verdict(Kind::Regular, 65534, 1, 0),
            LockVerdict::Replace
        );
        assert_eq!(lock_verdict(Kind::Regular, 0, 2, 0), LockVerdict::Replace);
    }

    #[test]
    fn socket_decisions() {
        let live = |uid| Probe::Live {
            peer_uid: Some(uid),
        };
        assert_eq!(socket_verdict(None, Probe::Refused, 0), SocketVerdict::Bind);
        assert_eq!(
            socket_verdict(Some((Kind::Socket, 0)), Probe::Refused, 0),
            SocketVerdict::ReplaceStale
        );
        assert_eq!(
            socket_verdict(Some((Kind::Socket, 0)), live(0), 0),
            SocketVerdict::Defer
        );
        assert_eq!(
            socket_verdict(Some((Kind::Socket, 65534)), live(65534), 0),
            SocketVerdict::ReplaceImpostor
        );
        // Backlog full: the file's owner stands in for the listener.
        let full = Probe::Live { peer_uid: None };
        assert_eq!(
            socket_verdict(Some((Kind::Socket, 0)), full, 0),
            SocketVerdict::Defer
        );
        assert_eq!(
            socket_verdict(Some((Kind::Socket, 65534)), full, 0),
            SocketVerdict::ReplaceImpostor
        );
        assert_eq!(
            socket_verdict(Some((Kind::Symlink, 65534)), Probe::Refused, 0),
            SocketVerdict::ReplaceImpostor
        );
        assert_eq!(
            socket_verdict(Some((Kind::Regular, 0)), Probe::Refused, 0),
            SocketVerdict::Refuse
        );
        assert_eq!(
            socket_verdict(Some((Kind::Directory, 65534)), Probe::Refused, 0),
            SocketVerdict::Refuse
        );
    }
}
