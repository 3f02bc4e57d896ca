//! Delivering one run: send the job's `USER ACTION` request to its service's socket
//! through the shared client (`control::client`), or hand it to this supd's own
//! executor (the in-process schedule), relay the callback's output at debug level, and
//! log one line with the result. A missing or refusing socket, or a `full` answer
//! (`--max-callbacks` reached), is retried with backoff (1 s, 2 s, 4 s ... 30 s) until a
//! deadline, then logged as lost.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::calendar::format_local;
use super::crontab::Job;
use super::job_name;
use super::state::Outcome as RunOutcome;
use crate::control::client::{self, ClientError, Outcome};
use crate::control::protocol::{self, ErrorKind, Event, Request};
use crate::control::server::Executor;
use crate::exit;
use crate::log::Level;

/// How many of the callback's last output lines a run keeps (the hook's stdin).
pub(super) const TAIL_LINES: usize = 50;
const TAIL_LINE_BYTES: usize = 1024;

/// Where runs go.
#[derive(Clone)]
pub(super) enum Target {
    /// `supd scheduler`: `<socket-dir>/<SERVICE>-request.sock`.
    Sockets(PathBuf),
    /// A service's own schedule: its supd's executor, no socket round trip.
    Local(Executor),
}

/// What a run came to.
pub(super) struct Report {
    pub(super) outcome: RunOutcome,
    /// The callback's exit status, when it ran.
    pub(super) code: Option<i32>,
    /// A decimal code for the hook: the exit status, else what `supctl send` would exit
    /// with (69 unreachable, 75 full, 124 timeout...).
    pub(super) hook_code: i32,
    pub(super) error: Option<String>,
    pub(super) duration_ms: u64,
    /// The callback's last output lines.
    pub(super) tail: Vec<String>,
}

/// Backoff between delivery attempts to an absent or refusing socket.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One due run of a job.
pub(super) struct Run {
    /// The job as `file:line`.
    pub(super) name: String,
    pub(super) job: Job,
    pub(super) due: Timestamp,
    /// `due` in the job's zone.
    pub(super) due_text: String,
}

impl Run {
    /// The run of `job` (from the file named `file`) due at `due`.
    pub(super) fn new(file: &str, job: Job, due: Timestamp) -> Run {
        Run {
            name: job_name(file, &job),
            due_text: format_local(due, &job.tz),
            job,
            due,
        }
    }

    /// One line about this run: the job's own fields (DESIGN §4: job as file:line,
    /// service, action, user, due time), then what this line adds.
    pub(super) fn log(
        &self,
        level: Level,
        message: &str,
        extra: &[(&str, &dyn std::fmt::Display)],
    ) {
        let mut fields: Vec<(&str, &dyn std::fmt::Display)> = vec![
            ("job", &self.name),
            ("service", &self.job.service),
            ("action", &self.job.action),
            ("user", &self.job.user),
            ("due", &self.due_text),
        ];
        fields.extend_from_slice(extra);
        crate::log::emit(level, message, &fields);
    }
}

/// Send the run's request, retrying an unreachable socket or a full service until
/// `deadline`, log the result and return it.
pub(super) async fn deliver(target: &Target, run: &Run, deadline: Timestamp) -> Report {
    let job = &run.job;
    let request = Request::new(&job.user, &job.action, &[]);
    let started = Timestamp::now();
    let lateness_ms = started.duration_since(run.due).as_millis();
    let began = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    let mut tail = VecDeque::new();
    let report =
        |outcome, code: Option<i32>, hook_code, error: Option<String>, tail: VecDeque<String>| {
            Report {
                outcome,
                code,
                hook_code,
                error,
                duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                tail: tail.into(),
            }
        };
    loop {
        attempts += 1;
        let mut on_event = |event: &Event| relay_output(run, event, &mut tail);
        let result = match target {
            Target::Sockets(dir) => {
                let socket = protocol::socket_path(dir, &job.service);
                client::request(&socket, &request, &mut on_event).await
            }
            Target::Local(executor) => Ok(executor.request(&request, &mut on_event).await),
        };
        let duration_ms = began.elapsed().as_millis();
        let error = match result {
            Ok(Outcome::Refused {
                kind: ErrorKind::Full,
                message,
            }) => format!("full: {message}"),
            Ok(outcome) => {
                let (outcome, code, hook_code, error) =
                    log_outcome(run, outcome, started, lateness_ms, attempts, duration_ms);
                return report(outcome, code, hook_code, error, tail);
            }
            Err(error) if retryable(&error) => error.to_string(),
            Err(error) => {
                run.log(
                    Level::Error,
                    "job failed",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("error", &error),
                        ("duration_ms", &duration_ms),
                    ],
                );
                let code = error.exit_code();
                return report(
                    RunOutcome::Failed,
                    None,
                    code,
                    Some(error.to_string()),
                    tail,
                );
            }
        };
        let left = deadline.duration_since(Timestamp::now());
        if left <= SignedDuration::ZERO {
            run.log(
                Level::Error,
                "job lost",
                &[
                    ("attempts", &attempts),
                    ("error", &error),
                    ("retried_ms", &duration_ms),
                ],
            );
            let code = if error.starts_with("full") {
                exit::EX_TEMPFAIL
            } else {
                exit::EX_UNAVAILABLE
            };
            return report(RunOutcome::Lost, None, code, Some(error), tail);
        }
        if attempts == 1 {
            crate::warn!(
                if error.starts_with("full") {
                    "service full (--max-callbacks); retrying"
                } else {
                    "service unreachable; retrying"
                },
                job = run.name,
                service = job.service,
                action = job.action,
                error = error,
                until = format_local(deadline, &job.tz)
            );
        }
        let pause = backoff.min(Duration::try_from(left).unwrap_or(Duration::ZERO));
        crate::debug!(
            "retrying",
            job = run.name,
            service = job.service,
            attempt = attempts + 1,
            in_ms = pause.as_millis()
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a failed connect is worth retrying: the socket is absent or nobody listens
/// (the service is restarting), or an untrusted process listens there (the client
/// refused it before sending anything; the service's own supd replaces such an impostor
/// when it takes the socket).
fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Untrusted { .. } => true,
        ClientError::Unreachable { source, .. } => matches!(
            source.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::EAGAIN)
        ),
        _ => false,
    }
}

/// A line of the callback's output, at debug level; the last ones are kept.
fn relay_output(run: &Run, event: &Event, tail: &mut VecDeque<String>) {
    let (stream, line) = match event {
        Event::Stdout { line } => ("stdout", line),
        Event::Stderr { line } => ("stderr", line),
        _ => return,
    };
    if tail.len() >= TAIL_LINES {
        tail.pop_front();
    }
    let mut kept: String = line.chars().take(TAIL_LINE_BYTES).collect();
    kept.retain(|c| c != '\n');
    tail.push_back(kept);
    crate::debug!(
        "output",
        job = run.name,
        action = run.job.action,
        stream = stream,
        line = line
    )
}

/// The line for what the service answered: the callback's status, or why it refused;
/// and the run's outcome, exit status, hook code and error.
/// `duration_ms` is the time since the first attempt.
fn log_outcome(
    run: &Run,
    outcome: Outcome,
    started: Timestamp,
    lateness_ms: i128,
    attempts: u32,
    duration_ms: u128,
) -> (RunOutcome, Option<i32>, i32, Option<String>) {
    match outcome {
        Outcome::Exited {
            code,
            duration_ms: callback_ms,
            ..
        } => {
            run.log(
                if code == 0 { Level::Info } else { Level::Warn },
                "job ran",
                &[
                    ("started", &format!("{started:.3}")),
                    ("lateness_ms", &lateness_ms),
                    ("attempts", &attempts),
                    ("code", &code),
                    ("duration_ms", &callback_ms),
                ],
            );
            let outcome = if code == 0 {
                RunOutcome::Ok
            } else {
                RunOutcome::Failed
            };
            (outcome, Some(code), code, None)
        }
        Outcome::Refused {
            kind: ErrorKind::Busy,
            message,
        } => {
            run.log(
                Level::Warn,
                "job skipped",
                &[
                    ("lateness_ms", &lateness_ms),
                    ("reason", &"busy"),
                    ("message", &message),
                ],
            );
            (RunOutcome::Skipped, None, exit::EX_TEMPFAIL, Some(message))
        }
        Outcome::Refused { kind, message } => {
            run.log(
                Level::Error,
                "job failed",
                &[
                    ("lateness_ms", &lateness_ms),
                    ("error", &kind),
                    ("message", &message),
                    ("duration_ms", &duration_ms),
                ],
            );
            (
                RunOutcome::Failed,
                None,
                kind.exit_code(),
                Some(format!("{kind}: {message}")),
            )
        }
        other => {
            run.log(
                Level::Info,
                "job ran",
                &[
                    ("lateness_ms", &lateness_ms),
                    ("result", &format!("{other:?}")),
                    ("duration_ms", &duration_ms),
                ],
            );
            (RunOutcome::Ok, None, 0, None)
        }
    }
}
