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

#[cfg(test)]
mod tests;
