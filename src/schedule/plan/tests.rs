//! The runner's logic with an injected clock (no waiting).

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
    let text =
        "*/10 * * * * a wild\n30 13 * * * a fixed\n0,15 13 * * * a twice\n5 14 * * * a current\n";
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
