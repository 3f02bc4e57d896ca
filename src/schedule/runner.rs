//! The running scheduler: one loop over signals, one timer and the file watcher.
//!
//! - ONE timer ([`Timer`], a timerfd on CLOCK_REALTIME) armed at the earliest due time of
//!   all jobs, so an idle scheduler sleeps in the kernel until then: no polling, no
//!   interval timer. A clock step (settime, NTP step, resume) ends the sleep early; the
//!   [`Planner`] then decides what the step means (cronie's rules, see `plan.rs`).
//! - Each due run is a task (`deliver.rs`) that sends the job's request (to a socket,
//!   or to this supd's own executor), retrying an unreachable socket or a full service
//!   until [`RETRY_MARGIN`] (1 s) before the job is due again or `--retry-for` has
//!   passed. A job still
//!   running when it is due again is skipped (logged), never doubled.
//! - Every run's result goes to the state (`state.rs`: catch-up after a restart, the
//!   history), the metrics file and, when it failed or was lost, the `--on-failure` hook.
//!   The files are serialized and written by the state's writer thread (`Persist`).
//! - SIGHUP or a change in the file's directory reloads (`reload.rs`); a file with
//!   errors keeps the old schedule. No per-job walk runs on the event loop: the reload
//!   is planned on a thread, and the state changes of a reload (and the start's catch-up
//!   and state walk) are made `SYNC_CHUNK` (512) jobs per turn, with a yield between.
//! - `supd scheduler`: SIGTERM/SIGINT/SIGQUIT exit 0 at once (callbacks run on in their
//!   services); as PID 1 of the scheduler container it reaps whatever orphans reach it.
//!   The in-process schedule ([`Core`] inside PID-1 supd, `inproc.rs`) has no signals of
//!   its own: it stops when supd's server closes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::calendar::{format_local, next_after};
use super::crontab::{Job, Zone};
use super::deliver::{deliver, Report, Run, Target};
use super::plan::{count_until, Fire, Planner, Skip, Step};
use super::reload::{self, Changes, Filter, Pending, Source, Trigger};
use super::state::{JobLabels, Outcome, Persist, RunResult, Store};
use super::{format_next, hook, job_name, next_wake_text, Config};
use crate::control::protocol::LastResult;
use crate::exit;
use crate::log::Level;
use crate::sys::inotify::Watcher;
use crate::sys::reaper::Reaper;
use crate::sys::signals::{signal_name, Signals};
use crate::sys::timerfd::{Timer, Wake};

/// Retries stop this long before the job is due again: the run is logged lost before
/// the next one starts (never `still running` for a run that only waits to be lost).
pub const RETRY_MARGIN: SignedDuration = SignedDuration::from_secs(1);

/// How many jobs' state a reload updates per turn of the event loop before it yields:
/// signals (SIGTERM) are answered between chunks, however many jobs changed.
const SYNC_CHUNK: usize = 512;

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
    let reaper = Rc::new(Reaper::new());
    let settings = Settings {
        file: config.file.clone(),
        target: Target::Sockets(config.socket_dir.clone()),
        retry_for: config.retry_for,
        state_dir: Some(config.state_dir.clone()),
        state_name: "scheduler.json".into(),
        catch_up: config.catch_up,
        on_failure: config.on_failure.clone(),
        metrics_file: config.metrics_file.clone(),
        reaper: Rc::clone(&reaper),
        filter: None,
    };
    let mut core = match Core::new(settings, zone, jobs, text) {
        Ok(core) => core,
        Err(e) => return fail("cannot create the timer", e),
    };
    crate::info!(
        "scheduler started",
        file = core.shared.file,
        jobs = core.planner.entries.len(),
        socket_dir = config.socket_dir.display(),
        next = next_wake_text(&core.planner)
    );
    core.log_jobs();
    core.catch_up();
    loop {
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
                        // Exit now: freeing a big schedule (100,000 jobs: 0.2-0.4 s in
                        // a debug build) is the kernel's job when the process ends.
                        std::mem::forget(core);
                        return exit::SUCCESS;
                    }
                    libc::SIGHUP => core.reload(Trigger::Sighup),
                    libc::SIGCHLD => {
                        reaper.reap();
                    }
                    other => crate::debug!("signal ignored", signal = signal_name(other)),
                }
            }
            turned = core.turn() => {
                if let Err(e) = turned {
                    return fail("the scheduler's loop failed", e);
                }
            }
        }
    }
}

/// What a schedule needs, from either face.
pub(super) struct Settings {
    pub(super) file: PathBuf,
    pub(super) target: Target,
    pub(super) retry_for: Duration,
    /// None: no state at all (the in-process schedule always has one configured).
    pub(super) state_dir: Option<PathBuf>,
    /// The state file's name in the state dir.
    pub(super) state_name: String,
    /// Catch up a missed run once when its latest missed due time is this recent
    /// (zero: never).
    pub(super) catch_up: Duration,
    pub(super) on_failure: Option<Vec<String>>,
    pub(super) metrics_file: Option<PathBuf>,
    pub(super) reaper: Rc<Reaper>,
    /// The in-process schedule runs only its own service's lines (and slot).
    pub(super) filter: Option<Filter>,
}

/// A running schedule: the jobs' plan, the file they came from, the timer and the file
/// watch, and what the delivery tasks share.
pub(super) struct Core {
    pub(super) planner: Planner,
    source: Source,
    pub(super) shared: Rc<Shared>,
    /// The start of the monotonic clock the planner measures clock steps against.
    origin: Instant,
    timer: Timer,
    watcher: Option<Watcher>,
    /// A reload being parsed on its thread.
    pending: Option<Pending>,
    /// The entries' keys, in order (what a reload thread plans against).
    keys: Arc<Vec<String>>,
    /// An applied reload's state changes not yet made (chunked).
    sync: Option<StateSync>,
    /// The start's catch-up and state work not yet done (chunked).
    startup: Option<Startup>,
}

/// The start's per-job work ([`Core::catch_up`]), [`SYNC_CHUNK`] jobs per turn.
struct Startup {
    now: Timestamp,
    /// The next entry to do.
    next: usize,
    /// The keys of the plan's jobs (the state forgets the others).
    keep: HashSet<String>,
    /// Catch-up runs, started when all jobs are done.
    fires: Vec<Fire>,
    /// The jobs as the metrics label them.
    labels: Vec<JobLabels>,
}

/// A reload's state changes, made [`SYNC_CHUNK`] jobs per turn.
struct StateSync {
    changes: Changes,
    /// How many of `changes.added` are done.
    done: usize,
}

/// State shared with the delivery tasks.
pub(super) struct Shared {
    /// The schedule file, as the logs name it.
    pub(super) file: String,
    target: Target,
    retry_for: Duration,
    catch_up: Duration,
    /// Keys of the jobs whose run is in flight.
    running: RefCell<HashSet<String>>,
    store: RefCell<Store>,
    /// The state's copy on the writer thread, which writes the state and metrics files.
    persist: Persist,
    metrics: bool,
    on_failure: Option<Vec<String>>,
    reaper: Rc<Reaper>,
}

impl Core {
    pub(super) fn new(
        settings: Settings,
        zone: Zone,
        jobs: Vec<Job>,
        text: Vec<u8>,
    ) -> std::io::Result<Core> {
        let origin = Instant::now();
        let timer = Timer::new()?;
        let watcher = reload::watch(&settings.file);
        let jobs = match &settings.filter {
            Some(filter) => filter.apply(jobs),
            None => jobs,
        };
        let store = Store::open(settings.state_dir.as_deref(), &settings.state_name);
        let persist = Persist::new(
            store.path().map(PathBuf::from),
            settings.metrics_file.clone(),
        );
        let keys = Arc::new(jobs.iter().map(Job::key).collect());
        let core = Core {
            planner: Planner::new(jobs, Timestamp::now(), origin.elapsed()),
            source: Source::new(&settings.file, zone, text, settings.filter),
            shared: Rc::new(Shared {
                file: settings.file.display().to_string(),
                target: settings.target,
                retry_for: settings.retry_for,
                catch_up: settings.catch_up,
                running: RefCell::new(HashSet::new()),
                store: RefCell::new(store),
                persist,
                metrics: settings.metrics_file.is_some(),
                on_failure: settings.on_failure,
                reaper: settings.reaper,
            }),
            origin,
            timer,
            watcher,
            pending: None,
            keys,
            sync: None,
            startup: None,
        };
        Ok(core)
    }

    /// One debug line a job.
    pub(super) fn log_jobs(&self) {
        if !crate::log::enabled(Level::Debug) {
            return;
        }
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

    /// At start: each job that missed due times while nothing ran it runs once, when
    /// its latest missed due time is within `--catch-up` (DESIGN §5); every job is
    /// handled up to now, jobs no longer in the file are forgotten, and the state and
    /// metrics are written. Made [`SYNC_CHUNK`] jobs per turn of the loop (by
    /// [`Core::turn`], before the first timer), so a 100,000-job start answers SIGTERM;
    /// the catch-up runs start when all jobs are done.
    pub(super) fn catch_up(&mut self) {
        if !self.shared.persist.active() {
            // No state (so nothing to catch up) and no metrics: no per-job work.
            return;
        }
        self.startup = Some(Startup {
            now: Timestamp::now(),
            next: 0,
            keep: HashSet::with_capacity(self.planner.entries.len()),
            fires: Vec::new(),
            labels: Vec::new(),
        });
    }

    /// Up to [`SYNC_CHUNK`] jobs of the start's work ([`Core::catch_up`]).
    fn startup_step(&mut self) {
        let Some(mut startup) = self.startup.take() else {
            return;
        };
        let now = startup.now;
        let end = (startup.next + SYNC_CHUNK).min(self.planner.entries.len());
        for index in startup.next..end {
            if let Some(fire) = self.missed(index, now) {
                startup.fires.push(fire);
            }
            let (Some(entry), Some(key)) = (self.planner.entries.get(index), self.keys.get(index))
            else {
                continue;
            };
            let job = &entry.job;
            let mut store = self.shared.store.borrow_mut();
            let state = store.entry(key, &job.service, &job.action, now);
            state.handled_ms = state.handled_ms.max(now.as_millisecond());
            self.shared.persist.put(key, state);
            if self.shared.metrics {
                startup.labels.push(JobLabels {
                    key: key.clone(),
                    job: job_name(&self.shared.file, job),
                    service: job.service.clone(),
                    action: job.action.clone(),
                });
            }
            startup.keep.insert(key.clone());
        }
        startup.next = end;
        if end < self.planner.entries.len() {
            self.startup = Some(startup);
            return;
        }
        // The writer's copy got only the plan's jobs; the loop's forgets the others.
        self.shared.store.borrow_mut().retain(&startup.keep);
        if self.shared.metrics {
            self.shared
                .persist
                .labels(Arc::new(std::mem::take(&mut startup.labels)));
        }
        self.shared.persist.save();
        for fire in &startup.fires {
            self.start(fire, true);
        }
    }

    /// The catch-up run of job `index`, if it missed due times while nothing ran it
    /// and the latest is within `--catch-up` (else logged).
    fn missed(&self, index: usize, now: Timestamp) -> Option<Fire> {
        let job = &self.planner.entries.get(index)?.job;
        let store = self.shared.store.borrow();
        let state = store.get(self.keys.get(index)?)?;
        let handled = Timestamp::from_millisecond(state.handled_ms).ok()?;
        let first = next_after(&job.schedule, &job.tz, handled)?;
        if first > now {
            return None;
        }
        let (missed, last) = count_until(job, first, now);
        let name = job_name(&self.shared.file, job);
        let age = now.duration_since(last);
        let window = SignedDuration::try_from(self.shared.catch_up).unwrap_or(SignedDuration::MAX);
        if !self.shared.catch_up.is_zero() && age <= window {
            crate::info!(
                "catch-up",
                missed = missed,
                job = name,
                service = job.service,
                action = job.action,
                last_missed = format_local(last, &job.tz)
            );
            return Some(Fire {
                index,
                due: last,
                coalesced: 0,
            });
        }
        crate::warn!(
            "missed runs not caught up",
            missed = missed,
            job = name,
            service = job.service,
            action = job.action,
            last_missed = format_local(last, &job.tz),
            reason = if self.shared.catch_up.is_zero() {
                "--catch-up 0"
            } else {
                "older than --catch-up"
            }
        );
        None
    }

    /// Make up to [`SYNC_CHUNK`] of a reload's state changes: new jobs get a state
    /// (handled from the reload on), removed ones are forgotten, on the writer's copy
    /// too. Whether all are made (then the files are written).
    fn sync_step(&mut self) -> bool {
        let Some(sync) = &mut self.sync else {
            return true;
        };
        let shared = &self.shared;
        let mut store = shared.store.borrow_mut();
        let mut budget = SYNC_CHUNK;
        while budget > 0 && sync.done < sync.changes.added.len() {
            let index = sync.changes.added[sync.done];
            sync.done += 1;
            budget -= 1;
            let (Some(entry), Some(key)) = (
                self.planner.entries.get(index),
                sync.changes.keys.get(index),
            ) else {
                continue;
            };
            if store.get(key).is_none() {
                let job = &entry.job;
                let state = store.entry(key, &job.service, &job.action, sync.changes.wall);
                shared.persist.put(key, state);
            }
        }
        while budget > 0 {
            let Some(key) = sync.changes.removed.pop() else {
                break;
            };
            budget -= 1;
            if store.remove(&key) {
                shared.persist.remove(key);
            }
        }
        let finished = sync.done >= sync.changes.added.len() && sync.changes.removed.is_empty();
        if finished {
            shared.persist.save();
            self.sync = None;
        }
        finished
    }

    /// Wait for the timer or the file watch, and act on it. While a reload's state
    /// changes are being made, one chunk of them instead, then a yield to the runtime
    /// (its I/O driver runs: a SIGTERM is seen before the next chunk).
    pub(super) async fn turn(&mut self) -> Result<(), String> {
        if self.startup.is_some() || self.sync.is_some() {
            if self.startup.is_some() {
                self.startup_step();
            } else {
                self.sync_step();
            }
            tokio::task::yield_now().await;
            return Ok(());
        }
        self.timer
            .arm(self.planner.next_wake())
            .map_err(|e| format!("cannot arm the timer: {e}"))?;
        tokio::select! {
            woke = self.timer.wait() => {
                let wake = woke.map_err(|e| format!("timer failed: {e}"))?;
                if wake == Wake::ClockSet {
                    crate::debug!("wall clock was set");
                }
                self.tick();
            }
            parsed = async {
                match &mut self.pending {
                    Some(pending) => (&mut pending.rx).await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                if let Some(pending) = self.pending.take() {
                    if let Some(parsed) = parsed {
                        if let Some(changes) =
                            self.source.finish(&mut self.planner, pending.trigger, parsed)
                        {
                            let old =
                                std::mem::replace(&mut self.keys, Arc::clone(&changes.keys));
                            reload::drop_off_loop(old);
                            if let Some(labels) = &changes.labels {
                                self.shared.persist.labels(Arc::clone(labels));
                            }
                            if self.shared.persist.active() {
                                self.sync = Some(StateSync { changes, done: 0 });
                            }
                        }
                    }
                }
            }
            changed = reload::changed(&mut self.watcher) => {
                if let Err(e) = changed {
                    crate::warn!("file watch failed; SIGHUP still reloads", error = e);
                    self.watcher = None;
                } else {
                    self.reload(Trigger::FileChange);
                }
            }
        }
        Ok(())
    }

    /// Start a reload (its result is applied by [`Core::turn`]); a newer one replaces
    /// one still being parsed.
    pub(super) fn reload(&mut self, trigger: Trigger) {
        if let Some(pending) = self.source.begin(&self.keys, self.shared.metrics, trigger) {
            self.pending = Some(pending);
        }
    }

    /// The timer fired (or the clock was set): start what is due.
    fn tick(&mut self) {
        let now = Timestamp::now();
        let (step, plan) = self.planner.advance(now, self.origin.elapsed());
        log_step(step);
        for skip in &plan.skips {
            self.log_skip(skip);
            self.handled(skip.index, now);
        }
        for fire in &plan.fires {
            self.handled(fire.index, now);
            self.start(fire, false);
        }
        if !plan.skips.is_empty() || !plan.fires.is_empty() {
            self.shared.persist.save();
        }
    }

    /// Every due time of the job up to `now` was handled (saved by the caller).
    fn handled(&self, index: usize, now: Timestamp) {
        let Some(entry) = self.planner.entries.get(index) else {
            return;
        };
        let job = &entry.job;
        let Some(key) = self.keys.get(index) else {
            return;
        };
        let mut store = self.shared.store.borrow_mut();
        let state = store.entry(key, &job.service, &job.action, now);
        state.handled_ms = state.handled_ms.max(now.as_millisecond());
        self.shared.persist.put(key, state);
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
    fn start(&self, fire: &Fire, catch_up: bool) {
        let Some(entry) = self.planner.entries.get(fire.index) else {
            return;
        };
        let run = Run::new(&self.shared.file, entry.job.clone(), fire.due);
        let key = run.job.key();
        if self.shared.running.borrow().contains(&key) {
            run.log(Level::Warn, "job skipped", &[("reason", &"still running")]);
            let report = Report {
                outcome: Outcome::Skipped,
                code: None,
                hook_code: exit::EX_TEMPFAIL,
                error: Some("still running".into()),
                duration_ms: 0,
                tail: Vec::new(),
            };
            self.shared.finish(&run, &key, report);
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
        // A catch-up run's due time is in the past: its retry window starts now.
        let from = if catch_up { Timestamp::now() } else { fire.due };
        let deadline = retry_deadline(from, self.shared.retry_for, entry.next_due);
        self.shared.running.borrow_mut().insert(key.clone());
        let shared = Rc::clone(&self.shared);
        tokio::task::spawn_local(async move {
            let report = deliver(&shared.target, &run, deadline).await;
            shared.running.borrow_mut().remove(&key);
            shared.finish(&run, &key, report);
        });
    }
}

impl Shared {
    pub(super) fn store_get(&self, key: &str) -> Option<super::state::JobState> {
        self.store.borrow().get(key).cloned()
    }

    /// A run's result: the state, the metrics, `status`, and the hook when it failed.
    fn finish(&self, run: &Run, key: &str, report: Report) {
        let ended = Timestamp::now();
        {
            let mut store = self.store.borrow_mut();
            let state = store.entry(key, &run.job.service, &run.job.action, ended);
            state.push(RunResult {
                due: run.due.as_second(),
                ended_ms: ended.as_millisecond(),
                outcome: report.outcome.as_str().into(),
                code: report.code,
                duration_ms: report.duration_ms,
            });
            self.persist.put(key, state);
        }
        self.persist.save();
        if let Target::Local(executor) = &self.target {
            executor.record(LastResult {
                action: run.job.action.clone(),
                id: 0,
                ended: ended.as_second(),
                duration_ms: report.duration_ms,
                code: report.code,
                error: None,
                outcome: Some(report.outcome.as_str().into()),
            });
        }
        if matches!(report.outcome, Outcome::Failed | Outcome::Lost) {
            if let Some(argv) = &self.on_failure {
                let env = [
                    ("SUPD_JOB", run.name.clone()),
                    ("SUPD_SERVICE", run.job.service.clone()),
                    ("SUPD_ACTION", run.job.action.clone()),
                    ("SUPD_USER", run.job.user.clone()),
                    ("SUPD_OUTCOME", report.outcome.as_str().to_string()),
                    ("SUPD_CODE", report.hook_code.to_string()),
                    ("SUPD_DUE", run.due_text.clone()),
                    ("SUPD_ERROR", report.error.clone().unwrap_or_default()),
                    ("SUPD_DURATION_MS", report.duration_ms.to_string()),
                ];
                hook::run(argv, &env, &report.tail, &self.reaper);
            }
        }
    }
}

/// Retry until `--retry-for` after `from`, or until [`RETRY_MARGIN`] before the job is
/// due again, whichever is first. (A `--retry-for` beyond the calendar's range means
/// "retry until due again", not "never retry".)
fn retry_deadline(from: Timestamp, retry_for: Duration, next_due: Option<Timestamp>) -> Timestamp {
    let deadline = SignedDuration::try_from(retry_for)
        .ok()
        .and_then(|d| from.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    match next_due {
        Some(next) => {
            let before = next.checked_sub(RETRY_MARGIN).unwrap_or(next).max(from);
            deadline.min(before)
        }
        None => deadline,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn retries_stop_a_margin_before_the_job_is_due_again() {
        let due = at("2026-01-01T04:05:00Z");
        let next = at("2026-01-01T04:06:00Z");
        // A long --retry-for: the next due time minus the margin bounds it, so the run
        // is logged lost a second before the next one starts (never `still running`).
        let deadline = retry_deadline(due, Duration::from_secs(3600), Some(next));
        assert_eq!(deadline, at("2026-01-01T04:05:59Z"));
        assert_eq!(next.duration_since(deadline), RETRY_MARGIN);
        assert!(deadline < next);
        // The same with --retry-for beyond the calendar's range ("until due again").
        let deadline = retry_deadline(due, Duration::MAX, Some(next));
        assert_eq!(deadline, at("2026-01-01T04:05:59Z"));
    }

    #[test]
    fn a_short_retry_for_or_no_next_run_bounds_the_retries_alone() {
        let due = at("2026-01-01T04:05:00Z");
        let next = at("2026-01-01T04:06:00Z");
        assert_eq!(
            retry_deadline(due, Duration::from_secs(4), Some(next)),
            at("2026-01-01T04:05:04Z")
        );
        assert_eq!(
            retry_deadline(due, Duration::from_secs(4), None),
            at("2026-01-01T04:05:04Z")
        );
        assert_eq!(
            retry_deadline(due, Duration::MAX, None),
            Timestamp::MAX,
            "no next run and no limit: retry on"
        );
        // Exactly at the margin: retries end right at the next due time minus 1 s.
        assert_eq!(
            retry_deadline(due, Duration::from_secs(59), Some(next)),
            at("2026-01-01T04:05:59Z")
        );
    }

    #[test]
    fn a_run_started_within_the_margin_gets_no_retries_not_a_deadline_before_it() {
        // A catch-up run (its window starts now) half a second before the job is due
        // again: the deadline is its own start (one attempt, then lost), never earlier.
        let from = at("2026-01-01T04:05:59.5Z");
        let next = at("2026-01-01T04:06:00Z");
        assert_eq!(
            retry_deadline(from, Duration::from_secs(3600), Some(next)),
            from
        );
        // A next due time before `from` (a clock step): still no deadline in the past.
        let earlier = at("2026-01-01T04:00:00Z");
        assert_eq!(
            retry_deadline(from, Duration::from_secs(3600), Some(earlier)),
            from
        );
    }
}
