//! `supctl` / `supd ctl`: one request from the command line, its output on stdout and
//! stderr, and the exit status DESIGN §3 gives each outcome.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::control::client::{request, request_raw, ClientError, Outcome};
use crate::control::protocol::{self, Event, Request};
use crate::exit;

/// What to do, as the command line said (built by `cli`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory of the request sockets.
    pub socket_dir: PathBuf,
    /// Print the raw reply events (JSON lines) instead of the output.
    pub json: bool,
    pub command: Command,
}

/// One supctl command.
#[derive(Clone, Debug)]
pub enum Command {
    Send {
        service: String,
        action: String,
        args: Vec<String>,
        user: String,
        no_wait: bool,
        timeout: Option<Duration>,
    },
    List {
        service: String,
    },
    Status {
        service: String,
    },
    Ping {
        service: String,
        timeout: Option<Duration>,
    },
    Services,
}

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

/// Run `supd ctl` / `supctl`; returns the exit status (DESIGN §3).
pub fn run(config: Config) -> i32 {
    let runtime = match crate::sys::event_loop() {
        Ok(rt) => rt,
        Err(e) => {
            err!("supctl: cannot start: {e}");
            return exit::EX_SOFTWARE;
        }
    };
    let code = runtime.block_on(run_async(config));
    // The process exits right after this (main.rs): dropping the runtime would only
    // deregister and close the socket and unmap its buffers first, ~15 syscalls between
    // the final event and the caller's wait. The exit closes the fds; stdout is flushed.
    std::mem::forget(runtime);
    code
}

async fn run_async(config: Config) -> i32 {
    let dir = config.socket_dir.clone();
    let json = config.json;
    match config.command {
        Command::Send {
            service,
            action,
            args: cb_args,
            user,
            no_wait,
            timeout,
        } => {
            let mut req = Request::new(&user, &action, &cb_args);
            req.wait = !no_wait;
            send(&dir, &service, &req, timeout, json).await
        }
        Command::List { service } => {
            let req = Request::new("root", "list", &[]);
            send(&dir, &service, &req, None, json).await
        }
        Command::Status { service } => {
            let req = Request::new("root", "status", &[]);
            send(&dir, &service, &req, None, json).await
        }
        Command::Ping { service, timeout } => {
            let req = Request::new("root", "ping", &[]);
            send(&dir, &service, &req, timeout, json).await
        }
        Command::Services => services(&dir, json).await,
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
        return exit::EX_USAGE;
    }
    if let Err(e) = req.validate() {
        err!("supctl: {e}");
        return exit::EX_USAGE;
    }
    let length = req.to_line().len();
    if length > protocol::MAX_REQUEST {
        err!(
            "supctl: request too long ({length} bytes with its arguments, at most {})",
            protocol::MAX_REQUEST
        );
        return exit::EX_USAGE;
    }
    let path = protocol::socket_path(dir, service);
    let started = Instant::now();
    // The callback's stdout goes through one buffer, flushed whenever no more reply
    // bytes wait (and before any stderr line, to keep their order): a write per burst,
    // not per line, yet a slow callback's lines still show as they come. Errors (a
    // closed pipe: `supctl ... | head -1`) are ignored: the exit status still matters.
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let print = move |raw: &str, event: &Event, more: bool| {
        if json {
            let _ = writeln!(stdout, "{raw}");
        } else {
            match event {
                Event::Stdout { line } => {
                    let _ = writeln!(stdout, "{line}");
                }
                Event::Stderr { line } => {
                    let _ = stdout.flush();
                    err!("{line}");
                }
                _ => {}
            }
        }
        if !more {
            let _ = stdout.flush();
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
                return exit::TIMEOUT;
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
                let mut result = match (last.code, last.error) {
                    (Some(code), _) => format!("exit {code}"),
                    (None, Some(kind)) => kind.to_string(),
                    (None, None) => "-".into(),
                };
                if let Some(outcome) = &last.outcome {
                    // A scheduled run: its outcome first (ok, failed, lost, skipped).
                    result = format!("{outcome} ({result})");
                }
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
            return exit::EX_UNAVAILABLE;
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
            // The socket's mode or group keeps this user out: it may well be up.
            Ok(Err(ClientError::Unreachable { source, .. }))
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                "no-permission".to_string()
            }
            Ok(Err(ClientError::Unreachable { .. })) => "down".to_string(),
            Ok(Err(ClientError::Untrusted { uid, .. })) => format!("untrusted (uid {uid})"),
            Ok(Err(_)) => "broken".to_string(),
            Err(_) => "no-answer".to_string(),
        };
        if json {
            out!("{}", serde_json::json!({"service": name, "state": state}));
        } else {
            out!("{name}\t{state}");
        }
    }
    exit::SUCCESS
}
