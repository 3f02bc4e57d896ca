//! `supd scheduler`: schedule.cron parsing, the calendar, and the runner.
//!
//! - [`expr`]: the five fields / `@macro` of a job (CRON-RULES.md §2-3);
//! - [`crontab`]: the file, with line numbers and every error at once (§1);
//! - [`calendar`]: next fire time in a zone with cronie's DST rules (§4-5);
//! - [`plan`]: what is due when the timer fires, and what a clock step means;
//! - [`runner`]: the long-running scheduler (its loop; `runner/dispatch`: the due runs
//!   and their results, `runner/state_sync`: the start's catch-up and a reload's state
//!   changes, in chunks), with `deliver` (one run's request, retries and result line)
//!   and `reload` (SIGHUP and the file watch);
//! - [`state`]: catch-up and history across restarts; [`metrics`]: the Prometheus
//!   file; [`hook`]: `--on-failure`;
//! - [`inproc`]: `supd --schedule`, a service's own lines run by its PID-1 supd;
//! - `--check` and `--next` (§6) are implemented here.

pub mod calendar;
pub mod crontab;
pub mod expr;
pub mod hook;
pub mod inproc;
pub mod metrics;
pub mod plan;
pub mod runner;
pub mod state;

mod deliver;
mod reload;

pub use inproc::InProcess;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::exit::{self, EX_DATAERR, EX_NOINPUT, USAGE};
use crontab::LoadError;

/// The scheduler's settings, as the command line gave them (built by `cli`).
#[derive(Clone, Debug)]
pub struct Config {
    /// The schedule file.
    pub file: PathBuf,
    /// Directory of the request sockets.
    pub socket_dir: PathBuf,
    /// Keep retrying an absent or refusing socket this long (or until the job is due
    /// again, whichever is first).
    pub retry_for: Duration,
    /// `--state-dir`: last due times and results (catch-up, history).
    pub state_dir: PathBuf,
    /// `--catch-up`: a missed run is caught up once when it is this recent (0: never).
    pub catch_up: Duration,
    /// `--on-failure CMD`, split into argv.
    pub on_failure: Option<Vec<String>>,
    /// `--metrics-file`: Prometheus text format.
    pub metrics_file: Option<PathBuf>,
    pub mode: Mode,
}

/// What `supd scheduler` does with the file.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Run the schedule until SIGTERM.
    Serve,
    /// `--check`: validate, list each job and its next run, exit.
    Check,
    /// `--next N --expr EXPR [--from T] [--tz ZONE]`: print fire times, exit.
    Next {
        count: u32,
        expr: String,
        from: Option<String>,
        tz: Option<String>,
    },
}

/// Run `supd scheduler`; returns the exit status.
pub fn run(config: Config) -> i32 {
    match &config.mode {
        Mode::Next {
            count,
            expr,
            from,
            tz,
        } => next(*count, expr, from.as_deref(), tz.as_deref()),
        Mode::Check => check(&config),
        Mode::Serve => serve(config),
    }
}

/// The long-running scheduler.
///
/// Its log lines about runs are its output, so its default level is info (not the
/// global default warn): `-q` gives errors only, `-v` debug (with the callbacks' output).
fn serve(config: Config) -> i32 {
    // Signals first, before any thread exists (PID 1 of the scheduler container).
    if let Err(e) = crate::sys::signals::block_all() {
        crate::error!("cannot block signals", error = e);
        return exit::EX_SOFTWARE;
    }
    // Its hooks and callbacks are spawned with posix_spawn: no inherited fd may reach them.
    crate::sys::spawn::seal_inherited_fds();
    use crate::log::{enabled, set_level, Level};
    if enabled(Level::Warn) && !enabled(Level::Info) {
        set_level(Some(Level::Info)); // the default
    } else if enabled(Level::Info) && !enabled(Level::Debug) {
        set_level(Some(Level::Debug)); // -v: one step louder than the default
    }
    let (zone, jobs, text) = match load_or_report(&config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    runner::run(config, zone, jobs, text)
}

fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `--next N --expr EXPR [--from T] [--tz ZONE]`.
fn next(count: u32, expr: &str, from: Option<&str>, tz: Option<&str>) -> i32 {
    let from = match from {
        None => Timestamp::now(),
        Some(text) => match text.parse::<Timestamp>() {
            Ok(ts) => ts,
            Err(e) => {
                eprint_line(&format!("--from: bad RFC3339 time {text:?}: {e}"));
                return USAGE;
            }
        },
    };
    let zone = match tz {
        Some(name) => crontab::lookup_zone(name, &jiff::tz::TimeZoneDatabase::bundled())
            .map_err(|e| format!("--tz: {e}")),
        None => crontab::default_zone(),
    };
    let zone = match zone {
        Ok(zone) => zone,
        Err(e) => {
            eprint_line(&e);
            return EX_DATAERR;
        }
    };
    let schedule = match expr::Schedule::parse(expr) {
        Ok(schedule) => schedule,
        Err(e) => {
            eprint_line(&format!("--expr: {e}"));
            return EX_DATAERR;
        }
    };
    let mut out = String::new();
    let mut at = from;
    for _ in 0..count {
        match calendar::next_after(&schedule, &zone.tz, at) {
            Some(fire) => {
                out.push_str(&calendar::format_local(fire, &zone.tz));
                out.push('\n');
                at = fire;
            }
            None => {
                let _ = std::io::stdout().lock().write_all(out.as_bytes());
                eprint_line("--expr: no further fire time within the search horizon");
                return EX_DATAERR;
            }
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    exit::SUCCESS
}

/// Load the file with the default zone ($TZ, else UTC). Errors are printed (every one
/// of them, `NAME:LINE: message`) and turned into the exit status: EX_DATAERR (65) for
/// an invalid file or zone, EX_NOINPUT (66) for a file that cannot be read.
fn load_or_report(config: &Config) -> Result<(crontab::Zone, Vec<crontab::Job>, Vec<u8>), i32> {
    let zone = match crontab::default_zone() {
        Ok(zone) => zone,
        Err(e) => {
            eprint_line(&e);
            return Err(EX_DATAERR);
        }
    };
    match crontab::load(&config.file, &zone) {
        Ok((jobs, text)) => Ok((zone, jobs, text)),
        Err(LoadError::Unreadable(e)) => {
            eprint_line(&e);
            Err(EX_NOINPUT)
        }
        Err(LoadError::Invalid(errors)) => {
            let mut text = errors.join("\n");
            text.push('\n');
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            Err(EX_DATAERR)
        }
    }
}

/// `--check [--file F]`: validate, list each job and its next run.
fn check(config: &Config) -> i32 {
    let (_, jobs, _) = match load_or_report(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let now = Timestamp::now();
    let name = config.file.display().to_string();
    let mut out = String::new();
    for job in &jobs {
        let next = format_next(calendar::next_after(&job.schedule, &job.tz, now), &job.tz);
        out.push_str(&format!(
            "{name}:{}: {}  {} {} {}  tz={}{}  next={}\n",
            job.line,
            job.schedule,
            job.user,
            job.service,
            job.action,
            job.tz_name,
            job.slot.map(|n| format!("  slot={n}")).unwrap_or_default(),
            next
        ));
    }
    out.push_str(&format!(
        "{name}: {} job{} OK\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" }
    ));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    exit::SUCCESS
}

/// A job as the logs name it: `file:line`.
fn job_name(file: &str, job: &crontab::Job) -> String {
    format!("{file}:{}", job.line)
}

/// A next fire time in the job's zone, or "never".
fn format_next(at: Option<Timestamp>, tz: &TimeZone) -> String {
    at.map_or_else(|| "never".into(), |t| calendar::format_local(t, tz))
}

/// The earliest next fire time of all jobs, in that job's zone, or "never".
fn next_wake_text(planner: &plan::Planner) -> String {
    let earliest = planner
        .entries
        .iter()
        .filter_map(|e| e.next_due.map(|t| (t, &e.job.tz)))
        .min_by_key(|(t, _)| *t);
    match earliest {
        Some((t, tz)) => calendar::format_local(t, tz),
        None => "never".into(),
    }
}
