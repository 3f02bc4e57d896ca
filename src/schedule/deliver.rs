//! Sending one job's request, with retry and backoff, and logging its result.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::calendar::format_local;
use super::crontab::Job;
use super::runner::Shared;
use crate::control::client::{self, ClientError, Outcome};
use crate::control::protocol::{ErrorKind, Event, Request};
use crate::log::Level;

/// Backoff between delivery attempts to an absent or refusing socket.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether a failed connect is worth retrying: the socket is absent or nobody listens
/// (the service is restarting).
fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { source, .. } => matches!(
            source.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::EAGAIN)
        ),
        _ => false,
    }
}

/// Send one job's request, retrying an unreachable socket, and log the result.
pub(super) async fn deliver(shared: &Shared, job: &Job, due: Timestamp, deadline: Timestamp) {
    let socket = crate::control::protocol::socket_path(&shared.socket_dir, &job.service);
    let request = Request::new(&job.user, &job.action, &[]);
    let name = format!("{}:{}", shared.file, job.line);
    let due_text = format_local(due, &job.tz);
    let started = Timestamp::now();
    let lateness_ms = started.duration_since(due).as_millis();
    let began = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let action = job.action.as_str();
        let result = client::request(&socket, &request, |event| {
            let (stream, line) = match event {
                Event::Stdout { line } => ("stdout", line),
                Event::Stderr { line } => ("stderr", line),
                _ => return,
            };
            crate::debug!(
                "output",
                job = name,
                action = action,
                stream = stream,
                line = line
            )
        })
        .await;
        let duration_ms = began.elapsed().as_millis();
        let report = |level, message: &str, extra: &[(&str, &dyn std::fmt::Display)]| {
            log_result(level, message, &name, job, &due_text, extra)
        };
        match result {
            Ok(Outcome::Exited {
                code,
                duration_ms: callback_ms,
                ..
            }) => {
                let level = if code == 0 { Level::Info } else { Level::Warn };
                report(
                    level,
                    "job ran",
                    &[
                        ("started", &format!("{started:.3}")),
                        ("lateness_ms", &lateness_ms),
                        ("attempts", &attempts),
                        ("code", &code),
                        ("duration_ms", &callback_ms),
                    ],
                );
                return;
            }
            Ok(Outcome::Refused {
                kind: ErrorKind::Busy,
                message,
            }) => {
                report(
                    Level::Warn,
                    "job skipped",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("reason", &"busy"),
                        ("message", &message),
                    ],
                );
                return;
            }
            Ok(Outcome::Refused { kind, message }) => {
                report(
                    Level::Error,
                    "job failed",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("error", &kind),
                        ("message", &message),
                        ("duration_ms", &duration_ms),
                    ],
                );
                return;
            }
            Ok(other) => {
                report(
                    Level::Info,
                    "job ran",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("result", &format!("{other:?}")),
                        ("duration_ms", &duration_ms),
                    ],
                );
                return;
            }
            Err(error) if retryable(&error) => {
                let now = Timestamp::now();
                let left = deadline.duration_since(now);
                if left <= SignedDuration::ZERO {
                    report(
                        Level::Error,
                        "job lost",
                        &[
                            ("attempts", &attempts),
                            ("error", &error),
                            ("retried_ms", &duration_ms),
                        ],
                    );
                    return;
                }
                if attempts == 1 {
                    crate::warn!(
                        "service unreachable; retrying",
                        job = name,
                        service = job.service,
                        action = job.action,
                        error = error,
                        until = format_local(deadline, &job.tz)
                    );
                }
                let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                let pause = backoff.min(left);
                crate::debug!(
                    "retrying",
                    job = name,
                    service = job.service,
                    attempt = attempts + 1,
                    in_ms = pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                report(
                    Level::Error,
                    "job failed",
                    &[
                        ("lateness_ms", &lateness_ms),
                        ("error", &error),
                        ("duration_ms", &duration_ms),
                    ],
                );
                return;
            }
        }
    }
}

/// One line about a run's result: the job's own fields (DESIGN §4: job as file:line,
/// service, action, user, due time), then what this outcome adds.
pub(super) fn log_result(
    level: Level,
    message: &str,
    name: &str,
    job: &Job,
    due: &str,
    extra: &[(&str, &dyn std::fmt::Display)],
) {
    let mut fields: Vec<(&str, &dyn std::fmt::Display)> = vec![
        ("job", &name),
        ("service", &job.service),
        ("action", &job.action),
        ("user", &job.user),
        ("due", &due),
    ];
    fields.extend_from_slice(extra);
    crate::log::emit(level, message, &fields);
}
