//! Safe file operations in a directory others may write to (a Kubernetes `emptyDir` is
//! 0777): nothing here follows a symlink or blocks on a FIFO, and every decision is
//! taken on what was actually opened (`fstat` of the descriptor) or on `lstat`, never
//! on a path that is looked up a second time. No policy: the caller decides what an
//! owner, a mode or a file type means.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What kind of file a name refers to (without following it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl Kind {
    /// The kind of an `st_mode`.
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::Regular,
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::Other,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Regular => "regular file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Other => "special file",
        })
    }
}

/// The fields of a `stat` the callers decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    // nlink_t is u64 on x86_64 but u32 on some targets (aarch64): the cast is for those.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            kind: Kind::from_mode(st.st_mode),
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            nlink: st.st_nlink as u64,
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    /// Whether two stats name the same file.
    pub fn same_file(&self, other: &Stat) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `lstat(path)`: the name itself, a symlink not followed.
pub fn lstat(path: &Path) -> io::Result<Stat> {
    let path = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call; `st` is a
    // writable buffer of the right size, initialized by the kernel when it returns 0.
    let rc = unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: lstat returned 0, so it filled `st`.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// `fstat` of an open file: what was really opened.
pub fn fstat(file: &File) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the descriptor is open for as long as `file` is borrowed; `st` is a
    // writable buffer of the right size, initialized by the kernel when it returns 0.
    let rc = unsafe { libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

fn open_raw(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let path = c_path(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call; open(2) takes the mode as
    // a variadic unsigned int.
    let fd = unsafe { libc::open(path.as_ptr(), flags, libc::c_uint::from(mode)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Create `path` as a new, empty regular file with `mode` (less the umask), read-only
/// descriptor. `O_EXCL` makes it fail with `EEXIST` when anything is there, a dangling
/// symlink included: it never creates a file at a symlink's target.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    open_raw(
        path,
        libc::O_RDONLY
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_NOFOLLOW
            | libc::O_NOCTTY
            | libc::O_CLOEXEC,
        mode as libc::mode_t,
    )
}

/// Open an existing `path` read-only without following a symlink (`ELOOP`), without
/// blocking (a FIFO opens at once, with `O_NONBLOCK`), without taking a terminal as
/// controlling tty. The caller must `fstat` what it got before trusting it.
pub fn open_existing(path: &Path) -> io::Result<File> {
    open_raw(
        path,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )
}

/// Unlink `path` only if it still names the file `expected` described (same device and
/// inode, checked with `lstat` just before). `unlink` never follows a symlink. Returns
/// `Ok(false)` when the name now refers to something else (or nothing).
pub fn unlink_if_same(path: &Path, expected: &Stat) -> io::Result<bool> {
    match lstat(path) {
        Ok(now) if now.same_file(expected) => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Set the calling thread's filesystem gid (the group a new file gets, unless its
/// directory is set-group-ID) and return the previous one. `setfsgid` reports no
/// error (without CAP_SETGID only the real, effective or saved gid is taken): the
/// caller checks the group of what it created.
pub fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid has no memory effects; it changes (or not) a credential of the
    // calling thread and returns the previous fsgid.
    unsafe { libc::setfsgid(gid) as u32 }
}

/// `fchownat(AT_FDCWD, path, -1, gid, AT_SYMLINK_NOFOLLOW)`: change the group of the
/// name itself; a symlink there gets its own group changed, its target never.
pub fn lchgrp(path: &Path, gid: u32) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let rc = unsafe {
        libc::fchownat(
            libc::AT_FDCWD,
            path.as_ptr(),
            u32::MAX,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
