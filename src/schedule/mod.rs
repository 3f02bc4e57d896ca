//! `supd scheduler`: schedule.cron parsing, the calendar, and the runner.

use crate::cli::SchedulerArgs;

/// Run `supd scheduler`; returns the exit status.
pub fn run(args: SchedulerArgs) -> i32 {
    let _ = args;
    crate::error!("not implemented yet");
    70
}
