//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output};

/// The supd binary cargo built for these tests.
pub fn supd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_supd"))
}

/// A unique directory under the system temp dir (`supd-TAG-PID-N`), removed on drop.
/// World-traversable, so that a test client running as another uid can reach a socket
/// in it.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("supd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `text` to `name` in this directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished command's stdout, lossily decoded.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command's stderr, lossily decoded.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The children of `pid` (its main thread's, which is all a single-threaded process has).
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A failed test must not leave processes behind: when `child` (our direct child, not
/// yet waited for, so its pid cannot have been reused) still runs, SIGKILL it and every
/// process below it, then reap it.
pub fn kill_tree_if_running(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let mut tree = vec![child.id() as i32];
        let mut i = 0;
        while i < tree.len() {
            let below = children_of(tree[i]);
            tree.extend(below);
            i += 1;
        }
        for pid in tree.iter().rev() {
            // SAFETY: plain syscall on pids found alive below our unreaped child.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let _ = child.wait();
    }
}

/// A child process killed with its whole tree if the test ends while it still runs.
pub struct Guarded(pub Child);

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        kill_tree_if_running(&mut self.0);
    }
}
