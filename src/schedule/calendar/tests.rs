//! The calendar: named cases for every rule of CRON-RULES.md §2-4, and
//! [`brute_force`], a property test against a minute-by-minute reference.

mod brute_force;

use super::*;
use crate::schedule::expr::tests::parse_err;

fn tz(name: &str) -> TimeZone {
    jiff::tz::TimeZoneDatabase::bundled().get(name).unwrap()
}

fn next(expr: &str, zone: &str, from: &str) -> String {
    let schedule = Schedule::parse(expr).unwrap();
    let tz = tz(zone);
    let ts: Timestamp = from.parse().unwrap();
    format_local(next_after(&schedule, &tz, ts).unwrap(), &tz)
}

#[test]
fn civil_round_trip() {
    for day in -800_000..800_000 {
        let (y, m, d) = civil_from_days(day);
        assert_eq!(days_from_civil(y, m, d), day);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
}

#[test]
fn basics() {
    assert_eq!(
        next("*/5 * * * *", "UTC", "2026-01-01T00:00:00Z"),
        "2026-01-01T00:05:00+00:00"
    );
    assert_eq!(
        next("*/5 * * * *", "UTC", "2026-01-01T00:04:59.9Z"),
        "2026-01-01T00:05:00+00:00"
    );
    assert_eq!(
        next("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z"),
        "2028-02-29T00:00:00+00:00"
    );
    assert_eq!(
        next(
            "30 2 * * *",
            "America/New_York",
            "2026-03-08T00:00:00-05:00"
        ),
        "2026-03-08T03:00:00-04:00"
    );
}

/// The first `n` fire times of `expr` in `tz` strictly after `from`, formatted.
fn fires(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let tz = tz(zone);
    let mut at: Timestamp = from.parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        at = next_after(&schedule, &tz, at).unwrap();
        out.push(format_local(at, &tz));
    }
    out
}

// CRON-RULES.md §2 Fields: macros and schedules that never fire

#[test]
fn macros_equal_their_five_fields() {
    for (mac, fields) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ] {
        let a = Schedule::parse(mac).unwrap();
        let b = Schedule::parse(fields).unwrap();
        assert_eq!(
            (a.minutes, a.hours, a.doms, a.months, a.dows, a.dom_star, a.dow_star, a.wildcard),
            (b.minutes, b.hours, b.doms, b.months, b.dows, b.dom_star, b.dow_star, b.wildcard),
            "{mac}"
        );
        assert_eq!(a.text, mac);
        let from = "2026-05-17T10:00:00Z";
        assert_eq!(
            fires(mac, "Europe/London", from, 3),
            fires(fields, "Europe/London", from, 3)
        );
    }
    assert!(Schedule::parse("@hourly").unwrap().wildcard);
    assert!(!Schedule::parse("@daily").unwrap().wildcard);
}

#[test]
fn never_firing_is_an_error_but_the_or_rule_still_fires() {
    assert!(parse_err("0 0 30 2 *").contains("never fires"));
    assert!(parse_err("0 0 31 4,6,9,11 *").contains("never fires"));
    assert!(parse_err("0 0 30-31 2 */2").contains("never fires"));
    // 31 February OR Monday: fires on Mondays in February.
    assert_eq!(
        fires("0 0 31 2 1", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"]
    );
    // Feb 29 only in leap years; Feb 29 that is a Sunday (AND: dow starred).
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2028-02-29T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 29 2 */7", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2032-02-29T00:00:00+00:00"]
    );
}

// CRON-RULES.md §3 Day-of-month / day-of-week

#[test]
fn dom_dow_or_rule_when_both_restricted() {
    // crontab(5): the 1st, the 15th and every Friday. May 2026: Fri 1, 8, 15, 22, 29.
    assert_eq!(
        fires("30 4 1,15 * 5", "UTC", "2026-05-01T00:00:00Z", 5),
        [
            "2026-05-01T04:30:00+00:00",
            "2026-05-08T04:30:00+00:00",
            "2026-05-15T04:30:00+00:00",
            "2026-05-22T04:30:00+00:00",
            "2026-05-29T04:30:00+00:00",
        ]
    );
    // 1-7 OR Monday, not "the first Monday". June 2026: Mon 1, 8, 15.
    assert_eq!(
        fires("0 0 1-7 * 1", "UTC", "2026-06-06T12:00:00Z", 3),
        [
            "2026-06-07T00:00:00+00:00",
            "2026-06-08T00:00:00+00:00",
            "2026-06-15T00:00:00+00:00"
        ]
    );
}

#[test]
fn starred_means_text_starts_with_star_and_ands() {
    // */2 day-of-month is starred: odd days that are Mondays (June 2026: Mon 1, 15, 29).
    assert_eq!(
        fires("0 0 */2 * 1", "UTC", "2026-06-01T01:00:00Z", 2),
        ["2026-06-15T00:00:00+00:00", "2026-06-29T00:00:00+00:00"]
    );
    // */2 day-of-week is starred: the 1st when it is Sun/Tue/Thu/Sat.
    // 2026: Jan 1 Thu, Feb 1 Sun, Mar 1 Sun, Apr 1 Wed, May 1 Fri, Jun 1 Mon, Jul 1 Wed,
    // Aug 1 Sat.
    assert_eq!(
        fires("0 0 1 * */2", "UTC", "2026-01-01T01:00:00Z", 3),
        [
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
            "2026-08-01T00:00:00+00:00"
        ]
    );
    // *,5 is starred too (AND): day 5... every day AND Friday = Fridays only.
    let s = Schedule::parse("0 0 *,5 * 5").unwrap();
    assert!(s.dom_star && !s.dow_star);
    // Legacy /2 is starred.
    assert!(Schedule::parse("0 0 /2 * 1").unwrap().dom_star);
    // A lone day-of-week with dom * runs on that weekday only.
    assert_eq!(
        fires("0 0 * * sun", "UTC", "2026-06-01T00:00:00Z", 1),
        ["2026-06-07T00:00:00+00:00"]
    );
}

// §4 Time zones and daylight saving

#[test]
fn spring_forward_fixed_time_jobs_run_at_the_jump() {
    // New York, 2026-03-08 02:00 EST -> 03:00 EDT.
    assert_eq!(
        fires(
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00-05:00",
            2
        ),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    );
    // London, 2026-03-29 01:00 GMT -> 02:00 BST.
    assert_eq!(
        fires("30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"]
    );
    // Lord Howe, 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
    assert_eq!(
        fires(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T12:00:00+10:30",
            2
        ),
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
    );
    // Several skipped times, and a skipped time plus the time right after the jump,
    // make one run.
    assert_eq!(
        fires(
            "0,15,30,45 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00-05:00",
            2
        ),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]
    );
    assert_eq!(
        fires(
            "30 2,3 * * *",
            "America/New_York",
            "2026-03-07T12:00:00-05:00",
            3
        ),
        [
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
            "2026-03-09T02:30:00-04:00"
        ]
    );
    assert_eq!(
        fires(
            "0 2,3 * * *",
            "America/New_York",
            "2026-03-07T12:00:00-05:00",
            2
        ),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]
    );
    // Santiago: 2026-09-06 00:00 -04 -> 01:00 -03; a midnight job runs at 01:00.
    assert_eq!(
        fires(
            "0 0 * * *",
            "America/Santiago",
            "2026-09-05T12:00:00-04:00",
            2
        ),
        ["2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"]
    );
}

#[test]
fn spring_forward_wildcard_jobs_skip_the_gap() {
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2026-03-08T01:00:00-05:00",
            3
        ),
        [
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00"
        ]
    );
    // "* 2 * * *" never runs on the day 02:xx does not exist.
    assert_eq!(
        fires(
            "* 2 * * *",
            "America/New_York",
            "2026-03-08T00:00:00-05:00",
            1
        ),
        ["2026-03-09T02:00:00-04:00"]
    );
}

#[test]
fn fall_back_fixed_once_wildcard_twice() {
    // New York, 2026-11-01 02:00 EDT -> 01:00 EST.
    assert_eq!(
        fires(
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00-04:00",
            2
        ),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
    // From inside the repeated hour (second pass), the fixed job does not run again.
    assert_eq!(
        fires(
            "45 1 * * *",
            "America/New_York",
            "2026-11-01T01:10:00-05:00",
            1
        ),
        ["2026-11-02T01:45:00-05:00"]
    );
    assert_eq!(
        fires(
            "30 * * * *",
            "America/New_York",
            "2026-11-01T00:00:00-04:00",
            4
        ),
        [
            "2026-11-01T00:30:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:30:00-05:00",
        ]
    );
    // London 2026-10-25 02:00 BST -> 01:00 GMT.
    assert_eq!(
        fires("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]
    );
    assert_eq!(
        fires(
            "*/20 1 * * *",
            "Europe/London",
            "2026-10-25T00:50:00+01:00",
            6
        ),
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:20:00+01:00",
            "2026-10-25T01:40:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T01:20:00+00:00",
            "2026-10-25T01:40:00+00:00",
        ]
    );
    // Lord Howe folds by 30 minutes: 2026-04-05 02:00 +11 -> 01:30 +10:30.
    assert_eq!(
        fires(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T12:00:00+11:00",
            2
        ),
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
    );
    assert_eq!(
        fires(
            "45 * * * *",
            "Australia/Lord_Howe",
            "2026-04-05T01:00:00+11:00",
            3
        ),
        [
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:45:00+10:30"
        ]
    );
}

#[test]
fn zones_without_dst_and_utc() {
    assert_eq!(
        fires("0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", 1),
        ["2026-01-01T09:00:00+05:30"]
    );
    assert_eq!(
        fires("@yearly", "UTC", "2026-12-31T23:59:59.999Z", 1),
        ["2027-01-01T00:00:00+00:00"]
    );
}
