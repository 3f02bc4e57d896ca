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
//!
//! Files: this one is the loop and the [`Core`] it turns (its timer, file watch and
//! reloads); `runner/dispatch.rs` starts what is due when the timer fires and records
//! each run's result; `runner/state_sync.rs` is the per-job state work of the start
//! (catch-up) and of a reload, made [`SYNC_CHUNK`] jobs per turn.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::crontab::{Job, Zone};
use super::deliver::Target;
use super::plan::{Fire, Planner};
use super::reload::{self, Changes, Filter, Pending, Source, Trigger};
use super::state::{JobLabels, Persist, Store};
use super::{format_next, job_name, next_wake_text, Config};
use crate::exit;
use crate::log::Level;
use crate::sys::inotify::Watcher;
use crate::sys::reaper::Reaper;
use crate::sys::signals::{signal_name, Signals};
use crate::sys::timerfd::{Timer, Wake};

mod dispatch;
mod state_sync;

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
    let reaper = Arc::new(Reaper::new());
    let settings = Settings {
        file: config.file.clone(),
        target: Target::Sockets(config.socket_dir.clone()),
        retry_for: config.retry_for,
        state_dir: Some(config.state_dir.clone()),
        state_name: "scheduler.json".into(),
        catch_up: config.catch_up,
        on_failure: config.on_failure.clone(),
        metrics_file: config.metrics_file.clone(),
        reaper: Arc::clone(&reaper),
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
    pub(super) reaper: Arc<Reaper>,
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
    reaper: Arc<Reaper>,
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
}

impl Shared {
    pub(super) fn store_get(&self, key: &str) -> Option<super::state::JobState> {
        self.store.borrow().get(key).cloned()
    }
}
