//! `supd --schedule FILE` (DESIGN §5): the service's PID-1 supd runs the lines of one
//! stack-wide schedule whose SERVICE is its own (and whose `SLOT=` is its `--slot`),
//! through the same executor as socket requests: busy, full, `--max-callbacks`, the
//! timeout and `status` apply alike, and the socket need not exist.
//!
//! It is a task on supd's event loop, with no signals of its own (SIGHUP goes to the
//! service; a change of the file reloads it) and it ends when the server closes (the
//! service exited). A file that cannot be read or has errors at start is logged and the
//! schedule starts empty: PID 1 never exits over its schedule, and fixing the file
//! (seen by the watch) brings the jobs in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::crontab::{self, LoadError, Zone};
use super::deliver::Target;
use super::next_wake_text;
use super::reload::Filter;
use super::runner::{Core, Settings};
use crate::control::protocol::LastResult;
use crate::control::server::{self, ServerContext, ServerHandle, Shared};
use crate::sys::reaper::Reaper;

/// The in-process schedule's settings (built by `cli`).
#[derive(Clone, Debug)]
pub struct InProcess {
    pub file: PathBuf,
    /// `--slot`: run `SLOT=N` jobs only when N is this (None: run them all).
    pub slot: Option<u32>,
    pub state_dir: PathBuf,
    pub catch_up: Duration,
    pub retry_for: Duration,
    pub on_failure: Option<Vec<String>>,
    pub metrics_file: Option<PathBuf>,
    /// The executor's settings (the socket's, also used when there is no socket).
    pub executor: server::Config,
}

/// Start the service's own schedule next to (or, without a socket, in place of) the
/// request server; returns the server handle init closes at shutdown. Without a
/// schedule this is `server` unchanged. Call inside supd's `LocalSet`.
pub fn attach(
    schedule: Option<InProcess>,
    server: Option<ServerHandle>,
    shared: &Arc<Shared>,
    reaper: &Arc<Reaper>,
    service_pid: u32,
) -> Option<ServerHandle> {
    let Some(schedule) = schedule else {
        return server;
    };
    let server = server.unwrap_or_else(|| {
        server::start_without_socket(ServerContext {
            config: schedule.executor.clone(),
            shared: Arc::clone(shared),
            reaper: Arc::clone(reaper),
            service_pid,
            supd_pid: std::process::id(),
        })
    });
    let executor = server.executor();
    let zone = match crontab::default_zone() {
        Ok(zone) => zone,
        Err(e) => {
            crate::error!("schedule: bad $TZ; using UTC", error = e);
            Zone::utc()
        }
    };
    let (jobs, text) = match crontab::load(&schedule.file, &zone) {
        Ok(loaded) => loaded,
        Err(LoadError::Unreadable(e)) => {
            crate::error!("cannot read the schedule; starting without jobs", error = e);
            (Vec::new(), Vec::new())
        }
        Err(LoadError::Invalid(errors)) => {
            for error in &errors {
                crate::error!(error);
            }
            crate::error!(
                "schedule has errors; starting without jobs",
                file = schedule.file.display(),
                errors = errors.len()
            );
            (
                Vec::new(),
                crontab::read_limited(&schedule.file).unwrap_or_default(),
            )
        }
    };
    let service = executor.service().to_string();
    let settings = Settings {
        file: schedule.file.clone(),
        target: Target::Local(executor.clone()),
        retry_for: schedule.retry_for,
        state_dir: Some(schedule.state_dir.clone()),
        state_name: format!("schedule-{service}.json"),
        catch_up: schedule.catch_up,
        on_failure: schedule.on_failure.clone(),
        metrics_file: schedule.metrics_file.clone(),
        reaper: Arc::clone(reaper),
        filter: Some(Filter {
            service: service.clone(),
            slot: schedule.slot,
        }),
    };
    let mut core = match Core::new(settings, zone, jobs, text) {
        Ok(core) => core,
        Err(e) => {
            crate::error!(
                "cannot create the schedule's timer; running without it",
                error = e
            );
            return Some(server);
        }
    };
    // `status` shows the results kept across restarts.
    for result in core.last_results() {
        executor.record(result);
    }
    crate::info!(
        "schedule started",
        file = core.shared.file,
        service = service,
        slot = schedule
            .slot
            .map_or_else(|| "-".to_string(), |n| n.to_string()),
        jobs = core.planner.entries.len(),
        next = next_wake_text(&core.planner)
    );
    core.log_jobs();
    core.catch_up();
    tokio::task::spawn_local(async move {
        loop {
            tokio::select! {
                biased;
                () = executor.closed() => break,
                turned = core.turn() => if let Err(e) = turned {
                    crate::error!("the schedule stopped", error = e);
                    break;
                },
            }
        }
        crate::debug!("schedule stopped");
    });
    Some(server)
}

impl Core {
    /// Each action's newest result from the state, for `status`.
    fn last_results(&self) -> Vec<LastResult> {
        let mut by_action: std::collections::BTreeMap<String, LastResult> = Default::default();
        for entry in &self.planner.entries {
            let Some(state) = self.shared.store_get(&entry.job.key()) else {
                continue;
            };
            let Some(last) = state.results.last() else {
                continue;
            };
            let result = LastResult {
                action: entry.job.action.clone(),
                id: 0,
                ended: last.ended_ms.div_euclid(1000),
                duration_ms: last.duration_ms,
                code: last.code,
                error: None,
                outcome: Some(last.outcome.clone()),
            };
            match by_action.get(&result.action) {
                Some(known) if known.ended >= result.ended => {}
                _ => {
                    by_action.insert(result.action.clone(), result);
                }
            }
        }
        by_action.into_values().collect()
    }
}
