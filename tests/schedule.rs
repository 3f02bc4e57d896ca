//! `supd scheduler`: the file rules, the calendar (named cases for every rule of
//! CRON-RULES.md and a property test against a brute-force reference), `--check`/`--next`
//! through the real binary, and the runner end to end.

use std::process::{Command, Output};

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;
use supd::schedule::calendar::{format_local, next_after};
use supd::schedule::expr::Schedule;

use crate::util::{stderr, stdout, supd_bin, TempDir as Scratch};

// ---------------------------------------------------------------------------------------
// Helpers

fn zone(name: &str) -> TimeZone {
    TimeZoneDatabase::bundled().get(name).unwrap()
}

/// The first `n` fire times of `expr` in `tz` strictly after `from`, formatted.
fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let tz = zone(tz);
    let mut at: Timestamp = from.parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        at = next_after(&schedule, &tz, at).unwrap();
        out.push(format_local(at, &tz));
    }
    out
}

fn scheduler(args: &[&str], tz: Option<&str>) -> Output {
    let mut command = Command::new(supd_bin());
    command.arg("scheduler").args(args);
    match tz {
        Some(tz) => command.env("TZ", tz),
        None => command.env_remove("TZ"),
    };
    command.output().unwrap()
}

/// `--check` a file with these contents; returns (exit code, stdout, stderr).
fn check_text(text: &str) -> (i32, String, String) {
    let dir = Scratch::new("check");
    let path = dir.write("schedule.cron", text);
    let output = scheduler(&["--check", "--file", path.to_str().unwrap()], None);
    let name = path.display().to_string();
    // Report paths relative to the file name for readable assertions.
    let err = stderr(&output).replace(&name, "F");
    (
        output.status.code().unwrap_or(-1),
        stdout(&output).replace(&name, "F"),
        err,
    )
}

fn parse_err(expr: &str) -> String {
    match Schedule::parse(expr) {
        Ok(_) => panic!("{expr:?} should be refused"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// §1 Lines

const LEGACY: &str = "#min hour dom mon dow [user] service action
 /5   *    *   *   *  forum   php     task-check
  5   2    *   *   *  apache2 rotate-logs
  0   4    *   *   *  forum   apache2 nightly-backup
  5   4    *   *   *  forum   mysql   nightly-backup
";

#[test]
fn legacy_schedule_cron_is_accepted_unchanged() {
    let (code, out, err) = check_text(LEGACY);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("F:2: /5 * * * *  forum php task-check  tz=UTC  next="),
        "{out}"
    );
    assert!(
        lines[1].starts_with("F:3: 5 2 * * *  root apache2 rotate-logs  tz=UTC  next="),
        "{out}"
    );
    assert!(
        lines[2].starts_with("F:4: 0 4 * * *  forum apache2 nightly-backup"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("F:5: 5 4 * * *  forum mysql nightly-backup"),
        "{out}"
    );
    assert_eq!(lines[4], "F: 4 jobs OK");
    // /5 is */5: every five minutes.
    assert_eq!(
        fires("/5 * * * *", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2026-01-01T00:05:00+00:00", "2026-01-01T00:10:00+00:00"]
    );
}

#[test]
fn comments_blank_lines_and_no_trailing_comments() {
    let (code, out, err) =
        check_text("\n   \n# a comment\n\t# indented comment\n0 0 * * * svc act\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("F:5: 0 0 * * *  root svc act"), "{out}");
    let (code, _, err) = check_text("0 0 * * * svc act # nightly\n");
    assert_eq!(code, 65);
    assert_eq!(
        err,
        "F:1: expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got 9 words\n"
    );
}

#[test]
fn tz_lines_set_the_zone_of_the_lines_below() {
    let text = "0 3 * * * a b\nTZ=Europe/London\n0 3 * * * a b\nCRON_TZ = \"America/New_York\"\n0 3 * * * a b\n  TZ\t=\t'Asia/Kolkata'\n0 3 * * * a b\n";
    let (code, out, err) = check_text(text);
    assert_eq!(code, 0, "{err}");
    let zones: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("tz=").nth(1))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        zones,
        ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata"]
    );
    // $TZ is the default zone.
    let dir = Scratch::new("tzenv");
    let path = dir.write("s.cron", "0 3 * * * a b\n");
    let output = scheduler(
        &["--check", "--file", path.to_str().unwrap()],
        Some("Europe/Paris"),
    );
    assert!(
        stdout(&output).contains("tz=Europe/Paris"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_zone_lines_and_other_variables() {
    let text = "TZ=Mars/Olympus\nTZ=../etc/passwd\nTZ=Europe/../London\nCRON_TZ=\nPATH=/bin\nSHELL = /bin/sh\nTZ=Europe/London\n";
    let (code, _, err) = check_text(text);
    assert_eq!(code, 65);
    assert_eq!(
        err,
        "F:1: unknown time zone \"Mars/Olympus\"\n\
         F:2: bad time zone name \"../etc/passwd\" (an IANA name like Europe/London)\n\
         F:3: bad time zone name \"Europe/../London\" (an IANA name like Europe/London)\n\
         F:4: bad time zone name \"\" (an IANA name like Europe/London)\n\
         F:5: only TZ= and CRON_TZ= lines may set variables, not PATH (jobs run no shell)\n\
         F:6: only TZ= and CRON_TZ= lines may set variables, not SHELL (jobs run no shell)\n"
    );
}

#[test]
fn job_word_counts_and_names() {
    let text = "\
0 0 * * * svc\n\
0 0 * * * a b c d\n\
@daily svc\n\
@daily a b c d\n\
0 0 * * * Forum svc act\n\
0 0 * * * forum my.svc act\n\
0 0 * * * forum svc Act\n\
0 0 * * * forum svc act_ion\n\
0 0 * * * forum svc _act\n\
0 0 * * * 1000 svc act\n\
0 0 * * * _user-1 svc_2 act-3\n\
0 0 * * * forum ../svc act\n\
0 0 * * * 4294967296 svc act\n\
0 0 * * * 4294967295 svc act\n";
    let (code, _, err) = check_text(text);
    assert_eq!(code, 65);
    assert_eq!(
        err,
        "F:1: expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got 6 words\n\
         F:2: expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got 9 words\n\
         F:3: expected @macro [USER] SERVICE ACTION (3 or 4 words), got 2 words\n\
         F:4: expected @macro [USER] SERVICE ACTION (3 or 4 words), got 5 words\n\
         F:5: bad user \"Forum\" (must match ^[a-z_][a-z0-9_-]{0,31}$ or be a number)\n\
         F:6: bad service \"my.svc\" (must match ^[a-z0-9][a-z0-9_-]{0,63}$)\n\
         F:7: bad action \"Act\" (must match ^[a-z0-9][a-z0-9_-]{0,63}$)\n\
         F:9: bad action \"_act\" (must match ^[a-z0-9][a-z0-9_-]{0,63}$)\n\
         F:12: bad service \"../svc\" (must match ^[a-z0-9][a-z0-9_-]{0,63}$)\n\
         F:13: bad user \"4294967296\" (must match ^[a-z_][a-z0-9_-]{0,31}$ or be a number)\n"
    );
}

#[test]
fn every_error_of_a_file_with_its_line_and_exit_65() {
    let text = "\
# header\n\
0 0 * * 8 mysql backup\n\
60 * * * * mysql backup\n\
0 24 * * * mysql backup\n\
0 0 0 * * mysql backup\n\
0 0 * 13 * mysql backup\n\
1,,2 * * * * mysql backup\n\
1, * * * * mysql backup\n\
5/10 * * * * mysql backup\n\
*/0 * * * * mysql backup\n\
*/90 * * * * mysql backup\n\
0 5-3 * * * mysql backup\n\
0 0 * * sat-mon mysql backup\n\
0 0 L * * mysql backup\n\
0 0 15W * * mysql backup\n\
0 0 * * 5#3 mysql backup\n\
0 0 ? * * mysql backup\n\
~ * * * * mysql backup\n\
@every mysql backup\n\
@reboot mysql backup\n\
@DAILY mysql backup\n\
@fortnightly mysql backup\n\
0 0 * * monday mysql backup\n\
0 0 * mon * mysql backup\n\
0 0 * * jan mysql backup\n\
0 0 * * */mon mysql backup\n\
0 0 30 2 * mysql backup\n\
0 0 31 4,6,9,11 * mysql backup\n\
0 0 * * 7 mysql backup\n";
    let (code, out, err) = check_text(text);
    assert_eq!(code, 65, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    let want = [
        "F:2: day-of-week 8 out of range 0-7",
        "F:3: minute 60 out of range 0-59",
        "F:4: hour 24 out of range 0-23",
        "F:5: day-of-month 0 out of range 1-31",
        "F:6: month 13 out of range 1-12",
        "F:7: minute \"1,,2\": empty list item",
        "F:8: minute \"1,\": empty list item",
        "F:9: minute \"5/10\": a step needs a range or *; write 5-59/10",
        "F:10: minute step 0 out of range 1-60 (in \"*/0\")",
        "F:11: minute step 90 out of range 1-60 (in \"*/90\")",
        "F:12: hour range 5-3 is reversed (in \"5-3\")",
        "F:13: day-of-week range sat-mon is reversed (in \"sat-mon\")",
        "F:14: day-of-month \"L\": Quartz syntax (L, W, #, ?) is not cron syntax",
        "F:15: day-of-month \"15W\": Quartz syntax (L, W, #, ?) is not cron syntax",
        "F:16: day-of-week \"5#3\": Quartz syntax (L, W, #, ?) is not cron syntax",
        "F:17: day-of-month \"?\": Quartz syntax (L, W, #, ?) is not cron syntax",
        "F:18: minute \"~\": random ranges (~) are not supported",
        "F:19: @every is not cron syntax (write the interval as fields, e.g. */5 * * * *)",
        "F:20: @reboot is not supported (a container has no reboot event; use the service's entrypoint)",
        "F:21: macro \"@DAILY\" must be lower case (@daily)",
        "F:22: unknown macro \"@fortnightly\" (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
        "F:23: day-of-week \"monday\" is not a number or a three-letter name (sun..sat)",
        "F:24: month \"mon\" is not a number or a three-letter name (jan..dec)",
        "F:25: day-of-week \"jan\" is not a number or a three-letter name (sun..sat)",
        "F:26: day-of-week \"*/mon\": step \"mon\" is not a number",
        "F:27: schedule \"0 0 30 2 *\" never fires (no selected month has a selected day-of-month)",
        "F:28: schedule \"0 0 31 4,6,9,11 *\" never fires (no selected month has a selected day-of-month)",
    ];
    assert_eq!(lines, want, "\n{err}");
}

#[test]
fn missing_file_exits_66() {
    let output = scheduler(&["--check", "--file", "/nonexistent/schedule.cron"], None);
    assert_eq!(output.status.code(), Some(66));
    assert!(
        stderr(&output).starts_with("/nonexistent/schedule.cron: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn error_lines_name_the_path_as_given() {
    let dir = Scratch::new("relpath");
    dir.write("schedule.cron", "ok\n");
    let output = Command::new(supd_bin())
        .current_dir(&dir.0)
        .args(["scheduler", "--check", "--file", "./schedule.cron"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr(&output),
        "./schedule.cron:1: expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got 1 word\n"
    );
}

// ---------------------------------------------------------------------------------------
// §2 Fields

#[test]
fn field_syntax() {
    let s = Schedule::parse("0,30 */6 1-10/3 JAN-Mar,dec Mon-FRI").unwrap();
    assert_eq!(s.minutes, 1 | 1 << 30);
    assert_eq!(s.hours, 1 | 1 << 6 | 1 << 12 | 1 << 18);
    assert_eq!(s.doms, 1 << 1 | 1 << 4 | 1 << 7 | 1 << 10);
    assert_eq!(s.months, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 12);
    assert_eq!(s.dows, 0b011_1110);
    // Leading zeros, 7 = Sunday, fri-sun = 5-7, sun-0 ranges.
    let s = Schedule::parse("007 05 * * fri-sun").unwrap();
    assert_eq!((s.minutes, s.hours, s.dows), (1 << 7, 1 << 5, 0b110_0001));
    assert_eq!(Schedule::parse("0 0 * * 5-0").unwrap().dows, 0b110_0001);
    assert_eq!(Schedule::parse("0 0 * * 7").unwrap().dows, 1);
    assert_eq!(Schedule::parse("0 0 * * 0-7").unwrap().dows, 0x7f);
    // Steps up to the field size are fine.
    assert_eq!(
        Schedule::parse("*/60 */24 */31 */12 */7").unwrap().minutes,
        1
    );
    assert_eq!(
        parse_err("*/61 * * * *"),
        "minute step 61 out of range 1-60 (in \"*/61\")"
    );
    assert_eq!(
        parse_err("* * * * */8"),
        "day-of-week step 8 out of range 1-7 (in \"*/8\")"
    );
    assert_eq!(
        parse_err("0 0 1-5/0 * *"),
        "day-of-month step 0 out of range 1-31 (in \"1-5/0\")"
    );
    assert_eq!(
        parse_err("0 0 * jan/2 *"),
        "month \"jan/2\": a step needs a range or *; write jan-12/2"
    );
    assert_eq!(
        parse_err("0 0 * * *,"),
        "day-of-week \"*,\": empty list item"
    );
    assert_eq!(parse_err("a 0 * * *"), "minute \"a\" is not a number");
    assert_eq!(
        parse_err("-5 0 * * *"),
        "minute \"-5\": missing number in range"
    );
    assert_eq!(
        parse_err("0 0 * * *-2"),
        "day-of-week \"*\" is not a number or a three-letter name (sun..sat)"
    );
    assert_eq!(
        parse_err("* * * *"),
        "expected five fields MIN HOUR DOM MON DOW or an @macro, got 4 words"
    );
}

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

// ---------------------------------------------------------------------------------------
// §3 Day-of-month / day-of-week

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

// ---------------------------------------------------------------------------------------
// §4 Time zones and daylight saving

#[test]
fn wildcard_or_fixed_classification() {
    for fixed in [
        "30 2 * * *",
        "0,30 1 * * *",
        "30 1-3 * * *",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
    ] {
        assert!(!Schedule::parse(fixed).unwrap().wildcard, "{fixed}");
    }
    for wild in [
        "*/15 * * * *",
        "30 * * * *",
        "* 2 * * *",
        "0 */2 * * *",
        "/5 2 * * *",
        "@hourly",
    ] {
        assert!(Schedule::parse(wild).unwrap().wildcard, "{wild}");
    }
}

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

// ---------------------------------------------------------------------------------------
// §5-6 --next and --check

#[test]
fn next_output_is_exact() {
    let output = scheduler(
        &[
            "--next",
            "3",
            "--expr",
            "30 2 * * *",
            "--from",
            "2026-03-07T12:00:00.5-05:00",
            "--tz",
            "America/New_York",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n2026-03-10T02:30:00-04:00\n"
    );
    // Strictly after --from; UTC prints +00:00; default zone is $TZ, else UTC.
    let output = scheduler(
        &[
            "--next",
            "2",
            "--expr",
            "*/5 * * * *",
            "--from",
            "2026-01-01T00:05:00Z",
        ],
        None,
    );
    assert_eq!(
        stdout(&output),
        "2026-01-01T00:10:00+00:00\n2026-01-01T00:15:00+00:00\n"
    );
    let output = scheduler(
        &[
            "--next",
            "1",
            "--expr",
            "@daily",
            "--from",
            "2026-01-01T12:00:00Z",
        ],
        Some("Asia/Kolkata"),
    );
    assert_eq!(stdout(&output), "2026-01-02T00:00:00+05:30\n");
    // Default --from is now: the next whole minute after some instant between `before`
    // and `after` (comparing with a clock read after the child exited flaked when the
    // child ran in the last moments of a minute).
    let before = Timestamp::now();
    let output = scheduler(&["--next", "1", "--expr", "* * * * *"], None);
    let after = Timestamp::now();
    let line = stdout(&output);
    let at: Timestamp = line.trim().parse().unwrap();
    assert_eq!(at.as_second() % 60, 0, "{line}");
    assert!(
        at > before && at.as_second() <= after.as_second() + 60,
        "{line}"
    );
}

#[test]
fn next_errors_and_usage() {
    let output = scheduler(&["--next", "1", "--expr", "0 0 * * 8"], None);
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(stderr(&output), "--expr: day-of-week 8 out of range 0-7\n");
    let output = scheduler(
        &["--next", "1", "--expr", "0 0 * * *", "--tz", "Nowhere/City"],
        None,
    );
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr(&output),
        "--tz: unknown time zone \"Nowhere/City\"\n"
    );
    let output = scheduler(&["--next", "1", "--expr", "0 0 * * * svc act"], None);
    assert_eq!(output.status.code(), Some(65));
    for args in [
        &["--next", "1"][..],
        &["--next", "0", "--expr", "* * * * *"],
        &["--next", "x", "--expr", "* * * * *"],
        &[
            "--next",
            "1",
            "--expr",
            "* * * * *",
            "--from",
            "2026-01-01T00:00:00",
        ],
        &["--next", "1", "--expr", "* * * * *", "--from", "tomorrow"],
    ] {
        let output = scheduler(args, None);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Property test: the calendar against a brute-force minute-by-minute reference.

/// xorshift64*: small, deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random field: its text and (independently computed) set of values.
fn random_field(
    rng: &mut Rng,
    min: u32,
    max: u32,
    size: u32,
    star_percent: u64,
    near: &[u32],
) -> (String, Vec<bool>) {
    let mut set = vec![false; 64];
    let pick = |rng: &mut Rng| -> u32 {
        if !near.is_empty() && rng.chance(60) {
            near[rng.below(near.len() as u64) as usize].clamp(min, max)
        } else {
            min + rng.below(u64::from(max - min + 1)) as u32
        }
    };
    if rng.chance(star_percent) {
        let top = if max == 7 { 6 } else { max };
        return match rng.below(5) {
            0..=2 => {
                (min..=top).for_each(|v| set[v as usize] = true);
                ("*".into(), set)
            }
            k => {
                let step = 1 + rng.below(u64::from(size.min(20))) as u32;
                (min..=top)
                    .step_by(step as usize)
                    .for_each(|v| set[v as usize] = true);
                let prefix = if k == 3 { "*" } else { "" };
                (format!("{prefix}/{step}"), set)
            }
        };
    }
    let mut items = Vec::new();
    for _ in 0..=rng.below(3) {
        let a = pick(rng);
        match rng.below(3) {
            0 => {
                set[a as usize] = true;
                items.push(a.to_string());
            }
            1 => {
                let b = (a + rng.below(4) as u32).min(max);
                (a..=b).for_each(|v| set[v as usize] = true);
                items.push(format!("{a}-{b}"));
            }
            _ => {
                let b = (a + rng.below(u64::from(max - a + 1)) as u32).min(max);
                let step = 1 + rng.below(5) as u32;
                (a..=b)
                    .step_by(step as usize)
                    .for_each(|v| set[v as usize] = true);
                items.push(format!("{a}-{b}/{step}"));
            }
        }
    }
    (items.join(","), set)
}

struct Reference {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    month: Vec<bool>,
    dow: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
    wildcard: bool,
}

impl Reference {
    /// Does a wall-clock minute match (cronie's rules, written independently)?
    fn matches(&self, dt: jiff::civil::DateTime) -> bool {
        let dow = dt.weekday().to_sunday_zero_offset() as usize;
        let dow_ok = self.dow[dow] || (dow == 0 && self.dow[7]);
        let dom_ok = self.dom[dt.day() as usize];
        let day_ok = if self.dom_star || self.dow_star {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        };
        self.minute[dt.minute() as usize]
            && self.hour[dt.hour() as usize]
            && self.month[dt.month() as usize]
            && day_ok
    }

    fn can_fire(&self) -> bool {
        if !(self.dom_star || self.dow_star) {
            return true;
        }
        (1..=12usize).any(|m| {
            let days = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m];
            self.month[m] && (1..=days).any(|d| self.dom[d])
        })
    }

    /// Every fire time in (from, until], walking real minutes (starting a few hours
    /// before `from` to know which wall-clock times were already seen).
    fn fires(&self, tz: &TimeZone, from: Timestamp, until: i64) -> Vec<i64> {
        let wall_minute = |t: i64| -> (i64, jiff::civil::DateTime) {
            let ts = Timestamp::from_second(t).unwrap();
            let off = i64::from(tz.to_offset(ts).seconds());
            ((t + off).div_euclid(60), tz.to_offset(ts).to_datetime(ts))
        };
        let civil_of =
            |m: i64| jiff::tz::Offset::UTC.to_datetime(Timestamp::from_second(m * 60).unwrap());
        let mut out = Vec::new();
        let mut t = (from.as_second() - 4 * 3600).div_euclid(60) * 60;
        let mut max_wall: Option<i64> = None;
        while t <= until {
            let (w, dt) = wall_minute(t);
            let fire = if self.wildcard {
                self.matches(dt)
            } else {
                match max_wall {
                    None => self.matches(dt),
                    Some(seen) if w > seen => (seen + 1..=w).any(|m| self.matches(civil_of(m))),
                    Some(_) => false,
                }
            };
            max_wall = Some(max_wall.map_or(w, |m| m.max(w)));
            if fire && Timestamp::from_second(t).unwrap() > from {
                out.push(t);
            }
            t += 60;
        }
        out
    }
}

#[test]
fn calendar_equals_brute_force_reference() {
    let zones = [
        "UTC",
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
    ];
    let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    let end: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let transitions: Vec<Vec<i64>> = zones
        .iter()
        .map(|z| {
            zone(z)
                .following(start)
                .take_while(|t| t.timestamp() < end)
                .map(|t| t.timestamp().as_second())
                .collect()
        })
        .collect();
    let window = 24 * 3600;
    // SCHEDULE_PROPTEST_CASES=100000 for a longer run (e.g. with --release).
    let cases: usize = std::env::var("SCHEDULE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("SCHEDULE_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_0001);
    let mut rng = Rng(seed);
    let (mut compared, mut fired) = (0, 0);
    for case in 0..cases {
        let zi = rng.below(zones.len() as u64) as usize;
        let tz = zone(zones[zi]);
        let anchor = match transitions[zi].as_slice() {
            [] => start.as_second() + rng.below(6 * 365 * 86_400) as i64,
            list => list[rng.below(list.len() as u64) as usize],
        };
        // Around the transition, sometimes on a whole minute, sometimes not.
        let mut from_s = anchor - 26 * 3600 + rng.below(30 * 3600) as i64;
        if rng.chance(50) {
            from_s -= from_s.rem_euclid(60);
        }
        let from = Timestamp::new(from_s, if rng.chance(20) { 500_000_000 } else { 0 }).unwrap();
        // Hours near transitions (0-4) are picked more often.
        let (min_t, minute) = random_field(&mut rng, 0, 59, 60, 30, &[0, 15, 30, 45, 59]);
        let (hour_t, hour) = random_field(&mut rng, 0, 23, 24, 30, &[0, 1, 2, 3, 4, 23]);
        let (dom_t, dom) = random_field(&mut rng, 1, 31, 31, 85, &[]);
        let (mon_t, month) = random_field(&mut rng, 1, 12, 12, 85, &[3, 4, 9, 10, 11]);
        let (dow_t, dow) = random_field(&mut rng, 0, 7, 7, 85, &[0, 6, 7]);
        let expr = format!("{min_t} {hour_t} {dom_t} {mon_t} {dow_t}");
        let starred = |t: &str| t.starts_with('*') || t.starts_with('/');
        let reference = Reference {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star: starred(&dom_t),
            dow_star: starred(&dow_t),
            wildcard: starred(&min_t) || starred(&hour_t),
        };
        let schedule = match Schedule::parse(&expr) {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    !reference.can_fire() && e.contains("never fires"),
                    "case {case}: {expr}: {e}"
                );
                continue;
            }
        };
        assert_eq!(schedule.wildcard, reference.wildcard, "{expr}");
        let until = from.as_second() + window;
        let want = reference.fires(&tz, from, until);
        let mut got = Vec::new();
        let mut at = from;
        while let Some(next) = next_after(&schedule, &tz, at) {
            if next.as_second() > until {
                break;
            }
            got.push(next.as_second());
            at = next;
        }
        let show = |v: &[i64]| -> Vec<String> {
            v.iter()
                .map(|s| format_local(Timestamp::from_second(*s).unwrap(), &tz))
                .collect()
        };
        assert_eq!(
            show(&got),
            show(&want),
            "case {case}: {expr:?} in {} from {from}",
            zones[zi]
        );
        compared += 1;
        if !want.is_empty() {
            fired += 1;
        }
    }
    // The generator must produce enough cases that actually fire in the window.
    assert!(
        compared > cases * 9 / 10 && fired > compared / 4,
        "compared {compared}, fired {fired}"
    );
}

// ---------------------------------------------------------------------------------------
// The runner's logic with an injected clock (no waiting).

mod planner {
    use std::time::Duration;

    use jiff::Timestamp;
    use supd::schedule::crontab::{parse, Zone};
    use supd::schedule::plan::{Fire, Planner, Skip, Step};

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
}

// ---------------------------------------------------------------------------------------
// The runner end to end: real minute boundaries, real sockets.

mod runner {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::Scratch;
    use crate::util::supd_bin;

    /// A child whose stderr lines are collected as they come.
    struct Logged {
        child: Child,
        lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    }

    impl Logged {
        fn spawn(command: &mut Command) -> Logged {
            let mut child = command
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    sink.0.lock().unwrap().push(line);
                    sink.1.notify_all();
                }
            });
            Logged { child, lines }
        }

        /// The first line containing every needle, waiting up to `timeout`.
        fn wait_for(&self, needles: &[&str], timeout: Duration) -> String {
            let deadline = Instant::now() + timeout;
            let mut lines = self.lines.0.lock().unwrap();
            loop {
                if let Some(line) = lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                    return line.clone();
                }
                let now = Instant::now();
                if now >= deadline {
                    panic!(
                        "no log line with {needles:?} within {timeout:?}; log:\n{}",
                        lines.join("\n")
                    );
                }
                lines = self.lines.1.wait_timeout(lines, deadline - now).unwrap().0;
            }
        }

        fn all(&self) -> String {
            self.lines.0.lock().unwrap().join("\n")
        }

        fn signal(&self, signal: i32) {
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    impl Drop for Logged {
        /// SIGTERM first: a supd killed outright would leave its service (`sleep 1000`)
        /// behind as an orphan; SIGKILL only if it does not exit within 5 s.
        fn drop(&mut self) {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn scheduler(file: &Path, socket_dir: &Path, extra: &[&str]) -> Logged {
        let mut command = Command::new(supd_bin());
        command
            .arg("scheduler")
            .arg("--file")
            .arg(file)
            .arg("--socket-dir")
            .arg(socket_dir)
            .args(extra)
            .env_remove("TZ")
            .env_remove("SUPD_VERBOSE")
            .env_remove("SUPD_QUIET");
        Logged::spawn(&mut command)
    }

    /// A stand-in service socket: records each request line and answers with `reply`
    /// after `delay`.
    fn fake_service(
        dir: &Path,
        service: &str,
        reply: &'static str,
        delay: Duration,
    ) -> Arc<Mutex<Vec<String>>> {
        let listener = UnixListener::bind(dir.join(format!("{service}-request.sock"))).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let _ = reader.read_line(&mut line);
                    record.lock().unwrap().push(line.trim_end().to_string());
                    std::thread::sleep(delay);
                    let _ = stream.write_all(reply.as_bytes());
                    let mut rest = Vec::new();
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    let _ = stream.read_to_end(&mut rest);
                });
            }
        });
        seen
    }

    const RAN: &str = "{\"event\":\"started\",\"action\":\"act\",\"id\":1}\n{\"event\":\"stdout\",\"line\":\"hi\"}\n{\"event\":\"exit\",\"code\":0,\"duration_ms\":5}\n";
    const BUSY: &str =
        "{\"event\":\"error\",\"kind\":\"busy\",\"message\":\"act is already running\"}\n";

    fn field(line: &str, key: &str) -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .to_string()
    }

    #[test]
    fn delivery_retries_a_late_socket_loses_an_absent_one_and_skips_busy_and_overlap() {
        let dir = Scratch::new("deliver");
        let file = dir.write(
            "schedule.cron",
            "* * * * * forum late act\n* * * * * busy act\n* * * * * slow act\n* * * * * slow act\n",
        );
        let gone_file = dir.write("gone.cron", "* * * * * gone act\n");
        let _busy = fake_service(&dir.0, "busy", BUSY, Duration::ZERO);
        let slow = fake_service(&dir.0, "slow", RAN, Duration::from_secs(3));
        let sched = scheduler(&file, &dir.0, &["-v"]);
        let gone = scheduler(&gone_file, &dir.0, &["--retry-for", "4s"]);
        sched.wait_for(&["scheduler started", "jobs=4"], Duration::from_secs(10));
        gone.wait_for(&["scheduler started", "jobs=1"], Duration::from_secs(10));
        // Due at the next minute boundary: the late service is not there yet.
        sched.wait_for(
            &["service unreachable; retrying", "service=late"],
            Duration::from_secs(70),
        );
        // Two attempts failed (the third is scheduled): now the service comes up.
        sched.wait_for(
            &["retrying", "service=late", "attempt=3"],
            Duration::from_secs(10),
        );
        let late = fake_service(&dir.0, "late", RAN, Duration::ZERO);
        let ran = sched.wait_for(&["job ran", "service=late"], Duration::from_secs(20));
        assert!(
            field(&ran, "attempts").parse::<u32>().unwrap() >= 3,
            "{ran}"
        );
        assert_eq!(field(&ran, "code"), "0");
        assert_eq!(field(&ran, "user"), "forum");
        let request = late.lock().unwrap()[0].clone();
        let request: serde_json::Value = serde_json::from_str(&request).unwrap();
        assert_eq!(
            (request["user"].as_str(), request["action"].as_str()),
            (Some("forum"), Some("act"))
        );
        // Never there: lost after the 4 s retry window, logged at error level.
        let lost = gone.wait_for(&["job lost", "service=gone"], Duration::from_secs(5));
        assert!(lost.contains("ERROR"), "{lost}");
        assert!(
            field(&lost, "retried_ms").parse::<u64>().unwrap() >= 3_000,
            "{lost}"
        );
        // busy is a skip.
        let busy = sched.wait_for(&["job skipped", "service=busy"], Duration::from_secs(5));
        assert_eq!(field(&busy, "reason"), "busy");
        // The same job twice at once: the second is skipped, the first runs to its end.
        sched.wait_for(
            &["job skipped", "service=slow", "still running"],
            Duration::from_secs(5),
        );
        sched.wait_for(&["job ran", "service=slow"], Duration::from_secs(10));
        assert_eq!(slow.lock().unwrap().len(), 1, "{}", sched.all());
    }

    #[test]
    fn real_supd_gets_the_request_on_the_minute_and_reloads_keep_or_replace_jobs() {
        let dir = Scratch::new("e2e");
        let run = dir.0.join("run");
        std::fs::create_dir(&run).unwrap();
        let marker = dir.0.join("marker");
        let callbacks = dir.write(
            "callbacks.sh",
            &format!(
                "CB_mark() {{ echo \"ran by $1\" > {}; echo relayed-line; }}\n",
                marker.display()
            ),
        );
        let mut supd = Command::new(supd_bin());
        supd.args(["--service", "svc", "--socket-dir"])
            .arg(&run)
            .arg("--callbacks")
            .arg(&callbacks)
            .args(["--callback-lib", "/nonexistent", "--", "sleep", "1000"]);
        let service = Logged::spawn(&mut supd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run.join("svc-request.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "supd made no socket: {}",
                service.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let file = dir.write("schedule.cron", "* * * * * forum svc mark\n");
        let sched = scheduler(&file, &run, &["-v"]);
        sched.wait_for(&["scheduler started", "jobs=1"], Duration::from_secs(10));
        // A broken file on SIGHUP keeps the old job.
        std::fs::write(&file, "* * * * * forum svc mark\n61 * * * * svc mark\n").unwrap();
        sched.signal(libc::SIGHUP);
        sched.wait_for(
            &["schedule.cron:2: minute 61 out of range 0-59"],
            Duration::from_secs(5),
        );
        sched.wait_for(
            &["schedule has errors; keeping the old one", "jobs=1"],
            Duration::from_secs(5),
        );
        // The old job fires at the next minute boundary and reaches the real supd.
        let ran = sched.wait_for(&["job ran", "service=svc"], Duration::from_secs(70));
        assert_eq!(field(&ran, "code"), "0");
        let lateness: u64 = field(&ran, "lateness_ms").parse().unwrap();
        assert!(lateness < 1000, "{ran}");
        assert!(field(&ran, "due").ends_with(":00+00:00"), "{ran}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran by forum\n");
        // -v: the callback's output is relayed at debug level.
        sched.wait_for(&["DEBUG", "output", "relayed-line"], Duration::from_secs(5));
        // An editor's rename-over is noticed without SIGHUP.
        let tmp = dir.write(
            "schedule.cron.tmp",
            "* * * * * forum svc mark\n@daily svc mark\n",
        );
        std::fs::rename(&tmp, &file).unwrap();
        sched.wait_for(
            &["schedule reloaded", "jobs=2", "file change"],
            Duration::from_secs(5),
        );
        // SIGTERM: exit 0 promptly.
        let mut sched = sched;
        let start = Instant::now();
        sched.signal(libc::SIGTERM);
        let status = loop {
            if let Some(status) = sched.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "scheduler did not exit"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = start.elapsed();
        assert_eq!(status.code(), Some(0));
        assert!(took < Duration::from_millis(100), "exit took {took:?}");
    }

    #[test]
    fn bad_file_at_start_exits_65_and_missing_66() {
        let dir = Scratch::new("start");
        let file = dir.write("schedule.cron", "0 0 * * 9 svc act\n");
        let out = Command::new(supd_bin())
            .args(["scheduler", "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(65));
        assert!(String::from_utf8_lossy(&out.stderr).contains(":1: day-of-week 9 out of range 0-7"));
        let out = Command::new(supd_bin())
            .args(["scheduler", "--file"])
            .arg(dir.0.join("nope.cron"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(66));
    }
}

/// As PID 1 of a PID namespace (the scheduler container), the scheduler reaps orphans.
#[test]
fn scheduler_as_pid1_reaps_orphans_and_stops_on_sigterm() {
    use std::time::{Duration, Instant};
    let dir = Scratch::new("pid1");
    let file = dir.write("schedule.cron", "@yearly svc act\n");
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(supd_bin())
        .args(["scheduler", "--file"])
        .arg(&file)
        .arg("--socket-dir")
        .arg(&dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    /// Stops the namespace's init if the test fails half-way.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            if self.0 != 0 {
                unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
            }
        }
    }
    let mut stop = Stop(0);
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let sched = loop {
        if let Some(pid) = children(unshare.id()).first() {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe == supd_bin() {
                stop.0 = *pid;
                break *pid;
            }
        }
        assert!(Instant::now() < deadline, "scheduler did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    // An orphan inside its namespace: sh starts sleep and exits at once.
    let status = Command::new("nsenter")
        .args([
            "--target",
            &sched.to_string(),
            "--pid",
            "--mount",
            "--",
            "sh",
            "-c",
            "sleep 1 & exit 0",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut adopted = false;
    loop {
        let kids = children(sched);
        adopted |= !kids.is_empty();
        // Gone from the children list = exited AND reaped (a zombie stays listed).
        if adopted && kids.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphan not adopted or not reaped: {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(sched as i32, libc::SIGTERM) };
    let status = unshare.wait().unwrap();
    stop.0 = 0;
    assert_eq!(status.code(), Some(0));
}
