//! The client side of the request socket: the async request API that the scheduler and
//! `supctl` (`crate::ctl`) share.
//!
//! Every request first checks who listens on the socket (SO_PEERCRED,
//! [`trusted_server`]) and refuses an untrusted server before sending anything.
//!
//! The API works on a current-thread runtime and needs no `LocalSet`. It never spawns
//! processes, so it is safe next to supd's reaper.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::control::protocol::{ErrorKind, Event, Request};
use crate::exit;

/// Longest reply line a client accepts (the server splits output lines at 64 KiB; JSON
/// escaping can grow them).
const MAX_REPLY_LINE: u64 = 1 << 20;

/// The uid `--server-uid` (env `SUPD_SERVER_UID`) names, `u64::MAX` for none: set once
/// at startup by the command line, read by every request of this process (supctl's one,
/// the scheduler's many).
static SERVER_UID: AtomicU64 = AtomicU64::new(u64::MAX);

/// Trust a server listening as `uid` besides root (`--server-uid`).
pub fn expect_server_uid(uid: Option<u32>) {
    SERVER_UID.store(uid.map_or(u64::MAX, u64::from), Ordering::Relaxed);
}

fn expected_server_uid() -> Option<u32> {
    u32::try_from(SERVER_UID.load(Ordering::Relaxed)).ok()
}

/// Whether a client running as `own_euid` believes a server listening as `peer_uid`:
/// root; the uid it was told to expect (`--server-uid`); its own uid when it is not
/// root (a supd the same user runs is that user's, and could be replaced by them
/// anyway). Root never trusts another uid unless told to: a socket directory others may
/// write to lets any local user bind the service's socket name.
pub fn trusted_server(peer_uid: u32, own_euid: u32, expected: Option<u32>) -> bool {
    peer_uid == 0 || Some(peer_uid) == expected || (own_euid != 0 && peer_uid == own_euid)
}

/// How a request ended, as far as the server said.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The callback ran to its end with this status (128+N: killed by signal N).
    Exited {
        id: u64,
        code: i32,
        duration_ms: u64,
    },
    /// `wait: false`: the callback started and runs on.
    Detached { id: u64 },
    /// An `error` event: busy, unknown-action, bad-request, denied, timeout, internal.
    Refused { kind: ErrorKind, message: String },
    /// A built-in's answer (`pong`, `actions`, `status`).
    Answer(Event),
}

impl Outcome {
    /// supctl's exit status for this outcome (DESIGN §3).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited { code, .. } => *code,
            Outcome::Detached { .. } | Outcome::Answer(_) => 0,
            Outcome::Refused { kind, .. } => kind.exit_code(),
        }
    }
}

/// The request did not get a final answer.
#[derive(Debug)]
pub enum ClientError {
    /// connect() failed: no socket file, nobody listening (service restarting), or no
    /// permission. Worth retrying for the scheduler.
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The process listening on the socket (SO_PEERCRED) is not one to believe
    /// ([`trusted_server`]); the request was not sent.
    Untrusted {
        path: PathBuf,
        uid: u32,
        pid: Option<i32>,
    },
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The server sent something that is not a reply event.
    Protocol(String),
    /// The connection closed before the final event (supd went away mid-request).
    Closed,
}

impl ClientError {
    /// supctl's exit status: EX_UNAVAILABLE when unreachable, EX_PROTOCOL for an
    /// untrusted server, else EX_SOFTWARE.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => exit::EX_UNAVAILABLE,
            ClientError::Untrusted { .. } => exit::EX_PROTOCOL,
            _ => exit::EX_SOFTWARE,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { path, source } => {
                write!(f, "cannot reach {}: {source}", path.display())
            }
            ClientError::Untrusted { path, uid, pid } => {
                write!(
                    f,
                    "refusing the server at {}: it runs as uid {uid}",
                    path.display()
                )?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                f.write_str(
                    ", not root nor --server-uid (SUPD_SERVER_UID); an impostor may be \
                     squatting on the socket; nothing was sent",
                )
            }
            ClientError::Io(e) => write!(f, "connection failed: {e}"),
            ClientError::Protocol(m) => write!(f, "bad reply: {m}"),
            ClientError::Closed => f.write_str("connection closed before the request finished"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Send `request` to the socket at `socket` and follow the reply to its final event.
/// `on_event` sees every event (output lines included) as it arrives. Wrap the call in
/// `tokio::time::timeout` to bound it: dropping the future closes the connection, and a
/// callback that already started keeps running.
pub async fn request(
    socket: &Path,
    request: &Request,
    mut on_event: impl FnMut(&Event),
) -> Result<Outcome, ClientError> {
    request_raw(socket, request, |_, event| on_event(event)).await
}

/// Like [`request`], also handing over each raw reply line (without its newline).
pub async fn request_raw(
    socket: &Path,
    request: &Request,
    mut on_line: impl FnMut(&str, &Event),
) -> Result<Outcome, ClientError> {
    let mut stream =
        UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Unreachable {
                path: socket.to_path_buf(),
                source,
            })?;
    // Before a byte is sent: who listens? A socket dir others may write to lets anyone
    // bind (or rename and re-bind) the service's socket name.
    let peer = stream.peer_cred().map_err(ClientError::Io)?;
    if !trusted_server(
        peer.uid(),
        nix::unistd::geteuid().as_raw(),
        expected_server_uid(),
    ) {
        return Err(ClientError::Untrusted {
            path: socket.to_path_buf(),
            uid: peer.uid(),
            pid: peer.pid(),
        });
    }
    stream
        .write_all(request.to_line().as_bytes())
        .await
        .map_err(ClientError::Io)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut started_id = 0;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(ClientError::Io)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if line.last() != Some(&b'\n') {
            return Err(if n as u64 >= MAX_REPLY_LINE {
                ClientError::Protocol("reply line too long".into())
            } else {
                ClientError::Closed
            });
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| ClientError::Protocol("reply is not UTF-8".into()))?
            .trim_end_matches('\n');
        let event: Event = serde_json::from_str(text)
            .map_err(|e| ClientError::Protocol(format!("{e}: {text:?}")))?;
        on_line(text, &event);
        match event {
            Event::Started { id, .. } if !request.wait => return Ok(Outcome::Detached { id }),
            Event::Started { id, .. } => started_id = id,
            Event::Exit {
                code, duration_ms, ..
            } => {
                return Ok(Outcome::Exited {
                    id: started_id,
                    code,
                    duration_ms,
                })
            }
            Event::Error { kind, message } => return Ok(Outcome::Refused { kind, message }),
            e @ (Event::Pong { .. } | Event::Actions { .. } | Event::Status(_)) => {
                return Ok(Outcome::Answer(e))
            }
            _ => {}
        }
    }
}
