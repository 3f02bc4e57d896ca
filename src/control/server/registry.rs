//! The callbacks that run and the last result of each action: busy checks, `status`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::MAX_LAST_RESULTS;
use crate::control::callbacks::Ending;
use crate::control::protocol::{self, ErrorKind, LastResult, Running};

/// A running callback, for busy checks and `status`.
struct RunInfo {
    id: u64,
    pid: u32,
    user: String,
    started: Instant,
}

/// Which callbacks run (at most one per action, at most `max_callbacks` in all), and how
/// each action's last run ended.
pub(super) struct Registry {
    max_callbacks: usize,
    running: HashMap<String, RunInfo>,
    last: BTreeMap<String, LastResult>,
    next_id: u64,
}

impl Registry {
    pub(super) fn new(max_callbacks: usize) -> Registry {
        Registry {
            max_callbacks,
            running: HashMap::new(),
            last: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Why `action` may not start now, if it may not: it runs already (`busy`), or the
    /// limit is reached (`full`).
    pub(super) fn busy(&self, action: &str) -> Option<(ErrorKind, String)> {
        if let Some(run) = self.running.get(action) {
            return Some((
                ErrorKind::Busy,
                format!(
                    "{action} is already running (id {}, for {}s)",
                    run.id,
                    run.started.elapsed().as_secs()
                ),
            ));
        }
        if self.running.len() >= self.max_callbacks {
            return Some((
                ErrorKind::Full,
                format!(
                    "{} callbacks are running (--max-callbacks {}); try again later",
                    self.running.len(),
                    self.max_callbacks
                ),
            ));
        }
        None
    }

    /// The id for the next run (request ids number this supd's runs from 1).
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// `action` was spawned as run `id`, with process (and group) `pid`.
    pub(super) fn started(&mut self, action: &str, id: u64, pid: u32, user: &str) {
        self.running.insert(
            action.to_string(),
            RunInfo {
                id,
                pid,
                user: user.to_string(),
                started: Instant::now(),
            },
        );
    }

    /// Run `id` of `action` ended: it no longer counts as running, and becomes the
    /// action's last result (unless there was no such action).
    pub(super) fn finished(&mut self, action: &str, id: u64, ending: &Ending, duration: Duration) {
        self.running.remove(action);
        let (code, error) = match ending {
            Ending::Exited(exit) => (Some(exit.status()), None),
            Ending::UnknownAction => (None, Some(ErrorKind::UnknownAction)),
            Ending::TimedOut(_) => (None, Some(ErrorKind::Timeout)),
            Ending::Failed(_) => (None, Some(ErrorKind::Internal)),
        };
        crate::info!(
            "callback finished",
            action = action,
            id = id,
            result = match (code, error) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(kind)) => kind.to_string(),
                (None, None) => String::new(),
            },
            duration_ms = duration.as_millis()
        );
        if matches!(ending, Ending::UnknownAction) {
            return;
        }
        if self.last.len() >= MAX_LAST_RESULTS && !self.last.contains_key(action) {
            let oldest = self
                .last
                .values()
                .min_by_key(|result| result.id)
                .map(|result| result.action.clone());
            if let Some(oldest) = oldest {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(
            action.to_string(),
            LastResult {
                action: action.to_string(),
                id,
                ended: jiff::Timestamp::now().as_second(),
                duration_ms: protocol::millis(duration),
                code,
                error,
                outcome: None,
            },
        );
    }

    /// A scheduled run's result (from the in-process schedule, or its state file at
    /// start): `status` shows it as the action's last result.
    pub(super) fn record(&mut self, result: LastResult) {
        if self.last.len() >= MAX_LAST_RESULTS && !self.last.contains_key(&result.action) {
            return;
        }
        self.last.insert(result.action.clone(), result);
    }

    /// The running callbacks, oldest first, for `status`.
    pub(super) fn running(&self) -> Vec<Running> {
        let mut running: Vec<Running> = self
            .running
            .iter()
            .map(|(action, run)| Running {
                action: action.clone(),
                id: run.id,
                pid: run.pid,
                user: run.user.clone(),
                elapsed_ms: protocol::millis(run.started.elapsed()),
            })
            .collect();
        running.sort_by_key(|r| r.id);
        running
    }

    /// Each action's last result, sorted by action, for `status`.
    pub(super) fn last(&self) -> Vec<LastResult> {
        self.last.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_results_are_bounded_oldest_forgotten() {
        let mut registry = Registry::new(4);
        let failed = Ending::Failed("broken".into());
        let total = MAX_LAST_RESULTS as u64 + 50;
        for id in 1..=total {
            registry.finished(&format!("a{id}"), id, &failed, Duration::ZERO);
        }
        // A known action is updated in place, not counted twice.
        registry.finished("a300", total + 1, &failed, Duration::ZERO);
        let last = &registry.last;
        assert_eq!(last.len(), MAX_LAST_RESULTS);
        assert!(!last.contains_key("a1") && !last.contains_key("a50"));
        assert!(last.contains_key("a51") && last.contains_key(&format!("a{total}")));
        assert_eq!(last.get("a300").map(|r| r.id), Some(total + 1));
        // Unknown actions never enter.
        registry.finished("nope", total + 2, &Ending::UnknownAction, Duration::ZERO);
        assert!(!registry.last.contains_key("nope"));
        assert_eq!(registry.last().len(), MAX_LAST_RESULTS);
    }

    #[test]
    fn busy_per_action_and_over_the_limit() {
        let mut registry = Registry::new(2);
        assert_eq!(registry.next_id(), 1);
        assert_eq!(registry.next_id(), 2);
        assert_eq!(registry.busy("a"), None);
        registry.started("a", 1, 100, "root");
        let (kind, busy) = registry
            .busy("a")
            .unwrap_or((ErrorKind::Other, String::new()));
        assert_eq!(kind, ErrorKind::Busy);
        assert!(busy.contains("a is already running (id 1"), "{busy}");
        assert_eq!(registry.busy("b"), None);
        registry.started("b", 2, 101, "root");
        let (kind, busy) = registry
            .busy("c")
            .unwrap_or((ErrorKind::Other, String::new()));
        assert_eq!(kind, ErrorKind::Full);
        assert!(busy.contains("--max-callbacks 2"), "{busy}");
        let running = registry.running();
        assert_eq!(running.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        let exited = Ending::Exited(crate::sys::reaper::Exit::Code(0));
        registry.finished("a", 1, &exited, Duration::ZERO);
        assert_eq!(registry.busy("c"), None);
        assert_eq!(registry.last().len(), 1);
        assert_eq!(registry.last()[0].code, Some(0));
    }
}
