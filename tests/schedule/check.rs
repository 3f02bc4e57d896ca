//! `--check`: the file's lines (CRON-RULES.md §1), every error of a file at once with its
//! line (exit 65), a missing file (66), and the path as given.

use super::{check_text, scheduler};
use crate::util::{stderr, stdout, supd, TempDir};

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
    let output = scheduler(
        &[
            "--next",
            "2",
            "--expr",
            "/5 * * * *",
            "--from",
            "2026-01-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(
        stdout(&output),
        "2026-01-01T00:05:00+00:00\n2026-01-01T00:10:00+00:00\n"
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
    let dir = TempDir::new("tzenv");
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
         F:5: only TZ=, CRON_TZ= and SLOT= lines may set variables, not PATH (jobs run no shell)\n\
         F:6: only TZ=, CRON_TZ= and SLOT= lines may set variables, not SHELL (jobs run no shell)\n"
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
    let dir = TempDir::new("relpath");
    dir.write("schedule.cron", "ok\n");
    let output = supd()
        .current_dir(dir.path())
        .args(["scheduler", "--check", "--file", "./schedule.cron"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr(&output),
        "./schedule.cron:1: expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got 1 word\n"
    );
}
