//! The per-job state work of a running schedule, made [`SYNC_CHUNK`] jobs per turn of
//! the loop (by [`Core::turn`]) so that SIGTERM is answered however many jobs there are:
//! the start's catch-up and state walk ([`Core::catch_up`]), and a reload's state
//! changes (new jobs get a state, removed ones are forgotten).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{Core, SYNC_CHUNK};
use crate::schedule::calendar::{format_local, next_after};
use crate::schedule::job_name;
use crate::schedule::plan::{count_until, Fire};
use crate::schedule::state::JobLabels;

impl Core {
    /// Up to [`SYNC_CHUNK`] jobs of the start's work ([`Core::catch_up`]).
    pub(super) fn startup_step(&mut self) {
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
    pub(super) fn sync_step(&mut self) -> bool {
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
}
