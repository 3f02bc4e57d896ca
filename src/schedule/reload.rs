//! Reloading the schedule file (SIGHUP or a change seen by the watcher).

use jiff::Timestamp;

use super::crontab::{self, Zone};
use super::plan::Planner;
use super::runner::next_wake_text;
use super::Config;

/// Reload the file. `forced` (SIGHUP) reloads and logs even an unchanged file; a file
/// change only acts when the content differs from what was last seen.
pub(super) fn reload(
    planner: &mut Planner,
    config: &Config,
    zone: &Zone,
    last_text: &mut Vec<u8>,
    forced: bool,
) {
    let name = config.file.display().to_string();
    let text = match crontab::read_limited(&config.file) {
        Ok(text) => text,
        Err(e) => {
            if forced {
                crate::error!(
                    "cannot read the schedule; keeping the old one",
                    file = name,
                    error = e
                );
            }
            return;
        }
    };
    if !forced && text == *last_text {
        return;
    }
    *last_text = text;
    match crontab::parse(&name, last_text, zone) {
        Ok(jobs) => {
            planner.replace_jobs(jobs, Timestamp::now());
            crate::info!(
                "schedule reloaded",
                file = name,
                jobs = planner.entries.len(),
                trigger = if forced { "SIGHUP" } else { "file change" },
                next = next_wake_text(planner)
            );
        }
        Err(errors) => {
            for error in &errors {
                crate::error!(error);
            }
            crate::error!(
                "schedule has errors; keeping the old one",
                file = name,
                errors = errors.len(),
                jobs = planner.entries.len()
            );
        }
    }
}
