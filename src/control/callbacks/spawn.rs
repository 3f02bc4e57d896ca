//! Starting a callback's bash, with its handshake pipe on fd 3.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Settings;
use crate::control::protocol::Request;
use crate::sys::process;
use crate::sys::reaper::{Exit, Reaper};

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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let hs_fd = hs_write.as_raw_fd();
    // SAFETY: only async-signal-safe calls. Runs after spawn::prepare's hook (which marks
    // fds >= 3 close-on-exec), so the handshake pipe survives as fd 3 alone.
    unsafe {
        command.pre_exec(move || {
            if hs_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(hs_fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (mut child, exit) = reaper.spawn(&mut command)?;
    let pid = child.id();
    drop(hs_write);
    // Never call child.wait(): the reaper owns waitpid. Dropping `child` does not wait.
    let pipes = (|| {
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(std::io::Error::other("callback pipes missing"));
        };
        Ok((
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stderr))?,
            pipe::Receiver::from_owned_fd(hs_read)?,
        ))
    })();
    let (stdout, stderr, handshake) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            // Nobody would follow this callback (no busy check, no timeout): stop it.
            // The callback's own new group (setpgid in spawn::prepare).
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
