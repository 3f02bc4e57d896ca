//! The harness every integration test uses: temp dirs ([`fs`]), the one wait
//! ([`wait`]), /proc helpers and signals ([`proc`]), and the processes a test starts,
//! killed with their whole tree on drop ([`process`]).

pub mod fs;
pub mod proc;
pub mod process;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use fs::TempDir;
pub use proc::{alive, children_of, send};
pub use process::{assert_dirty, dirty_slate, Guarded, Logged, Mode, Supd, MODES};
pub use wait::{lazy, wait_for};

/// The supd binary cargo built for these tests.
/// The binary under test: cargo's build for the host, or `SUPD_TEST_BIN` (`make unit`
/// also runs the init tests against the static musl release, the binary that ships:
/// its libc unblocks signals where glibc does not).
pub fn supd_bin() -> PathBuf {
    std::env::var_os("SUPD_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_supd")))
}

/// `supd` with no arguments yet (run directly, not as PID 1).
pub fn supd() -> Command {
    Command::new(supd_bin())
}

/// A file under `tests/fixtures/` (e.g. `record-signals.pl`, `control/callbacks.sh`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A finished command's stdout, lossily decoded.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command's stderr, lossily decoded.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The lines of a file the tests' fixtures append to (none if it does not exist yet).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
