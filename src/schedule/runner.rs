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
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::calendar::format_local;
use super::crontab::{Job, Zone};
use super::deliver::{deliver, log_result};
use super::plan::{Planner, Step};
use super::reload::reload;
use super::Config;
use crate::exit;
use crate::log::Level;
use crate::sys::inotify::Watcher;
use crate::sys::timerfd::Timer;

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
pub(super) struct Shared {
    pub(super) file: String,
    pub(super) socket_dir: PathBuf,
    pub(super) retry_for: Duration,
    /// Keys of the jobs whose run is in flight.
    pub(super) running: RefCell<HashSet<String>>,
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

pub(super) fn next_wake_text(planner: &Planner) -> String {
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
