//! `--next N --expr EXPR`: the exact output, the zone and `--from` defaults, errors and
//! usage (CRON-RULES.md §5-6).

use jiff::Timestamp;

use super::scheduler;
use crate::util::{stderr, stdout};

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
