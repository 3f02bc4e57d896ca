//! The callbacks that run and the last result of each action: busy checks, `status`.

use std::time::{Duration, Instant};

use super::{State, MAX_LAST_RESULTS};
use crate::control::callbacks::Ending;
use crate::control::protocol::{self, ErrorKind, LastResult, Running, Status, VERSION};

/// A running callback, for busy checks, `status` and shutdown.
pub(super) struct RunInfo {
    pub(super) id: u64,
    pub(super) pid: u32,
    pub(super) user: String,
    pub(super) started: Instant,
}

impl State {
    pub(super) fn status(&self) -> Status {
        let mut running: Vec<Running> = self
            .running
            .borrow()
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
        Status {
            v: VERSION,
            service: self.settings.service.clone(),
            service_pid: self.service_pid,
            supd_pid: self.supd_pid,
            uptime_s: self.started.elapsed().as_secs(),
            running,
            last: self.last.borrow().values().cloned().collect(),
        }
    }

    pub(super) fn busy(&self, action: &str) -> Option<String> {
        let running = self.running.borrow();
        if let Some(run) = running.get(action) {
            return Some(format!(
                "{action} is already running (id {}, for {}s)",
                run.id,
                run.started.elapsed().as_secs()
            ));
        }
        if running.len() >= self.max_callbacks {
            return Some(format!(
                "{} callbacks are running (--max-callbacks {}); try again later",
                running.len(),
                self.max_callbacks
            ));
        }
        None
    }
}

impl State {
    pub(super) fn finish(&self, action: &str, id: u64, ending: &Ending, duration: Duration) {
        self.running.borrow_mut().remove(action);
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
        let ended = jiff::Timestamp::now().as_second();
        let mut last = self.last.borrow_mut();
        if last.len() >= MAX_LAST_RESULTS && !last.contains_key(action) {
            let oldest = last
                .values()
                .min_by_key(|result| result.id)
                .map(|result| result.action.clone());
            if let Some(oldest) = oldest {
                last.remove(&oldest);
            }
        }
        last.insert(
            action.to_string(),
            LastResult {
                action: action.to_string(),
                id,
                ended,
                duration_ms: protocol::millis(duration),
                code,
                error,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::socket::lock_service;
    use super::super::*;
    use super::*;

    fn state() -> State {
        State {
            settings: Settings {
                bash: PathBuf::from("bash"),
                service: "svc".into(),
                callbacks: PathBuf::from("/nonexistent"),
                callback_lib: PathBuf::from("/nonexistent"),
                timeout: Duration::from_secs(1),
                supd_pid: 1,
            },
            reaper: Rc::new(Reaper::new()),
            path: PathBuf::from("/nonexistent"),
            inode: (0, 0),
            service_pid: 2,
            supd_pid: 1,
            started: Instant::now(),
            max_callbacks: 4,
            allow_uid: Vec::new(),
            allow_gid: Vec::new(),
            running: RefCell::default(),
            last: RefCell::default(),
            next_id: Cell::new(1),
            connections: Cell::new(0),
            reading: RefCell::default(),
            closed: Cell::new(false),
            listing: Cell::new(false),
            _lock: {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("supd-unit-{}-{n}.sock", std::process::id()));
                let lock = lock_service(&path).unwrap();
                let _ = std::fs::remove_file(path.with_extension("sock.lock"));
                lock
            },
            no_connections: tokio::sync::Notify::new(),
        }
    }

    #[test]
    fn last_results_are_bounded_oldest_forgotten() {
        let state = state();
        let failed = Ending::Failed("broken".into());
        let total = MAX_LAST_RESULTS as u64 + 50;
        for id in 1..=total {
            state.finish(&format!("a{id}"), id, &failed, Duration::ZERO);
        }
        // A known action is updated in place, not counted twice.
        state.finish("a300", total + 1, &failed, Duration::ZERO);
        let last = state.last.borrow();
        assert_eq!(last.len(), MAX_LAST_RESULTS);
        assert!(!last.contains_key("a1") && !last.contains_key("a50"));
        assert!(last.contains_key("a51") && last.contains_key(&format!("a{total}")));
        assert_eq!(last.get("a300").map(|r| r.id), Some(total + 1));
        // Unknown actions never enter.
        drop(last);
        state.finish("nope", total + 2, &Ending::UnknownAction, Duration::ZERO);
        assert!(!state.last.borrow().contains_key("nope"));
    }
}
