//! The schedule's state (DESIGN §5): per job, the last due time handled and the last
//! results, so that a restart can catch up what it missed and `status` / the metrics keep
//! their history.
//!
//! One JSON file in `--state-dir` (`scheduler.json` for `supd scheduler`,
//! `schedule-<service>.json` for a service's in-process schedule), written atomically
//! (temp file, fsync, rename, fsync of the directory) by the [`Persist`] thread, which keeps a
//! copy of the state: the event loop (PID 1) sends each job's change and never
//! serializes or waits for a disk. A missing or unreadable directory is
//! logged once and the schedule runs without state; a corrupt file is logged and
//! ignored (it is replaced at the next write).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::metrics::{render, Labels};

/// The state file's format version.
const VERSION: u32 = 1;
/// How many results of each job are kept.
pub const KEPT_RESULTS: usize = 10;

/// How a run ended (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Non-zero exit, or an error answer.
    Failed,
    /// Never delivered (unreachable or full until the retry window closed).
    Lost,
    /// `busy`, or the job's previous run was still in flight.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Lost,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Lost => "lost",
            Outcome::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run's result as the state keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Due time, Unix seconds.
    pub due: i64,
    /// When the result was known, Unix milliseconds.
    pub ended_ms: i64,
    pub outcome: String,
    /// The callback's exit status, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    pub duration_ms: u64,
}

/// What the state knows of one job (keyed by [`Job::key`](super::crontab::Job::key)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub service: String,
    pub action: String,
    /// Every due time up to this one (Unix milliseconds) was handled: run, skipped, or
    /// deliberately not caught up.
    pub handled_ms: i64,
    /// Newest last, at most [`KEPT_RESULTS`].
    #[serde(default)]
    pub results: Vec<RunResult>,
    /// When the last `ok` run ended, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// Runs by outcome, since the state began.
    #[serde(default)]
    pub runs: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    v: u32,
    jobs: HashMap<String, JobState>,
}

/// The state in memory, and where it is saved (None: no usable state dir).
pub struct Store {
    path: Option<PathBuf>,
    jobs: HashMap<String, JobState>,
    /// Whether a state file existed (false on the first start: no catch-up).
    pub existed: bool,
}

impl Store {
    /// Load `<dir>/<name>`. Problems are logged, never fatal.
    pub fn open(dir: Option<&Path>, name: &str) -> Store {
        let mut store = Store {
            path: None,
            jobs: HashMap::new(),
            existed: false,
        };
        let Some(dir) = dir else {
            return store;
        };
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                crate::warn!(
                    "state dir is not a directory; running without state (no catch-up, no history across restarts)",
                    state_dir = dir.display()
                );
                return store;
            }
            Err(e) => {
                crate::warn!(
                    "no state dir; running without state (no catch-up, no history across restarts)",
                    state_dir = dir.display(),
                    error = e
                );
                return store;
            }
        }
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(file) if file.v == VERSION => {
                    store.jobs = file.jobs;
                    store.existed = true;
                }
                Ok(file) => crate::warn!(
                    "state file has an unknown version; ignoring it",
                    path = path.display(),
                    v = file.v
                ),
                Err(e) => crate::error!(
                    "state file is corrupt; ignoring it (no catch-up this time)",
                    path = path.display(),
                    error = e
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::info!("no state yet; starting one", path = path.display())
            }
            Err(e) => crate::error!(
                "cannot read the state file; ignoring it",
                path = path.display(),
                error = e
            ),
        }
        store.path = Some(path);
        store
    }

    /// Whether the state is saved (a usable state dir).
    pub fn persistent(&self) -> bool {
        self.path.is_some()
    }

    pub fn get(&self, key: &str) -> Option<&JobState> {
        self.jobs.get(key)
    }

    /// The job's state, created (handled up to `now`) if it has none.
    pub fn entry(
        &mut self,
        key: &str,
        service: &str,
        action: &str,
        now: Timestamp,
    ) -> &mut JobState {
        self.jobs
            .entry(key.to_string())
            .or_insert_with(|| JobState {
                service: service.to_string(),
                action: action.to_string(),
                handled_ms: now.as_millisecond(),
                ..JobState::default()
            })
    }

    /// Forget jobs no longer in the file.
    pub fn retain(&mut self, keys: &std::collections::HashSet<String>) {
        self.jobs.retain(|key, _| keys.contains(key));
    }

    /// The file's bytes, or None without a state dir.
    pub fn serialize(&self) -> Option<(PathBuf, Vec<u8>)> {
        Some((self.path.clone()?, serialize(&self.jobs)))
    }

    /// The whole state, for the [`Persist`] thread's copy.
    pub fn jobs(&self) -> &HashMap<String, JobState> {
        &self.jobs
    }

    /// The state file, when there is a usable state dir.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Forget one job; whether it had a state.
    pub fn remove(&mut self, key: &str) -> bool {
        self.jobs.remove(key).is_some()
    }
}

#[derive(Serialize)]
struct FileRef<'a> {
    v: u32,
    jobs: &'a HashMap<String, JobState>,
}

impl JobState {
    /// Add one result (and count it).
    pub fn push(&mut self, result: RunResult) {
        *self.runs.entry(result.outcome.clone()).or_default() += 1;
        if result.outcome == Outcome::Ok.as_str() {
            self.last_success_ms = Some(result.ended_ms);
        }
        self.results.push(result);
        if self.results.len() > KEPT_RESULTS {
            let extra = self.results.len() - KEPT_RESULTS;
            self.results.drain(..extra);
        }
    }
}

/// A change of the state, sent to the [`Persist`] thread.
enum Change {
    /// The whole state (at start, after the first sync).
    Replace(HashMap<String, JobState>),
    Put(String, JobState),
    Remove(String),
    /// The jobs as the metrics label them, in file order.
    Labels(Arc<Vec<JobLabels>>),
    /// Write the files (pending saves collapse into one).
    Save,
}

/// One job as the metrics file labels it.
#[derive(Clone, Debug)]
pub struct JobLabels {
    pub key: String,
    /// `file:line`.
    pub job: String,
    pub service: String,
    pub action: String,
}

/// Keeps a copy of the state on its own thread and writes the state file and the
/// metrics file there, atomically: the event loop (PID 1) sends one job's change, O(1)
/// per run, and never serializes, renders or waits for a disk. Pending saves collapse
/// into one. The thread inherits supd's blocked signal mask (signals stay with the
/// signalfd) and starts no process.
pub struct Persist {
    tx: Option<mpsc::Sender<Change>>,
}

impl Persist {
    /// A writer for the state file `state` and the metrics file `metrics`; inactive
    /// (no thread) when there is neither.
    pub fn new(state: Option<PathBuf>, metrics: Option<PathBuf>) -> Persist {
        if state.is_none() && metrics.is_none() {
            return Persist { tx: None };
        }
        let (tx, rx) = mpsc::channel::<Change>();
        let spawned = crate::sys::thread::spawn("supd-state", move || {
            persist_loop(&rx, state.as_deref(), metrics.as_deref())
        });
        match spawned {
            Ok(_) => Persist { tx: Some(tx) },
            Err(e) => {
                crate::error!(
                    "cannot start the state writer; state and metrics are not saved",
                    error = e
                );
                Persist { tx: None }
            }
        }
    }

    /// Whether anything is written (a state dir or a metrics file).
    pub fn active(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, change: Change) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(change);
        }
    }

    pub fn replace(&self, jobs: HashMap<String, JobState>) {
        self.send(Change::Replace(jobs));
    }

    pub fn put(&self, key: &str, state: &JobState) {
        if self.active() {
            self.send(Change::Put(key.to_string(), state.clone()));
        }
    }

    pub fn remove(&self, key: String) {
        self.send(Change::Remove(key));
    }

    pub fn labels(&self, labels: Arc<Vec<JobLabels>>) {
        self.send(Change::Labels(labels));
    }

    pub fn save(&self) {
        self.send(Change::Save);
    }
}

fn persist_loop(rx: &mpsc::Receiver<Change>, state: Option<&Path>, metrics: Option<&Path>) {
    let mut jobs: HashMap<String, JobState> = HashMap::new();
    let mut labels: Arc<Vec<JobLabels>> = Arc::new(Vec::new());
    let mut failing: HashMap<PathBuf, String> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut save = false;
        let mut change = Some(first);
        while let Some(next) = change {
            match next {
                Change::Replace(all) => jobs = all,
                Change::Put(key, state) => {
                    jobs.insert(key, state);
                }
                Change::Remove(key) => {
                    jobs.remove(&key);
                }
                Change::Labels(new) => labels = new,
                Change::Save => save = true,
            }
            change = rx.try_recv().ok();
        }
        if !save {
            continue;
        }
        if let Some(path) = state {
            let started = std::time::Instant::now();
            let bytes = serialize(&jobs);
            write_logged(path, &bytes, started, &mut failing);
        }
        if let Some(path) = metrics {
            let started = std::time::Instant::now();
            let rows: Vec<_> = labels
                .iter()
                .map(|l| {
                    (
                        Labels {
                            job: &l.job,
                            service: &l.service,
                            action: &l.action,
                        },
                        jobs.get(&l.key),
                    )
                })
                .collect();
            let bytes = render(&rows).into_bytes();
            write_logged(path, &bytes, started, &mut failing);
        }
    }
}

/// Write one file, log the cost at debug (`render_us`: serializing or rendering it,
/// `write_us`: temp file, fsync, rename, fsync of the directory) and a failure once.
fn write_logged(
    path: &Path,
    bytes: &[u8],
    started: std::time::Instant,
    failing: &mut HashMap<PathBuf, String>,
) {
    let rendered = started.elapsed();
    let result = write_atomic(path, bytes);
    let written = started.elapsed().saturating_sub(rendered);
    match result {
        Ok(()) => {
            if failing.remove(path).is_some() {
                crate::info!("writing works again", path = path.display());
            }
            crate::debug!(
                "file written",
                path = path.display(),
                bytes = bytes.len(),
                render_us = rendered.as_micros(),
                write_us = written.as_micros()
            );
        }
        Err(e) => {
            let message = e.to_string();
            if failing.get(path) != Some(&message) {
                crate::error!("cannot write", path = path.display(), error = message);
                failing.insert(path.to_path_buf(), message);
            }
        }
    }
}

/// The state file's bytes.
fn serialize(jobs: &HashMap<String, JobState>) -> Vec<u8> {
    let file = FileRef { v: VERSION, jobs };
    let mut bytes = serde_json::to_vec(&file).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Write `bytes` to `path` atomically: a temp file in the same directory (a dot name,
/// so node_exporter's textfile collector never reads it half-written), fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        // An explicit 0644, not 0666 less the umask: the umask is the process's, and the
        // request server's thread sets it around its socket's `bind` (0111 for a 0666
        // socket): a file made at that moment would be world-writable.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_bounded_and_counted() {
        let mut job = JobState::default();
        for n in 0..15 {
            job.push(RunResult {
                due: n,
                ended_ms: n * 1000,
                outcome: if n % 2 == 0 { "ok" } else { "failed" }.into(),
                code: Some(0),
                duration_ms: 1,
            });
        }
        assert_eq!(job.results.len(), KEPT_RESULTS);
        assert_eq!(job.results[0].due, 5);
        assert_eq!(job.runs.get("ok"), Some(&8));
        assert_eq!(job.runs.get("failed"), Some(&7));
        assert_eq!(job.last_success_ms, Some(14_000));
    }

    #[test]
    fn saved_state_loads_back_and_corrupt_is_ignored() {
        let dir = std::env::temp_dir().join(format!("supd-state-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(Some(&dir), "s.json");
        assert!(!store.existed);
        store.entry("k", "svc", "act", Timestamp::from_second(100).unwrap());
        let (path, bytes) = store.serialize().unwrap();
        write_atomic(&path, &bytes).unwrap();
        let back = Store::open(Some(&dir), "s.json");
        assert!(back.existed);
        assert_eq!(back.get("k").map(|j| j.handled_ms), Some(100_000));
        std::fs::write(&path, b"{not json").unwrap();
        let corrupt = Store::open(Some(&dir), "s.json");
        assert!(!corrupt.existed && corrupt.get("k").is_none());
        assert!(corrupt.serialize().is_some());
        let none = Store::open(Some(&dir.join("missing")), "s.json");
        assert!(none.serialize().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
