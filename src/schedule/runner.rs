//! The running scheduler: one timer, deliveries, retries, reloads, signals.
//!
//! - ONE timerfd on CLOCK_REALTIME armed at the earliest due time of all jobs
//!   (`TFD_TIMER_ABSTIME`), so an idle scheduler sleeps in the kernel until then: no
//!   polling, no interval timer. `TFD_TIMER_CANCEL_ON_SET` makes a clock step (settime,
//!   NTP step, resume) end the sleep with ECANCELED; the [`Planner`] then decides what
//!   the step means (cronie's rules, see `plan.rs`).
//! - Each run is a task that sends `USER ACTION` through the shared client
//!   (`control::client`), relays the callback's output at debug level and logs one line
//!   with the result. A missing or refusing socket is retried with backoff (1 s, 2 s,
//!   4 s ... 30 s) until the job is due again or `--retry-for` has passed, then logged as
//!   lost. A job still running when it is due again is skipped (logged), never doubled.
//! - SIGHUP or a change in the file's directory (inotify: editors' rename-over, k8s
//!   configmap symlink swaps) reloads; a file with errors keeps the old schedule.
//! - SIGTERM/SIGINT/SIGQUIT: exit 0 at once (callbacks run on in their services).
//! - As PID 1 of the scheduler container it reaps whatever orphans reach it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::calendar::format_local;
use super::crontab::{self, Job, Zone};
use super::plan::{Planner, Step};
use super::Config;
use crate::control::client::{self, ClientError, Outcome};
use crate::control::protocol::{ErrorKind, Event, Request};
use crate::exit;
use crate::log::Level;

/// Backoff between delivery attempts to an absent or refusing socket.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The monotonic clock as a Duration since the scheduler started.
fn mono(origin: Instant) -> Duration {
    origin.elapsed()
}

/// Run the scheduler until SIGTERM; returns the exit status.
pub fn run(config: Config, zone: Zone, jobs: Vec<Job>, text: Vec<u8>) -> i32 {
    let runtime = match crate::sys::event_loop() {
        Ok(runtime) => runtime,
        Err(e) => {
            crate::error!("cannot start the event loop", error = e);
            return exit::EX_SOFTWARE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, main_loop(config, zone, jobs, text))
}

/// State shared with the delivery tasks.
struct Shared {
    file: String,
    socket_dir: PathBuf,
    retry_for: Duration,
    /// Keys of the jobs whose run is in flight.
    running: RefCell<HashSet<String>>,
}

async fn main_loop(config: Config, zone: Zone, jobs: Vec<Job>, text: Vec<u8>) -> i32 {
    let mut signals = match crate::sys::signals::Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            crate::error!("cannot read signals", error = e);
            return exit::EX_SOFTWARE;
        }
    };
    let reaper = crate::sys::reaper::Reaper::new();
    let timer = match Timer::new() {
        Ok(timer) => timer,
        Err(e) => {
            crate::error!("cannot create the timer", error = e);
            return exit::EX_SOFTWARE;
        }
    };
    let mut watcher = match Watcher::new(&config.file) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            crate::warn!(
                "not watching the schedule for changes (SIGHUP still reloads)",
                file = config.file.display(),
                error = e
            );
            None
        }
    };
    let shared = Rc::new(Shared {
        file: config.file.display().to_string(),
        socket_dir: config.socket_dir.clone(),
        retry_for: config.retry_for,
        running: RefCell::new(HashSet::new()),
    });
    let origin = Instant::now();
    let mut planner = Planner::new(jobs, Timestamp::now(), mono(origin));
    let mut last_text = text;
    crate::info!(
        "scheduler started",
        file = shared.file,
        jobs = planner.entries.len(),
        socket_dir = shared.socket_dir.display(),
        next = next_wake_text(&planner)
    );
    for entry in &planner.entries {
        crate::debug!(
            "job",
            job = format!("{}:{}", shared.file, entry.job.line),
            schedule = entry.job.schedule,
            service = entry.job.service,
            action = entry.job.action,
            tz = entry.job.tz_name,
            next = entry
                .next_due
                .map_or_else(|| "never".into(), |t| format_local(t, &entry.job.tz))
        );
    }
    loop {
        if let Err(e) = timer.arm(planner.next_wake()) {
            crate::error!("cannot arm the timer", error = e);
            return exit::EX_SOFTWARE;
        }
        tokio::select! {
            biased;
            signal = signals.recv() => {
                let signal = match signal {
                    Ok(received) => received.signal,
                    Err(e) => {
                        crate::error!("reading signals failed", error = e);
                        return exit::EX_SOFTWARE;
                    }
                };
                match signal {
                    libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => {
                        crate::info!("scheduler stopping", signal = crate::sys::signals::signal_name(signal));
                        return 0;
                    }
                    libc::SIGHUP => {
                        reload(&mut planner, &config, &zone, &mut last_text, true);
                    }
                    libc::SIGCHLD => {
                        reaper.reap();
                    }
                    other => crate::debug!("signal ignored", signal = crate::sys::signals::signal_name(other)),
                }
            }
            woke = timer.wait() => {
                match woke {
                    Ok(cancelled) => {
                        if cancelled {
                            crate::debug!("wall clock was set");
                        }
                        tick(&mut planner, &shared, origin);
                    }
                    Err(e) => {
                        crate::error!("timer failed", error = e);
                        return exit::EX_SOFTWARE;
                    }
                }
            }
            changed = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = changed {
                    crate::warn!("file watch failed; SIGHUP still reloads", error = e);
                    watcher = None;
                } else {
                    reload(&mut planner, &config, &zone, &mut last_text, false);
                }
            }
        }
    }
}

fn next_wake_text(planner: &Planner) -> String {
    planner
        .entries
        .iter()
        .filter_map(|e| e.next_due.map(|t| (t, &e.job.tz)))
        .min_by_key(|(t, _)| *t)
        .map_or_else(|| "never".into(), |(t, tz)| format_local(t, tz))
}

/// The timer fired (or the clock was set): run what is due.
fn tick(planner: &mut Planner, shared: &Rc<Shared>, origin: Instant) {
    let wall = Timestamp::now();
    let (step, plan) = planner.advance(wall, mono(origin));
    match step {
        Step::Normal => {}
        Step::Forward(ms) => crate::warn!(
            "wall clock stepped forward: missed fixed-time jobs run once now; wildcard jobs \
             run only for the current minute",
            step_ms = ms
        ),
        Step::Backward(ms) => crate::warn!(
            "wall clock stepped back: wildcard jobs follow it, fixed-time jobs do not run twice",
            step_ms = ms
        ),
        Step::Large(ms) => crate::warn!(
            "wall clock corrected by more than 3h: schedule restarted from the new time",
            step_ms = ms
        ),
    }
    for skip in &plan.skips {
        let Some(job) = planner.entries.get(skip.index).map(|e| &e.job) else {
            continue;
        };
        crate::warn!(
            "job skipped",
            job = format!("{}:{}", shared.file, job.line),
            service = job.service,
            action = job.action,
            reason = "clock step",
            first_due = format_local(skip.first, &job.tz),
            missed = skip.count
        );
    }
    for fire in plan.fires {
        let Some(entry) = planner.entries.get(fire.index) else {
            continue;
        };
        let job = entry.job.clone();
        let key = job.key();
        if shared.running.borrow().contains(&key) {
            log_result(
                Level::Warn,
                "job skipped",
                &format!("{}:{}", shared.file, job.line),
                &job,
                &format_local(fire.due, &job.tz),
                &[("reason", &"still running")],
            );
            continue;
        }
        if fire.coalesced > 0 {
            crate::info!(
                "job was due several times; running it once",
                job = format!("{}:{}", shared.file, job.line),
                due = format_local(fire.due, &job.tz),
                coalesced = fire.coalesced
            );
        }
        // Retry until the job is due again or --retry-for, whichever is first.
        // (A --retry-for beyond the calendar's range means "retry until due again", not
        // "never retry".)
        let mut deadline = fire
            .due
            .checked_add(shared.retry_for)
            .unwrap_or(Timestamp::MAX);
        if let Some(next) = entry.next_due {
            deadline = deadline.min(next);
        }
        shared.running.borrow_mut().insert(key.clone());
        let shared = Rc::clone(shared);
        tokio::task::spawn_local(async move {
            deliver(&shared, &job, fire.due, deadline).await;
            shared.running.borrow_mut().remove(&key);
        });
    }
}

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
async fn deliver(shared: &Shared, job: &Job, due: Timestamp, deadline: Timestamp) {
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
fn log_result(
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

/// Reload the file. `forced` (SIGHUP) reloads and logs even an unchanged file; a file
/// change only acts when the content differs from what was last seen.
fn reload(
    planner: &mut Planner,
    config: &Config,
    zone: &Zone,
    last_text: &mut Vec<u8>,
    forced: bool,
) {
    let name = config.file.display().to_string();
    let text = match crontab::read_limited(&config.file) {
        Ok(text) => text,
        Err(e) => {
            if forced {
                crate::error!(
                    "cannot read the schedule; keeping the old one",
                    file = name,
                    error = e
                );
            }
            return;
        }
    };
    if !forced && text == *last_text {
        return;
    }
    *last_text = text;
    match crontab::parse(&name, last_text, zone) {
        Ok(jobs) => {
            planner.replace_jobs(jobs, Timestamp::now());
            crate::info!(
                "schedule reloaded",
                file = name,
                jobs = planner.entries.len(),
                trigger = if forced { "SIGHUP" } else { "file change" },
                next = next_wake_text(planner)
            );
        }
        Err(errors) => {
            for error in &errors {
                crate::error!(error);
            }
            crate::error!(
                "schedule has errors; keeping the old one",
                file = name,
                errors = errors.len(),
                jobs = planner.entries.len()
            );
        }
    }
}

/// A timerfd on CLOCK_REALTIME, readable by the event loop.
struct Timer {
    fd: AsyncFd<TimerFdRaw>,
}

struct TimerFdRaw(TimerFd);

impl AsRawFd for TimerFdRaw {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the timerfd and keeps it open as long as itself.
        let fd = unsafe { AsyncFd::register_with_interest(TimerFdRaw(fd), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Timer { fd })
    }

    /// Arm at an absolute wall-clock time (None: disarm).
    fn arm(&self, at: Option<Timestamp>) -> nix::Result<()> {
        let timer = &self.fd.get_ref().0;
        let Some(at) = at else {
            return timer.unset();
        };
        // A zero it_value would disarm; anything before now fires at once.
        let (secs, nanos) = (at.as_second().max(1), at.subsec_nanosecond().max(0));
        let spec = TimeSpec::new(secs, i64::from(nanos));
        timer.set(
            Expiration::OneShot(spec),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )
    }

    /// Wait for expiry; Ok(true) when the wall clock was set (ECANCELED).
    async fn wait(&self) -> std::io::Result<bool> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            match nix::unistd::read(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(_) => return Ok(false),
                Err(Errno::ECANCELED) => return Ok(true),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// inotify on the schedule's directory: any write-close, rename into it or attribute
/// change may have changed the file (the content is compared before reloading).
struct Watcher {
    fd: AsyncFd<OwnedFd>,
}

impl Watcher {
    fn new(file: &Path) -> std::io::Result<Watcher> {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // SAFETY: plain syscalls; the fd is owned right away.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh inotify fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::other("directory name contains NUL"))?;
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_ATTRIB;
        // SAFETY: valid fd and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), mask) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the inotify fd.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Watcher { fd })
    }

    /// Wait for events and drain them.
    async fn changed(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut got = false;
            loop {
                match nix::unistd::read(self.fd.get_ref().as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(_) => got = true,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if got {
                return Ok(());
            }
        }
    }
}
