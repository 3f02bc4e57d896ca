//! The client side of the request socket: a reusable async API ([`request`], used by
//! the scheduler) and `supctl` / `supd ctl` ([`run`]).
//!
//! The API works on a current-thread runtime and needs no `LocalSet`. It never spawns
//! processes, so it is safe next to supd's reaper.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::cli::{CtlArgs, CtlCommand};
use crate::control::protocol::{self, ErrorKind, Event, Request};

/// Print to stdout, ignoring errors: a closed pipe (`supctl ... | head -1`) must not
/// panic, and the callback's exit status still matters.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Like `out!`, on stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Longest reply line a client accepts (the server splits output lines at 64 KiB; JSON
/// escaping can grow them).
const MAX_REPLY_LINE: u64 = 1 << 20;

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
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The server sent something that is not a reply event.
    Protocol(String),
    /// The connection closed before the final event (supd went away mid-request).
    Closed,
}

impl ClientError {
    /// supctl's exit status: 69 (EX_UNAVAILABLE) when unreachable, else 70.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => 69,
            _ => 70,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { path, source } => {
                write!(f, "cannot reach {}: {source}", path.display())
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

/// Run `supd ctl` / `supctl`; returns the exit status (DESIGN §3).
pub fn run(args: CtlArgs) -> i32 {
    let runtime = match crate::event_loop() {
        Ok(rt) => rt,
        Err(e) => {
            err!("supctl: cannot start: {e}");
            return 70;
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: CtlArgs) -> i32 {
    let dir = args.socket_dir.clone();
    match args.action {
        CtlCommand::Send {
            service,
            action,
            args: cb_args,
            user,
            no_wait,
            timeout,
        } => {
            let mut req = Request::new(&user, &action, &cb_args);
            req.wait = !no_wait;
            send(&dir, &service, &req, timeout, args.json).await
        }
        CtlCommand::List { service } => {
            let req = Request::new("root", "list", &[]);
            send(&dir, &service, &req, None, args.json).await
        }
        CtlCommand::Status { service } => {
            let req = Request::new("root", "status", &[]);
            send(&dir, &service, &req, None, args.json).await
        }
        CtlCommand::Ping { service, timeout } => {
            let req = Request::new("root", "ping", &[]);
            send(&dir, &service, &req, timeout, args.json).await
        }
        CtlCommand::Services => services(&dir, args.json).await,
    }
}

/// Send one request, print what comes back, and map the outcome to an exit status.
async fn send(
    dir: &Path,
    service: &str,
    req: &Request,
    timeout: Option<Duration>,
    json: bool,
) -> i32 {
    if !protocol::valid_service(service) {
        err!("supctl: bad service name {service:?}");
        return 64;
    }
    if let Err(e) = req.validate() {
        err!("supctl: {e}");
        return 64;
    }
    let path = protocol::socket_path(dir, service);
    let started = Instant::now();
    let print = |raw: &str, event: &Event| {
        if json {
            out!("{raw}");
            return;
        }
        match event {
            Event::Stdout { line } => out!("{line}"),
            Event::Stderr { line } => err!("{line}"),
            _ => {}
        }
    };
    let call = request_raw(&path, req, print);
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => {
                err!(
                    "supctl: {service} {}: no answer after {limit:?}; gave up waiting \
                     (a started callback keeps running)",
                    req.action
                );
                return 124;
            }
        },
        None => call.await,
    };
    let _ = std::io::stdout().flush();
    match result {
        Ok(outcome) => {
            if !json {
                report(service, req, &outcome, started.elapsed());
            }
            outcome.exit_code()
        }
        Err(e) => {
            err!("supctl: {service} {}: {e}", req.action);
            e.exit_code()
        }
    }
}

/// Human output for the final event.
fn report(service: &str, req: &Request, outcome: &Outcome, elapsed: Duration) {
    match outcome {
        Outcome::Exited { .. } => {}
        Outcome::Detached { id } => {
            err!("supctl: {service} {}: started (id {id})", req.action)
        }
        Outcome::Refused { kind, message } => {
            err!("supctl: {service} {}: {kind}: {message}", req.action)
        }
        Outcome::Answer(Event::Pong { supd_pid, .. }) => out!(
            "{service}: pong from supd pid {supd_pid} in {:.1} ms",
            elapsed.as_secs_f64() * 1000.0
        ),
        Outcome::Answer(Event::Actions { actions, .. }) => {
            for action in actions {
                out!("{action}");
            }
        }
        Outcome::Answer(Event::Status(status)) => {
            out!(
                "service {} (pid {}), supd pid {}, up {}",
                status.service,
                status.service_pid,
                status.supd_pid,
                human_duration(Duration::from_secs(status.uptime_s))
            );
            if status.running.is_empty() {
                out!("running: none");
            }
            for r in &status.running {
                out!(
                    "running: {} (id {}, pid {}, user {}, for {})",
                    r.action,
                    r.id,
                    r.pid,
                    r.user,
                    human_duration(Duration::from_millis(r.elapsed_ms))
                );
            }
            for last in &status.last {
                let result = match (last.code, last.error) {
                    (Some(code), _) => format!("exit {code}"),
                    (None, Some(kind)) => kind.to_string(),
                    (None, None) => "?".into(),
                };
                let ended = jiff::Timestamp::from_second(last.ended)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| last.ended.to_string());
                out!(
                    "last: {} (id {}): {result} at {ended} after {}",
                    last.action,
                    last.id,
                    human_duration(Duration::from_millis(last.duration_ms))
                );
            }
        }
        Outcome::Answer(_) => {}
    }
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `supctl services`: every `<name>-request.sock` in the directory, and whether it answers.
async fn services(dir: &Path, json: bool) -> i32 {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            err!("supctl: cannot read {}: {e}", dir.display());
            return 69;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let service = name.strip_suffix(protocol::SOCKET_SUFFIX)?;
            protocol::valid_service(service).then(|| service.to_string())
        })
        .collect();
    names.sort();
    for name in names {
        let path = protocol::socket_path(dir, &name);
        let ping = Request::new("root", "ping", &[]);
        let answer =
            tokio::time::timeout(Duration::from_secs(2), request(&path, &ping, |_| {})).await;
        let state = match answer {
            Ok(Ok(Outcome::Answer(Event::Pong { .. }))) => "up".to_string(),
            Ok(Ok(Outcome::Refused { kind, .. })) => kind.to_string(),
            Ok(Ok(_)) => "up".to_string(),
            Ok(Err(ClientError::Unreachable { .. })) => "down".to_string(),
            Ok(Err(_)) => "broken".to_string(),
            Err(_) => "no-answer".to_string(),
        };
        if json {
            out!("{}", serde_json::json!({"service": name, "state": state}));
        } else {
            out!("{name}\t{state}");
        }
    }
    0
}
