//! Delivering one run: send the job's `USER ACTION` request to its service's socket
//! through the shared client (`control::client`), relay the callback's output at debug
//! level, and log one line with the result. A missing or refusing socket is retried
//! with backoff (1 s, 2 s, 4 s ... 30 s) until a deadline, then logged as lost.

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::calendar::format_local;
use super::crontab::Job;
use super::job_name;
use crate::control::client::{self, ClientError, Outcome};
use crate::control::protocol::{self, ErrorKind, Event, Request};
use crate::log::Level;

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

/// Send the run's request, retrying an unreachable socket until `deadline`, and log the
/// result.
pub(super) async fn deliver(socket_dir: &Path, run: &Run, deadline: Timestamp) {
    let job = &run.job;
    let socket = protocol::socket_path(socket_dir, &job.service);
    let request = Request::new(&job.user, &job.action, &[]);
    let started = Timestamp::now();
    let lateness_ms = started.duration_since(run.due).as_millis();
    let began = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = client::request(&socket, &request, |event| relay_output(run, event)).await;
        let duration_ms = began.elapsed().as_millis();
        let error = match result {
            Ok(outcome) => {
                return log_outcome(run, outcome, started, lateness_ms, attempts, duration_ms)
            }
            Err(error) if retryable(&error) => error,
            Err(error) => {
                return run.log(
                    Level::Error,
                    "job failed",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("error", &error),
                        ("duration_ms", &duration_ms),
                    ],
                )
            }
        };
        let left = deadline.duration_since(Timestamp::now());
        if left <= SignedDuration::ZERO {
            return run.log(
                Level::Error,
                "job lost",
                &[
                    ("attempts", &attempts),
                    ("error", &error),
                    ("retried_ms", &duration_ms),
                ],
            );
        }
        if attempts == 1 {
            crate::warn!(
                "service unreachable; retrying",
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

/// A line of the callback's output, at debug level.
fn relay_output(run: &Run, event: &Event) {
    let (stream, line) = match event {
        Event::Stdout { line } => ("stdout", line),
        Event::Stderr { line } => ("stderr", line),
        _ => return,
    };
    crate::debug!(
        "output",
        job = run.name,
        action = run.job.action,
        stream = stream,
        line = line
    )
}

/// The line for what the service answered: the callback's status, or why it refused.
/// `duration_ms` is the time since the first attempt.
fn log_outcome(
    run: &Run,
    outcome: Outcome,
    started: Timestamp,
    lateness_ms: i128,
    attempts: u32,
    duration_ms: u128,
) {
    match outcome {
        Outcome::Exited {
            code,
            duration_ms: callback_ms,
            ..
        } => run.log(
            if code == 0 { Level::Info } else { Level::Warn },
            "job ran",
            &[
                ("started", &format!("{started:.3}")),
                ("lateness_ms", &lateness_ms),
                ("attempts", &attempts),
                ("code", &code),
                ("duration_ms", &callback_ms),
            ],
        ),
        Outcome::Refused {
            kind: ErrorKind::Busy,
            message,
        } => run.log(
            Level::Warn,
            "job skipped",
            &[
                ("lateness_ms", &lateness_ms),
                ("reason", &"busy"),
                ("message", &message),
            ],
        ),
        Outcome::Refused { kind, message } => run.log(
            Level::Error,
            "job failed",
            &[
                ("lateness_ms", &lateness_ms),
                ("error", &kind),
                ("message", &message),
                ("duration_ms", &duration_ms),
            ],
        ),
        other => run.log(
            Level::Info,
            "job ran",
            &[
                ("lateness_ms", &lateness_ms),
                ("result", &format!("{other:?}")),
                ("duration_ms", &duration_ms),
            ],
        ),
    }
}
