//! Reloading the schedule file: on SIGHUP, or when the watcher sees its directory
//! change. A file with errors (or one that cannot be read) keeps the old schedule.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use super::crontab::{self, Job, Zone};
use super::plan::{replan, Planner, Replan};
use super::state::JobLabels;
use super::{job_name, next_wake_text};
use crate::sys::inotify::Watcher;

/// What asked for the reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    /// SIGHUP: reload and log even an unchanged file, and say why one cannot be read.
    Sighup,
    /// The watcher: act only when the content differs from what was last read.
    FileChange,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::FileChange => "file change",
        }
    }
}

/// A reloaded file planned on its thread: the entries and what changed.
pub(super) struct Reloaded {
    pub(super) replan: Replan,
    /// The jobs as the metrics label them (only with a metrics file).
    pub(super) labels: Option<Arc<Vec<JobLabels>>>,
    /// When it was planned (new jobs' state is handled from then).
    pub(super) wall: Timestamp,
}

/// What a reload thread hands back: the planned jobs, or every error of the file.
pub(super) type Parsed = Result<Reloaded, Vec<String>>;

/// A reload being parsed on its thread.
pub(super) struct Pending {
    pub(super) rx: tokio::sync::oneshot::Receiver<Parsed>,
    pub(super) trigger: Trigger,
}

/// What an applied reload changed, for the state (applied in chunks by the runner).
pub(super) struct Changes {
    /// The new entries' keys, in order.
    pub(super) keys: Arc<Vec<String>>,
    /// Indices of the new jobs.
    pub(super) added: Vec<usize>,
    /// Keys of the jobs no longer in the file.
    pub(super) removed: Vec<String>,
    pub(super) labels: Option<Arc<Vec<JobLabels>>>,
    pub(super) wall: Timestamp,
}

/// Free a big value on a thread of its own: 100,000 jobs take 0.2 s to free in a debug
/// build, time the event loop would not answer signals. Inline if no thread starts.
pub(super) fn drop_off_loop<T: Send + 'static>(value: T) {
    // When no thread starts, the closure (and the value) is freed here.
    let _ = crate::sys::thread::spawn("supd-free", move || drop(value));
}

/// The jobs of a plan as the metrics label them.
pub(super) fn job_labels(file: &str, replan: &Replan) -> Vec<JobLabels> {
    replan
        .entries
        .iter()
        .zip(&replan.keys)
        .map(|(entry, key)| JobLabels {
            key: key.clone(),
            job: job_name(file, &entry.job),
            service: entry.job.service.clone(),
            action: entry.job.action.clone(),
        })
        .collect()
}

/// Which lines of a stack-wide file a service's own schedule runs (DESIGN §5).
#[derive(Clone, Debug)]
pub(super) struct Filter {
    pub(super) service: String,
    /// `--slot`: None runs every line (one replica is slot-less).
    pub(super) slot: Option<u32>,
}

impl Filter {
    pub(super) fn keeps(&self, job: &Job) -> bool {
        job.service == self.service
            && match (self.slot, job.slot) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }

    pub(super) fn apply(&self, mut jobs: Vec<Job>) -> Vec<Job> {
        jobs.retain(|job| self.keeps(job));
        jobs
    }
}

/// The schedule file and the content last read from it.
pub(super) struct Source {
    file: PathBuf,
    /// `file` as the logs show it.
    name: String,
    /// The zone of the lines before any `TZ=` line.
    zone: Zone,
    text: Vec<u8>,
    filter: Option<Filter>,
    /// Why the file could not be read the last time (logged once until it changes).
    read_error: Option<String>,
}

impl Source {
    /// `text` is the content the running schedule was parsed from.
    pub(super) fn new(file: &Path, zone: Zone, text: Vec<u8>, filter: Option<Filter>) -> Source {
        Source {
            file: file.to_path_buf(),
            name: file.display().to_string(),
            zone,
            text,
            filter,
            read_error: None,
        }
    }

    /// Read the file again and, when it changed (or on SIGHUP), parse and plan it on a
    /// thread of its own against `old_keys` (the running entries' keys): the event loop
    /// keeps answering signals (SIGTERM within 1 s during a 100,000-line reload) and
    /// does no per-job work here. [`Source::finish`] applies the result.
    pub(super) fn begin(
        &mut self,
        old_keys: &Arc<Vec<String>>,
        labels: bool,
        trigger: Trigger,
    ) -> Option<Pending> {
        if !self.read(trigger) {
            return None;
        }
        let (name, text, zone, filter, old_keys) = (
            self.name.clone(),
            self.text.clone(),
            self.zone.clone(),
            self.filter.clone(),
            Arc::clone(old_keys),
        );
        let work = move || -> Parsed {
            let jobs = crontab::parse(&name, &text, &zone)?;
            let jobs = match &filter {
                Some(filter) => filter.apply(jobs),
                None => jobs,
            };
            let wall = Timestamp::now();
            let replan = replan(jobs, &old_keys, wall);
            let labels = labels.then(|| Arc::new(job_labels(&name, &replan)));
            Ok(Reloaded {
                replan,
                labels,
                wall,
            })
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work = Arc::new(std::sync::Mutex::new(Some((work, tx))));
        let theirs = Arc::clone(&work);
        let spawned = crate::sys::thread::spawn("supd-reload", move || {
            let taken = theirs.lock().ok().and_then(|mut w| w.take());
            if let Some((work, tx)) = taken {
                let _ = tx.send(work());
            }
        });
        if let Err(e) = spawned {
            crate::warn!("no reload thread; reloading in the loop", error = e);
            let taken = work.lock().ok().and_then(|mut w| w.take());
            if let Some((work, tx)) = taken {
                let _ = tx.send(work());
            }
        }
        Some(Pending { rx, trigger })
    }

    /// A reload's result: the planner gets its jobs (unchanged ones keep their next due
    /// time as it is now), or the errors are logged. The changes for the state when the
    /// jobs were replaced.
    pub(super) fn finish(
        &self,
        planner: &mut Planner,
        trigger: Trigger,
        parsed: Parsed,
    ) -> Option<Changes> {
        match parsed {
            Ok(Reloaded {
                replan,
                labels,
                wall,
            }) => {
                let Replan {
                    entries,
                    keys,
                    kept,
                    added,
                    removed,
                } = replan;
                let old = planner.apply(entries, &kept, wall);
                drop_off_loop((old, kept));
                crate::info!(
                    "schedule reloaded",
                    file = self.name,
                    jobs = planner.entries.len(),
                    added = added.len(),
                    removed = removed.len(),
                    trigger = trigger.name(),
                    next = next_wake_text(planner)
                );
                Some(Changes {
                    keys: Arc::new(keys),
                    added,
                    removed,
                    labels,
                    wall,
                })
            }
            Err(errors) => {
                for error in &errors {
                    crate::error!(error);
                }
                crate::error!(
                    "schedule has errors; keeping the old one",
                    file = self.name,
                    errors = errors.len(),
                    jobs = planner.entries.len()
                );
                None
            }
        }
    }

    /// Read the file into `text`; whether there is something to parse (the file could be
    /// read and, on a file change, its content changed).
    fn read(&mut self, trigger: Trigger) -> bool {
        let text = match crontab::read_limited(&self.file) {
            Ok(text) => {
                self.read_error = None;
                text
            }
            Err(e) => {
                // Logged at the change that made it unreadable (and on every SIGHUP),
                // not again for each unrelated change in the directory.
                let message = e.to_string();
                if trigger == Trigger::Sighup || self.read_error.as_ref() != Some(&message) {
                    crate::error!(
                        "cannot read the schedule; keeping the old one",
                        file = self.name,
                        error = message,
                        trigger = trigger.name()
                    );
                }
                self.read_error = Some(message);
                return false;
            }
        };
        if trigger == Trigger::FileChange && text == self.text {
            return false;
        }
        self.text = text;
        true
    }
}

/// Watch the file's directory rather than the file: editors rename a new file over it
/// and Kubernetes swaps a configmap's symlink, and a watch on the file itself would stay
/// on the old inode. Any write-close, rename into the directory or attribute change may
/// have changed the file; [`Source::reload`] compares the content.
///
/// None (logged) when the directory cannot be watched: SIGHUP still reloads.
pub(super) fn watch(file: &Path) -> Option<Watcher> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mask = libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_TO
        | libc::IN_ATTRIB
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM;
    match Watcher::new(dir, mask) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            crate::warn!(
                "not watching the schedule for changes (SIGHUP still reloads)",
                file = file.display(),
                error = e
            );
            None
        }
    }
}

/// Wait for the next change the watcher sees (forever without one).
pub(super) async fn changed(watcher: &mut Option<Watcher>) -> std::io::Result<()> {
    match watcher {
        Some(watcher) => watcher.changed().await,
        None => std::future::pending().await,
    }
}
