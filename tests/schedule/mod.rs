//! `supd scheduler` through the real binary: the file rules with `--check` (every rule of
//! CRON-RULES.md §1-2 as the user sees it), `--next`, and the runner end to end. The
//! calendar, the field parser and the planner are tested next to their code in
//! `src/schedule/`.

mod check;
mod inproc;
mod next;
mod runner;

use std::process::Output;

use crate::util::{stderr, stdout, supd, TempDir};

/// `supd scheduler ARGS` with `$TZ` set to `tz`, or unset.
fn scheduler(args: &[&str], tz: Option<&str>) -> Output {
    let mut command = supd();
    command.arg("scheduler").args(args);
    match tz {
        Some(tz) => command.env("TZ", tz),
        None => command.env_remove("TZ"),
    };
    command.output().unwrap()
}

/// `--check` a file with these contents; returns (exit code, stdout, stderr).
fn check_text(text: &str) -> (i32, String, String) {
    let dir = TempDir::new("check");
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
