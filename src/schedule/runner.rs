//! The running scheduler: one loop over signals, one timer and the file watcher.
//!
//! - ONE timer ([`Timer`], a timerfd on CLOCK_REALTIME) armed at the earliest due time of
//!   all jobs, so an idle scheduler sleeps in the kernel until then: no polling, no
//!   interval timer. A clock step (settime, NTP step, resume) ends the sleep early; the
//!   [`Planner`] then decides what the step means (cronie's rules, see `plan.rs`).
//! - Each due run is a task (`deliver.rs`) that sends the job's request, retrying an
//!   unreachable socket until the job is due again or `--retry-for` has passed. A job
//!   still running when it is due again is skipped (logged), never doubled.
//! - SIGHUP or a change in the file's directory reloads (`reload.rs`); a file with
//!   errors keeps the old schedule.
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
use super::deliver::{deliver, Run};
use super::plan::{Fire, Planner, Skip, Step};
use super::reload::{self, Source, Trigger};
use super::{format_next, job_name, next_wake_text, Config};
use crate::exit;
use crate::log::Level;
use crate::sys::reaper::Reaper;
use crate::sys::signals::{signal_name, Signals};
use crate::sys::timerfd::{Timer, Wake};

/// Run the scheduler until SIGTERM; returns the exit status.
pub fn run(config: Config, zone: Zone, jobs: Vec<Job>, text: Vec<u8>) -> i32 {
    let runtime = match crate::sys::event_loop() {
        Ok(runtime) => runtime,
        Err(e) => return fail("cannot start the event loop", e),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, main_loop(config, zone, jobs, text))
}

/// Log an error that stops the scheduler; its exit status.
fn fail(message: &str, error: impl std::fmt::Display) -> i32 {
    crate::error!(message, error = error);
    exit::EX_SOFTWARE
}

async fn main_loop(config: Config, zone: Zone, jobs: Vec<Job>, text: Vec<u8>) -> i32 {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => return fail("cannot read signals", e),
    };
    let reaper = Reaper::new();
    let timer = match Timer::new() {
        Ok(timer) => timer,
        Err(e) => return fail("cannot create the timer", e),
    };
    let mut watcher = reload::watch(&config.file);
    let mut scheduler = Scheduler::new(&config, zone, jobs, text);
    scheduler.log_started();
    loop {
        if let Err(e) = timer.arm(scheduler.planner.next_wake()) {
            return fail("cannot arm the timer", e);
        }
        tokio::select! {
            biased;
            signal = signals.recv() => {
                let signal = match signal {
                    Ok(received) => received.signal,
                    Err(e) => return fail("reading signals failed", e),
                };
                match signal {
                    libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => {
                        crate::info!("scheduler stopping", signal = signal_name(signal));
                        return exit::SUCCESS;
                    }
                    libc::SIGHUP => scheduler.source.reload(&mut scheduler.planner, Trigger::Sighup),
                    libc::SIGCHLD => {
                        reaper.reap();
                    }
                    other => crate::debug!("signal ignored", signal = signal_name(other)),
                }
            }
            woke = timer.wait() => {
                match woke {
                    Ok(wake) => {
                        if wake == Wake::ClockSet {
                            crate::debug!("wall clock was set");
                        }
                        scheduler.tick();
                    }
                    Err(e) => return fail("timer failed", e),
                }
            }
            changed = reload::changed(&mut watcher) => {
                if let Err(e) = changed {
                    crate::warn!("file watch failed; SIGHUP still reloads", error = e);
                    watcher = None;
                } else {
                    scheduler.source.reload(&mut scheduler.planner, Trigger::FileChange);
                }
            }
        }
    }
}

/// What the loop acts on: the jobs' plan, the file they came from, and what the
/// delivery tasks share.
struct Scheduler {
    planner: Planner,
    source: Source,
    shared: Rc<Shared>,
    /// The start of the monotonic clock the planner measures clock steps against.
    origin: Instant,
}

/// State shared with the delivery tasks.
struct Shared {
    /// The schedule file, as the logs name it.
    file: String,
    socket_dir: PathBuf,
    retry_for: Duration,
    /// Keys of the jobs whose run is in flight.
    running: RefCell<HashSet<String>>,
}

impl Scheduler {
    fn new(config: &Config, zone: Zone, jobs: Vec<Job>, text: Vec<u8>) -> Scheduler {
        let origin = Instant::now();
        Scheduler {
            planner: Planner::new(jobs, Timestamp::now(), origin.elapsed()),
            source: Source::new(&config.file, zone, text),
            shared: Rc::new(Shared {
                file: config.file.display().to_string(),
                socket_dir: config.socket_dir.clone(),
                retry_for: config.retry_for,
                running: RefCell::new(HashSet::new()),
            }),
            origin,
        }
    }

    /// The start line, and one debug line a job.
    fn log_started(&self) {
        crate::info!(
            "scheduler started",
            file = self.shared.file,
            jobs = self.planner.entries.len(),
            socket_dir = self.shared.socket_dir.display(),
            next = next_wake_text(&self.planner)
        );
        for entry in &self.planner.entries {
            crate::debug!(
                "job",
                job = job_name(&self.shared.file, &entry.job),
                schedule = entry.job.schedule,
                service = entry.job.service,
                action = entry.job.action,
                tz = entry.job.tz_name,
                next = format_next(entry.next_due, &entry.job.tz)
            );
        }
    }

    /// The timer fired (or the clock was set): start what is due.
    fn tick(&mut self) {
        let (step, plan) = self
            .planner
            .advance(Timestamp::now(), self.origin.elapsed());
        log_step(step);
        for skip in &plan.skips {
            self.log_skip(skip);
        }
        for fire in &plan.fires {
            self.start(fire);
        }
    }

    /// A job whose runs a clock step skipped.
    fn log_skip(&self, skip: &Skip) {
        let Some(entry) = self.planner.entries.get(skip.index) else {
            return;
        };
        let job = &entry.job;
        crate::warn!(
            "job skipped",
            job = job_name(&self.shared.file, job),
            service = job.service,
            action = job.action,
            reason = "clock step",
            first_due = format_local(skip.first, &job.tz),
            missed = skip.count
        );
    }

    /// Start a task that delivers one due run, unless the job's last run is still in
    /// flight.
    fn start(&self, fire: &Fire) {
        let Some(entry) = self.planner.entries.get(fire.index) else {
            return;
        };
        let run = Run::new(&self.shared.file, entry.job.clone(), fire.due);
        let key = run.job.key();
        if self.shared.running.borrow().contains(&key) {
            run.log(Level::Warn, "job skipped", &[("reason", &"still running")]);
            return;
        }
        if fire.coalesced > 0 {
            crate::info!(
                "job was due several times; running it once",
                job = run.name,
                due = run.due_text,
                coalesced = fire.coalesced
            );
        }
        let deadline = retry_deadline(fire.due, self.shared.retry_for, entry.next_due);
        self.shared.running.borrow_mut().insert(key.clone());
        let shared = Rc::clone(&self.shared);
        tokio::task::spawn_local(async move {
            deliver(&shared.socket_dir, &run, deadline).await;
            shared.running.borrow_mut().remove(&key);
        });
    }
}

/// Retry until the job is due again or `--retry-for` after `due`, whichever is first.
/// (A `--retry-for` beyond the calendar's range means "retry until due again", not
/// "never retry".)
fn retry_deadline(due: Timestamp, retry_for: Duration, next_due: Option<Timestamp>) -> Timestamp {
    let deadline = due.checked_add(retry_for).unwrap_or(Timestamp::MAX);
    next_due.map_or(deadline, |next| deadline.min(next))
}

/// What a clock step means for the jobs (the planner's rules, `plan.rs`).
fn log_step(step: Step) {
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
}
