//! What is due, and what to do after a wall-clock step: the runner's pure logic.
//!
//! The [`Planner`] holds each job's next due time and is told the time by its caller,
//! both the wall clock (CLOCK_REALTIME, what schedules are about) and a monotonic clock.
//! Comparing how far each moved since the last call tells a normal wake-up from a clock
//! step. No I/O and no clock reads here, so tests drive it with any times they like.
//!
//! Steps follow cronie's `cron.c` (`main`, the `wakeupKind` switch), adapted to per-job
//! next-due times:
//!
//! - normal (the clocks agree within [`STEP_TOLERANCE_MS`]) and forward steps below
//!   [`SMALL_STEP_MS`] (5 min): every job whose due time has passed runs, once: several
//!   missed fire times of one job are coalesced into one run (the log says how many);
//! - forward 5 min .. 3 h: fixed-time jobs that were missed run once right away
//!   ("fixed-time jobs for each minute missed"; coalesced per job); wildcard jobs run only
//!   if one of their fire times falls in the current minute, the rest are skipped;
//! - backward up to 3 h: wildcard jobs follow the clock back (they run again on the
//!   repeated minutes); fixed-time jobs keep their next due time, so nothing runs twice;
//! - larger than 3 h either way: a clock correction: every job is recomputed from the new
//!   time, and only fire times in the current minute run (cronie's "large" case).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::calendar::next_after;
use super::crontab::Job;

/// Wall and monotonic clocks may disagree by this much without it being a step (timer
/// latency, NTP slewing over a long sleep).
pub const STEP_TOLERANCE_MS: i64 = 2_000;
/// Below this a forward step is treated like a late wake-up (cronie's "small").
pub const SMALL_STEP_MS: i64 = 5 * 60_000;
/// Above this either way, a step is a clock correction (cronie's "large").
pub const LARGE_STEP_MS: i64 = 3 * 3_600_000;
/// How many missed fire times of one job are counted at most.
const MAX_COUNTED: u32 = 100_000;

/// How the wall clock moved relative to the monotonic clock since the last call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Normal,
    /// Forward by this many ms (up to 3 h).
    Forward(i64),
    /// Backward by this many ms (up to 3 h).
    Backward(i64),
    /// More than 3 h either way (signed ms).
    Large(i64),
}

/// A job to run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// Index into [`Planner::entries`].
    pub index: usize,
    /// The (first) fire time this run stands for.
    pub due: Timestamp,
    /// Further fire times coalesced into this run.
    pub coalesced: u32,
}

/// Fire times that were not run (a forward step skipped them for a wildcard job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub index: usize,
    pub first: Timestamp,
    pub count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub fires: Vec<Fire>,
    pub skips: Vec<Skip>,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub job: Job,
    /// None: the schedule has no further fire time within the search horizon.
    pub next_due: Option<Timestamp>,
}

pub struct Planner {
    pub entries: Vec<Entry>,
    last_wall: Timestamp,
    last_mono: Duration,
}

fn ms(d: SignedDuration) -> i64 {
    d.as_millis()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Planner {
    /// Plan `jobs` from `wall` (fire times strictly after it).
    pub fn new(jobs: Vec<Job>, wall: Timestamp, mono: Duration) -> Planner {
        let entries = jobs
            .into_iter()
            .map(|job| {
                let next_due = next_after(&job.schedule, &job.tz, wall);
                Entry { job, next_due }
            })
            .collect();
        Planner {
            entries,
            last_wall: wall,
            last_mono: mono,
        }
    }

    /// Swap in a reloaded file (tests; the runner plans on a thread with [`replan`]
    /// and applies it with [`Planner::apply`]).
    pub fn replace_jobs(&mut self, jobs: Vec<Job>, wall: Timestamp) {
        let keys: Vec<String> = self.entries.iter().map(|e| e.job.key()).collect();
        let replan = replan(jobs, &keys, wall);
        self.apply(replan.entries, &replan.kept, wall);
    }

    /// Swap in entries [`replan`] made. Jobs that did not change keep their next due
    /// time as it is NOW (runs due since the plan was made have advanced it; a reload at
    /// the very moment a job is due does not lose or double that run); new ones were
    /// planned from the reload's time. Linear, no allocation per job.
    /// Returns the old entries (the caller may free them off the event loop).
    pub fn apply(
        &mut self,
        mut entries: Vec<Entry>,
        kept: &[Option<usize>],
        wall: Timestamp,
    ) -> Vec<Entry> {
        for (entry, kept) in entries.iter_mut().zip(kept) {
            if let Some(index) = kept {
                entry.next_due = match self.entries.get(*index) {
                    Some(old) => old.next_due,
                    None => next_after(&entry.job.schedule, &entry.job.tz, wall),
                };
            }
        }
        std::mem::replace(&mut self.entries, entries)
    }

    /// When the runner must wake next.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.entries.iter().filter_map(|e| e.next_due).min()
    }

    /// Classify the clock movement since the last call.
    pub fn classify(&self, wall: Timestamp, mono: Duration) -> Step {
        let wall_ms = ms(wall.duration_since(self.last_wall));
        let mono_ms =
            i64::try_from(mono.saturating_sub(self.last_mono).as_millis()).unwrap_or(i64::MAX);
        let step = wall_ms.saturating_sub(mono_ms);
        if step.abs() <= STEP_TOLERANCE_MS {
            Step::Normal
        } else if step.abs() > LARGE_STEP_MS {
            Step::Large(step)
        } else if step > 0 {
            Step::Forward(step)
        } else {
            Step::Backward(-step)
        }
    }

    /// The time is now `wall` / `mono`: decide what runs and advance every job.
    pub fn advance(&mut self, wall: Timestamp, mono: Duration) -> (Step, Plan) {
        let step = self.classify(wall, mono);
        self.last_wall = wall;
        self.last_mono = mono;
        let mut plan = Plan::default();
        let minute_ago = wall
            .checked_sub(SignedDuration::from_secs(60))
            .unwrap_or(wall);
        for (index, entry) in self.entries.iter_mut().enumerate() {
            let job = &entry.job;
            let wildcard = job.schedule.wildcard;
            match step {
                Step::Large(_) => {
                    // A clock correction: start over; run what is due this very minute.
                    if let Some(due) = next_after(&job.schedule, &job.tz, minute_ago) {
                        if due <= wall {
                            plan.fires.push(Fire {
                                index,
                                due,
                                coalesced: 0,
                            });
                        }
                    }
                    entry.next_due = next_after(&job.schedule, &job.tz, wall);
                }
                Step::Backward(_) => {
                    if wildcard {
                        entry.next_due = next_after(&job.schedule, &job.tz, wall);
                    }
                }
                Step::Normal | Step::Forward(_) => {
                    let Some(first) = entry.next_due.filter(|due| *due <= wall) else {
                        continue;
                    };
                    let (count, last) = count_until(job, first, wall);
                    let medium = matches!(step, Step::Forward(ms) if ms >= SMALL_STEP_MS);
                    if medium && wildcard {
                        if last > minute_ago {
                            plan.fires.push(Fire {
                                index,
                                due: last,
                                coalesced: 0,
                            });
                            if count > 1 {
                                plan.skips.push(Skip {
                                    index,
                                    first,
                                    count: count - 1,
                                });
                            }
                        } else {
                            plan.skips.push(Skip {
                                index,
                                first,
                                count,
                            });
                        }
                    } else {
                        plan.fires.push(Fire {
                            index,
                            due: first,
                            coalesced: count - 1,
                        });
                    }
                    entry.next_due = next_after(&job.schedule, &job.tz, wall);
                }
            }
        }
        (step, plan)
    }
}

/// A reloaded file planned against the running plan's job keys (in entry order).
/// Pure: it runs on the reload thread, so the event loop only swaps vectors.
#[derive(Debug)]
pub struct Replan {
    pub entries: Vec<Entry>,
    /// `entries[i].job.key()`.
    pub keys: Vec<String>,
    /// Per new entry, the running entry with the same key: its next due time is kept
    /// ([`Planner::apply`] reads it then). None: a new job, planned from `wall`.
    pub kept: Vec<Option<usize>>,
    /// Indices into `entries` of the new jobs (no running job has their key).
    pub added: Vec<usize>,
    /// Keys of running jobs no longer in the file (each once).
    pub removed: Vec<String>,
}

/// Plan `jobs` against `old_keys` (the running entries' keys, in order): O(jobs + old).
pub fn replan(jobs: Vec<Job>, old_keys: &[String], wall: Timestamp) -> Replan {
    let old: HashMap<&str, usize> = old_keys
        .iter()
        .enumerate()
        .map(|(index, key)| (key.as_str(), index))
        .collect();
    let mut entries = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    let mut kept = Vec::with_capacity(jobs.len());
    let mut added = Vec::new();
    for job in jobs {
        let key = job.key();
        let index = old.get(key.as_str()).copied();
        let next_due = match index {
            Some(_) => None, // filled in by `apply`
            None => {
                added.push(entries.len());
                next_after(&job.schedule, &job.tz, wall)
            }
        };
        entries.push(Entry { job, next_due });
        keys.push(key);
        kept.push(index);
    }
    let new: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut gone = HashSet::new();
    let removed = old_keys
        .iter()
        .filter(|key| !new.contains(key.as_str()) && gone.insert(key.as_str()))
        .cloned()
        .collect();
    Replan {
        entries,
        keys,
        kept,
        added,
        removed,
    }
}

/// How many fire times of `job` lie in [first, wall], and the last of them.
pub(super) fn count_until(job: &Job, first: Timestamp, wall: Timestamp) -> (u32, Timestamp) {
    let (mut count, mut last) = (1, first);
    while count < MAX_COUNTED {
        match next_after(&job.schedule, &job.tz, last) {
            Some(next) if next <= wall => {
                count += 1;
                last = next;
            }
            _ => break,
        }
    }
    (count, last)
}

// The runner's logic with an injected clock (no waiting).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Fire, Planner, Skip, Step};
    use crate::schedule::crontab::{parse, Zone};
    use jiff::Timestamp;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn planner(text: &str, wall: &str) -> Planner {
        let jobs = parse("F", text.as_bytes(), &Zone::utc()).unwrap();
        Planner::new(jobs, ts(wall), Duration::from_secs(1000))
    }

    /// Mono time `secs` after the start (the planner was created at mono 1000 s).
    fn mono(secs: f64) -> Duration {
        Duration::from_secs(1000) + Duration::from_secs_f64(secs)
    }

    #[test]
    fn wakes_once_at_the_earliest_due_time() {
        let mut p = planner("*/5 * * * * a b\n0 13 * * * a c\n", "2026-05-01T12:01:30Z");
        assert_eq!(p.next_wake(), Some(ts("2026-05-01T12:05:00Z")));
        let (step, plan) = p.advance(ts("2026-05-01T12:05:00.004Z"), mono(210.004));
        assert_eq!(step, Step::Normal);
        assert_eq!(
            plan.fires,
            [Fire {
                index: 0,
                due: ts("2026-05-01T12:05:00Z"),
                coalesced: 0
            }]
        );
        assert_eq!(p.next_wake(), Some(ts("2026-05-01T12:10:00Z")));
        // Nothing due: nothing fires, nothing moves.
        let (_, plan) = p.advance(ts("2026-05-01T12:07:00Z"), mono(330.0));
        assert!(plan.fires.is_empty() && plan.skips.is_empty());
    }

    #[test]
    fn a_late_wake_runs_each_job_once() {
        // The loop was stalled (mono agrees with wall): every job due runs, coalesced.
        let mut p = planner("* * * * * a b\n", "2026-05-01T12:00:30Z");
        let (step, plan) = p.advance(ts("2026-05-01T12:03:10Z"), mono(160.0));
        assert_eq!(step, Step::Normal);
        assert_eq!(
            plan.fires,
            [Fire {
                index: 0,
                due: ts("2026-05-01T12:01:00Z"),
                coalesced: 2
            }]
        );
        assert_eq!(p.next_wake(), Some(ts("2026-05-01T12:04:00Z")));
    }

    #[test]
    fn small_forward_step_catches_up_everything_once() {
        let mut p = planner("* * * * * a b\n2 12 * * * a c\n", "2026-05-01T12:00:30Z");
        // Wall jumps 3 minutes while only 1 s passes.
        let (step, plan) = p.advance(ts("2026-05-01T12:03:31Z"), mono(1.0));
        assert_eq!(step, Step::Forward(180_000));
        assert_eq!(
            plan.fires,
            [
                Fire {
                    index: 0,
                    due: ts("2026-05-01T12:01:00Z"),
                    coalesced: 2
                },
                Fire {
                    index: 1,
                    due: ts("2026-05-01T12:02:00Z"),
                    coalesced: 0
                },
            ]
        );
    }

    #[test]
    fn medium_forward_step_runs_missed_fixed_jobs_and_skips_wildcards() {
        let text = "*/10 * * * * a wild\n30 13 * * * a fixed\n0,15 13 * * * a twice\n5 14 * * * a current\n";
        let mut p = planner(text, "2026-05-01T12:58:00Z");
        // 12:58 -> 14:05:20 in one second of real time (a 67-minute step).
        let (step, plan) = p.advance(ts("2026-05-01T14:05:20Z"), mono(1.0));
        assert!(matches!(step, Step::Forward(ms) if ms > 60 * 60_000));
        assert_eq!(
            plan.fires,
            [
                Fire {
                    index: 1,
                    due: ts("2026-05-01T13:30:00Z"),
                    coalesced: 0
                },
                Fire {
                    index: 2,
                    due: ts("2026-05-01T13:00:00Z"),
                    coalesced: 1
                },
                Fire {
                    index: 3,
                    due: ts("2026-05-01T14:05:00Z"),
                    coalesced: 0
                },
            ]
        );
        // */10 missed 13:00 .. 14:00: skipped (none in the current minute).
        assert_eq!(
            plan.skips,
            [Skip {
                index: 0,
                first: ts("2026-05-01T13:00:00Z"),
                count: 7
            }]
        );
        assert_eq!(p.entries[0].next_due, Some(ts("2026-05-01T14:10:00Z")));
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-02T13:30:00Z")));
    }

    #[test]
    fn backward_step_repeats_wildcards_but_not_fixed_jobs() {
        let mut p = planner(
            "*/20 * * * * a wild\n0 12 * * * a fixed\n",
            "2026-05-01T11:59:00Z",
        );
        let (_, plan) = p.advance(ts("2026-05-01T12:00:00Z"), mono(60.0));
        assert_eq!(plan.fires.len(), 2);
        // The clock goes back 45 minutes.
        let (step, plan) = p.advance(ts("2026-05-01T11:15:10Z"), mono(70.0));
        assert_eq!(step, Step::Backward(2_700_000));
        assert!(plan.fires.is_empty());
        assert_eq!(p.entries[0].next_due, Some(ts("2026-05-01T11:20:00Z")));
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-02T12:00:00Z")));
        // Walking the repeated time again: the wildcard runs, the fixed job does not.
        let mut fired = Vec::new();
        let mut wall = ts("2026-05-01T11:15:10Z");
        let base = wall;
        while wall < ts("2026-05-01T12:30:00Z") {
            wall = p.next_wake().unwrap();
            let elapsed = Duration::try_from(wall.duration_since(base)).unwrap();
            let (_, plan) = p.advance(wall, mono(70.0) + elapsed);
            fired.extend(plan.fires.iter().map(|f| (f.index, f.due.to_string())));
        }
        assert_eq!(
            fired,
            [
                (0, "2026-05-01T11:20:00Z".to_string()),
                (0, "2026-05-01T11:40:00Z".to_string()),
                (0, "2026-05-01T12:00:00Z".to_string()),
                (0, "2026-05-01T12:20:00Z".to_string()),
                (0, "2026-05-01T12:40:00Z".to_string()),
            ]
        );
    }

    #[test]
    fn large_step_restarts_and_runs_only_the_current_minute() {
        let mut p = planner(
            "0 * * * * a hourly\n0 3 * * * a daily\n",
            "2026-05-01T12:30:00Z",
        );
        let (step, plan) = p.advance(ts("2026-05-03T03:00:20Z"), mono(1.0));
        assert!(matches!(step, Step::Large(_)));
        assert_eq!(
            plan.fires,
            [
                Fire {
                    index: 0,
                    due: ts("2026-05-03T03:00:00Z"),
                    coalesced: 0
                },
                Fire {
                    index: 1,
                    due: ts("2026-05-03T03:00:00Z"),
                    coalesced: 0
                },
            ]
        );
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-04T03:00:00Z")));
        // Backwards by a day: recomputed, nothing runs.
        let (step, plan) = p.advance(ts("2026-05-02T03:30:00Z"), mono(2.0));
        assert!(matches!(step, Step::Large(ms) if ms < 0));
        assert!(plan.fires.is_empty());
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-03T03:00:00Z")));
    }

    #[test]
    fn slewing_within_tolerance_is_not_a_step() {
        let mut p = planner("0 12 * * * a b\n", "2026-05-01T11:00:00Z");
        let (step, plan) = p.advance(ts("2026-05-01T12:00:00Z"), mono(3600.0 - 1.5));
        assert_eq!(step, Step::Normal);
        assert_eq!(plan.fires.len(), 1);
    }

    #[test]
    fn reload_keeps_next_due_of_unchanged_jobs() {
        let mut p = planner("* * * * * a b\n", "2026-05-01T12:00:30Z");
        let jobs = parse(
            "F",
            b"# new header\n* * * * * a b\n0 0 * * * a c\n",
            &Zone::utc(),
        )
        .unwrap();
        // Reloaded after the 12:01 due time passed but before the timer was handled.
        p.replace_jobs(jobs, ts("2026-05-01T12:01:00.002Z"));
        assert_eq!(p.entries[0].next_due, Some(ts("2026-05-01T12:01:00Z")));
        assert_eq!(p.entries[0].job.line, 2);
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-02T00:00:00Z")));
    }

    #[test]
    fn replan_reports_added_removed_and_apply_reads_the_due_time_at_apply() {
        let mut p = planner("* * * * * a b\n0 0 * * * a c\n", "2026-05-01T12:00:30Z");
        let keys: Vec<String> = p.entries.iter().map(|e| e.job.key()).collect();
        let jobs = parse(
            "F",
            b"0 0 * * * a c\n@hourly a d\n0 0 * * * a c\n",
            &Zone::utc(),
        )
        .unwrap();
        let r = super::replan(jobs, &keys, ts("2026-05-01T12:00:40Z"));
        assert_eq!(r.kept, vec![Some(1), None, Some(1)]);
        assert_eq!(r.added, vec![1]);
        assert_eq!(r.removed, vec![keys[0].clone()]);
        assert_eq!(r.keys[0], keys[1]);
        // The running plan moves on between the thread's plan and its application.
        p.entries[1].next_due = Some(ts("2026-05-03T00:00:00Z"));
        let old = p.apply(r.entries, &r.kept, ts("2026-05-01T12:00:40Z"));
        assert_eq!(old.len(), 2);
        assert_eq!(p.entries[0].next_due, Some(ts("2026-05-03T00:00:00Z")));
        assert_eq!(p.entries[1].next_due, Some(ts("2026-05-01T13:00:00Z")));
        assert_eq!(p.entries[2].next_due, Some(ts("2026-05-03T00:00:00Z")));
    }
}
