//! Running `CB_<name>` callbacks, and discovering which ones exist.
//!
//! Each request runs in a fresh `bash`, in its own process group, as
//!
//! ```text
//! bash -c "$SCRIPT" CB_name USER ARG...
//! ```
//!
//! where `$SCRIPT` sources the helper library (when present) and the callbacks file,
//! then calls `"$0" "$@"`: the arguments travel as argv and are never re-parsed by a
//! shell. Before calling the function the script writes `ok` (or `missing`) on fd 3, a
//! pipe only supd reads: that handshake tells a missing `CB_` function (answer
//! `unknown-action`) from a callback that runs, with a single bash process and without
//! a stale cache of the callbacks file. Output printed while the files are sourced is
//! held back until the handshake, so `started` always comes first.
//!
//! The run is its own task: a vanished client never stops the callback. The client's
//! connection drains its [`Outbox`]; when that is full the run pauses reading the
//! callback's pipes until it drains (backpressure: a client that reads gets every line),
//! and drops a client that made no progress for [`outbox::CLIENT_STALL`].
//!
//! - `spawn`: the bash, its environment and the handshake pipe;
//! - `drive`: following a run to its end (handshake, output, timeout, final event);
//! - `lines`: bounded output lines; `outbox`: the per-client queue;
//! - `listing`: `list`, the `CB_` functions the files define.

mod drive;
mod lines;
mod listing;
mod outbox;
mod spawn;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys::reaper::Exit;
use crate::sys::spawn::{Background, Stdio};

pub use lines::MAX_LINE;
pub use listing::discover;
pub use outbox::{Outbox, Take, OUTBOX_LIMIT};
pub use spawn::{spawn, Run};

/// What every run needs to know.
pub struct Settings {
    /// bash, resolved once through $PATH at startup (see [`find_bash`]).
    pub bash: PathBuf,
    pub service: String,
    pub callbacks: PathBuf,
    pub callback_lib: PathBuf,
    pub timeout: Duration,
    pub supd_pid: u32,
}

impl Settings {
    fn lib_if_present(&self) -> Option<&Path> {
        self.callback_lib
            .is_file()
            .then_some(self.callback_lib.as_path())
    }

    /// bash running `script`, in a clean slate of its own (`sys::spawn`).
    fn command(&self, script: &str) -> Background {
        let mut command = Background::new(&self.bash);
        command
            .arg("-c")
            .arg(script)
            .env("SUPD_PID", self.supd_pid.to_string())
            .env("SERVICE", &self.service)
            .env("SUPD_CALLBACKS", &self.callbacks)
            .env(
                "SUPD_CALLBACK_LIB",
                self.lib_if_present()
                    .map(Path::as_os_str)
                    .unwrap_or_default(),
            )
            // No current_dir: callbacks run where supd was started, as the service
            // does. Docker starts PID 1 in the image's WORKDIR (`/usr/local` in the
            // legacy stack, whose listener ran its callbacks there); supd never chdirs.
            .stdin(Stdio::Null);
        command
    }
}

/// The first `bash` on $PATH, so that each callback's exec does not walk $PATH again;
/// plain `bash` (resolved at spawn time) when there is none yet.
pub fn find_bash() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("bash"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("bash"))
}

/// How a run ended, for the reply and for `status`.
#[derive(Clone, Debug)]
pub enum Ending {
    Exited(Exit),
    UnknownAction,
    TimedOut(Exit),
    /// The files failed to load, or bash failed.
    Failed(String),
}
