//! Starting a callback's bash, with its handshake pipe on fd 3.

use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Settings;
use crate::control::protocol::Request;
use crate::sys::process;
use crate::sys::reaper::{Exit, Reaper};
use crate::sys::spawn::{Spawned, Stdio};

/// Sources the files, answers the handshake on fd 3, calls the function.
const RUN_SCRIPT: &str = r#"if [ -n "$SUPD_CALLBACK_LIB" ]; then source "$SUPD_CALLBACK_LIB" || exit; fi
source "$SUPD_CALLBACKS" || exit
if declare -F -- "$0" >/dev/null; then echo ok >&3; exec 3>&-; "$0" "$@"; else echo missing >&3; exit 127; fi"#;

/// A callback that was spawned; drive it with [`Run::drive`].
pub struct Run {
    pub id: u64,
    pub action: String,
    pub function: String,
    pub pid: u32,
    pub(super) started: Instant,
    pub(super) exit: oneshot::Receiver<Exit>,
    pub(super) stdout: pipe::Receiver,
    pub(super) stderr: pipe::Receiver,
    pub(super) handshake: pipe::Receiver,
    pub(super) timeout: Duration,
}

/// Spawn the callback for `request`. Registers the pid with the reaper before
/// returning (no `.await` in here), so a fast exit is never lost.
pub fn spawn(
    settings: &Settings,
    reaper: &Reaper,
    request: &Request,
    id: u64,
) -> std::io::Result<Run> {
    let (hs_read, hs_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let function = request.function();
    let mut command = settings.command(RUN_SCRIPT);
    command
        .arg(&function)
        .arg(&request.user)
        .args(&request.args)
        .env("SUPD_ACTION", &request.action)
        .env("SUPD_USER", &request.user)
        .env("SUPD_REQUEST_ID", id.to_string())
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped)
        .fd3(hs_write);
    let Spawned {
        pid,
        exit,
        stdout,
        stderr,
        ..
    } = command.spawn(reaper)?;
    let pipes = (|| {
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err(std::io::Error::other("callback pipes missing"));
        };
        Ok((
            pipe::Receiver::from_owned_fd(stdout)?,
            pipe::Receiver::from_owned_fd(stderr)?,
            pipe::Receiver::from_owned_fd(hs_read)?,
        ))
    })();
    let (stdout, stderr, handshake) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            // Nobody would follow this callback (no busy check, no timeout): stop it.
            // The callback's own new group (POSIX_SPAWN_SETPGROUP in sys::spawn).
            process::send(-(pid as i32), libc::SIGKILL);
            return Err(e);
        }
    };
    Ok(Run {
        id,
        action: request.action.clone(),
        function,
        pid,
        started: Instant::now(),
        exit,
        stdout,
        stderr,
        handshake,
        timeout: settings.timeout,
    })
}
