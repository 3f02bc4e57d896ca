//! The groups of a unix socket's peer (SO_PEERGROUPS), as the kernel recorded them at
//! connect time, next to what SO_PEERCRED gives (uid, primary gid, pid).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The peer's supplementary groups when it connected (Linux >= 4.13). Race-free, unlike
/// reading `/proc/<pid>/status` of a pid that may have exited since.
pub fn groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // Few processes have more than a handful of groups; grow once if the kernel says so.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a valid writable buffer of `len` bytes; the kernel writes
        // at most `len` bytes and stores the needed size in `len` (ERANGE when short).
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) || count <= groups.len() {
            return Err(error);
        }
        groups.resize(count, 0);
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_socketpair_peer_has_our_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let mut ours = nix::unistd::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.as_raw())
            .collect::<Vec<_>>();
        let mut got = groups(a.as_fd()).unwrap_or_else(|e| panic!("{e}"));
        ours.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, ours);
    }
}
