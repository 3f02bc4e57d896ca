//! What is due, run: the timer fired (or the clock was set), so the due runs start,
//! each as a task that delivers its request (`deliver.rs`) until its retry deadline;
//! its result goes to the state, the metrics, `status` and, when it failed or was
//! lost, the `--on-failure` hook. A job still running when it is due again is skipped.

use std::rc::Rc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Core, Shared, RETRY_MARGIN};
use crate::control::protocol::LastResult;
use crate::exit;
use crate::log::Level;
use crate::schedule::calendar::format_local;
use crate::schedule::deliver::{deliver, Report, Run, Target};
use crate::schedule::plan::{Fire, Skip, Step};
use crate::schedule::state::{Outcome, RunResult};
use crate::schedule::{hook, job_name};

impl Core {
    /// The timer fired (or the clock was set): start what is due.
    pub(super) fn tick(&mut self) {
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
    pub(super) fn start(&self, fire: &Fire, catch_up: bool) {
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
