//! Command-line definitions for all three faces of the binary: `supd` (PID 1),
//! `supd ctl` / `supctl` (the client) and `supd scheduler`.
//!
//! Every option of `supd` itself also reads `SUPD_<OPTION>` from the environment; a flag
//! on the command line wins. Durations accept `500ms`, `8s`, `30m`, `1h`, `1h30m` or a
//! bare number of seconds.
//!
//! This module belongs to the binary, not the library: it is the one place that knows
//! clap, and [`Cli::into_face`] turns what it parsed into the `Config` of one face.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod config;
pub mod fast;
mod values;

pub use values::parse_duration;
use values::{parse_exit_pair, parse_mode, parse_signal_pair};

use config::{init_config, scheduler_config};
use supd::{ctl, init, log, schedule};

/// Log format on stderr (clap's face of [`log::Format`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for log::Format {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => log::Format::Text,
            LogFormat::Json => log::Format::Json,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "supd",
    version,
    about = "PID 1 for containers: runs the service, reaps zombies, forwards signals, \
             serves housekeeping requests and schedules them",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub init: InitArgs,

    #[command(flatten)]
    pub socket: SocketArgs,

    #[command(flatten)]
    pub schedule: InProcessArgs,

    #[command(flatten)]
    pub state: StateArgs,

    /// The service entrypoint and its arguments (default: /usr/local/sbin/entrypoint.sh).
    /// `--` before CMD is optional: with `ENTRYPOINT ["/usr/sbin/supd"]`,
    /// `docker run IMAGE bash -l` hands supd `bash -l` as is. Everything from CMD on
    /// belongs to CMD.
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The client: send a request to a service's socket (also installed as `supctl`).
    Ctl(CtlArgs),
    /// Run schedule.cron: send each job's request to its service on time.
    Scheduler(SchedulerArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SUPD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// More log output (repeat for more: -v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, env = "SUPD_VERBOSE")]
    pub verbose: u8,

    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, env = "SUPD_QUIET")]
    pub quiet: u8,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Time between the terminating signal and SIGKILL of everything left.
    #[arg(long, default_value = "8s", value_parser = parse_duration, env = "SUPD_GRACE")]
    pub grace: Duration,

    /// Forward every signal, TERM included, to the main child only (default: TERM, INT
    /// and QUIT to the service's process group, every other signal to the main child).
    #[arg(long, env = "SUPD_SINGLE_CHILD", conflicts_with = "signal_group")]
    pub single_child: bool,

    /// Forward every signal to the service's whole process group (dumb-init's way),
    /// not only TERM, INT and QUIT.
    #[arg(long, env = "SUPD_SIGNAL_GROUP")]
    pub signal_group: bool,

    /// Map a received signal to another before forwarding, e.g. TERM:QUIT (repeatable).
    #[arg(long, value_name = "FROM:TO", value_parser = parse_signal_pair,
          value_delimiter = ',', env = "SUPD_REWRITE")]
    pub rewrite: Vec<(i32, i32)>,

    /// Map the service's exit status to another, e.g. 143:0 (repeatable).
    #[arg(long, value_name = "FROM:TO", value_parser = parse_exit_pair,
          value_delimiter = ',', env = "SUPD_REMAP_EXIT")]
    pub remap_exit: Vec<(u8, u8)>,
}

#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// Service name: names the socket <socket-dir>/<service>-request.sock
    /// (default: $SERVICE, else the host name).
    #[arg(long, env = "SUPD_SERVICE")]
    pub service: Option<String>,

    /// Directory of the request sockets.
    #[arg(long, default_value = "/run", env = "SUPD_SOCKET_DIR")]
    pub socket_dir: PathBuf,

    /// Do not serve the request socket.
    #[arg(long, env = "SUPD_NO_SOCKET")]
    pub no_socket: bool,

    /// The service's callbacks file, defining bash functions CB_<action>.
    #[arg(
        long,
        default_value = "/usr/local/bin/docker-callbacks.sh",
        env = "SUPD_CALLBACKS"
    )]
    pub callbacks: PathBuf,

    /// Helper library sourced before the callbacks file (skipped when absent).
    #[arg(
        long,
        default_value = "/usr/local/sbin/callbacks-lib.sh",
        env = "SUPD_CALLBACK_LIB"
    )]
    pub callback_lib: PathBuf,

    /// How many different actions may run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024),
          env = "SUPD_MAX_CALLBACKS")]
    pub max_callbacks: u32,

    /// A callback running longer has its process group killed.
    #[arg(long, default_value = "1h", value_parser = parse_duration, env = "SUPD_CALLBACK_TIMEOUT")]
    pub callback_timeout: Duration,

    /// Mode of the socket file (octal permission bits, 0 to 0777).
    #[arg(long, default_value = "0660", value_parser = parse_mode, env = "SUPD_SOCKET_MODE")]
    pub socket_mode: u32,

    /// Group owning the socket file (name or number).
    #[arg(long, env = "SUPD_SOCKET_GROUP")]
    pub socket_group: Option<String>,

    /// Only these peer uids may send requests (comma list or repeat; default: anyone who
    /// can open the socket).
    #[arg(long, value_delimiter = ',', env = "SUPD_ALLOW_UID")]
    pub allow_uid: Vec<u32>,

    /// Only peers with these gids (primary or supplementary) may send requests.
    #[arg(long, value_delimiter = ',', env = "SUPD_ALLOW_GID")]
    pub allow_gid: Vec<u32>,
}

/// `supd --schedule`: the service's own lines of a stack-wide schedule (DESIGN §5).
#[derive(Debug, Clone, Args)]
pub struct InProcessArgs {
    /// Run this schedule.cron's lines for this service (its SERVICE is --service) in
    /// this supd, through the same executor as socket requests; other lines are ignored.
    #[arg(long, value_name = "FILE", env = "SUPD_SCHEDULE")]
    pub schedule: Option<PathBuf>,

    /// This replica's slot (Swarm {{.Task.Slot}}, a StatefulSet ordinal): jobs under a
    /// `SLOT=N` line run only where N is the slot. Without it, every job runs.
    #[arg(long, value_name = "N", env = "SUPD_SLOT", requires = "schedule")]
    pub slot: Option<u32>,

    /// Keep retrying a full service (--max-callbacks) this long, or until 1 s before
    /// the job is due again, whichever is first (then the run is lost).
    #[arg(long = "retry-for", default_value = "10m", value_parser = parse_duration,
          env = "SUPD_RETRY_FOR")]
    pub retry_for: Duration,
}

/// The schedule's state, catch-up, hook and metrics: `supd --schedule` and
/// `supd scheduler` alike (DESIGN §5).
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Where the schedule keeps each job's last due time and results (written
    /// atomically). Missing or unusable: logged once, the schedule runs without state.
    #[arg(long, default_value = "/var/lib/supd", env = "SUPD_STATE_DIR")]
    pub state_dir: PathBuf,

    /// At start, a job that missed due times runs once when its latest missed due time
    /// is this recent (0: never catch up).
    #[arg(long, default_value = "1d", value_parser = parse_duration, env = "SUPD_CATCH_UP")]
    pub catch_up: Duration,

    /// After a failed or lost run, run CMD (split into words, quotes allowed, no shell
    /// unless CMD names one) with SUPD_JOB, SUPD_SERVICE, SUPD_ACTION, SUPD_USER,
    /// SUPD_OUTCOME, SUPD_CODE, SUPD_DUE, SUPD_ERROR, SUPD_DURATION_MS in its environment
    /// and the run's last 50 output lines on stdin.
    #[arg(long, value_name = "CMD", env = "SUPD_ON_FAILURE")]
    pub on_failure: Option<String>,

    /// Write the jobs' results here in Prometheus text format after every run (for
    /// node_exporter's textfile collector: name it *.prom in its directory).
    #[arg(long, value_name = "FILE", env = "SUPD_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

impl StateArgs {
    fn on_failure(&self) -> Result<Option<Vec<String>>, String> {
        self.on_failure
            .as_deref()
            .map(|cmd| {
                supd::schedule::hook::split_command(cmd).map_err(|e| format!("--on-failure: {e}"))
            })
            .transpose()
    }
}

#[derive(Debug, Clone, Args)]
#[command(about = "Send a housekeeping request to a service (supctl)")]
pub struct CtlArgs {
    /// Directory of the request sockets.
    #[arg(long, global = true, default_value = "/run", env = "SUPD_SOCKET_DIR")]
    pub socket_dir: PathBuf,

    /// Print the raw reply events (JSON lines) instead of the output.
    #[arg(long, global = true)]
    pub json: bool,

    /// Also believe a server (the process listening on the socket, SO_PEERCRED) running
    /// as this uid; root always is, and so is supctl's own uid when it is not root.
    /// Any other server is refused (exit 76) before the request is sent.
    #[arg(long, global = true, value_name = "UID", env = "SUPD_SERVER_UID")]
    pub server_uid: Option<u32>,

    #[command(subcommand)]
    pub action: CtlCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Run ACTION on SERVICE, stream its output, exit with its status.
    Send {
        service: String,
        action: String,
        /// Arguments passed to the callback after the user.
        args: Vec<String>,
        /// The user named in the request (the callback's $1).
        #[arg(long, default_value = "root")]
        user: String,
        /// Return once the callback has started; do not wait for its end.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (exit 124); the callback keeps running.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// List the actions SERVICE offers.
    List { service: String },
    /// Show SERVICE's pid, uptime, running callbacks and last results.
    Status { service: String },
    /// Check that SERVICE's supd answers.
    Ping {
        service: String,
        /// Give up waiting after this long (exit 124).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// List the services that have a request socket in the socket directory.
    Services,
}

#[derive(Debug, Clone, Args)]
#[command(
    about = "Send schedule.cron's requests on time",
    after_help = "Logging: the scheduler logs one line per run at info level by default; \
                  -v adds debug (the callbacks' output, each retry), -vvv trace, -q errors only."
)]
pub struct SchedulerArgs {
    /// The schedule file.
    #[arg(
        long,
        default_value = "/usr/local/conf/schedule.cron",
        env = "SUPD_SCHEDULE"
    )]
    pub file: PathBuf,

    /// Directory of the request sockets.
    #[arg(long, default_value = "/run", env = "SUPD_SOCKET_DIR")]
    pub socket_dir: PathBuf,

    /// Also believe a server (SO_PEERCRED of the socket's listener) running as this uid;
    /// root always is, and so is the scheduler's own uid when it is not root. Any other
    /// server is refused before a request is sent (retried like an unreachable socket).
    #[arg(long, value_name = "UID", env = "SUPD_SERVER_UID")]
    pub server_uid: Option<u32>,

    /// Keep retrying an absent or refusing socket, or a full service, this long, or
    /// until 1 s before the job is due again, whichever is first (then the run is lost).
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "SUPD_RETRY_FOR")]
    pub retry_for: Duration,

    #[command(flatten)]
    pub state: StateArgs,

    /// Validate the file, list each job and its next run, and exit (65 when invalid).
    #[arg(long, conflicts_with = "next")]
    pub check: bool,

    /// Print the next N fire times of --expr and exit.
    #[arg(long, value_name = "N", requires = "expr",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub next: Option<u32>,

    /// The schedule part of a job: five fields or an @macro (with --next).
    #[arg(long, requires = "next", allow_hyphen_values = true)]
    pub expr: Option<String>,

    /// Start time for --next, RFC3339 with an offset (default: now).
    #[arg(long, requires = "next")]
    pub from: Option<String>,

    /// Time zone for --next (default: $TZ, else UTC).
    #[arg(long, requires = "next")]
    pub tz: Option<String>,
}

/// One face of the binary, configured.
#[allow(clippy::large_enum_variant)] // built once at start
pub enum Face {
    Init(init::Config),
    Ctl(ctl::Config),
    Scheduler(schedule::Config),
}

impl Cli {
    /// The log settings and the face to run. Fails (a usage error) when a setting clap
    /// cannot check is wrong, e.g. a service name that cannot name a socket file.
    pub fn into_face(self) -> Result<(Option<log::Level>, log::Format, Face), String> {
        let level = log::Level::from_verbosity(self.log.verbose, self.log.quiet);
        let format = self.log.log_format.into();
        let face = match self.command {
            None => Face::Init(init_config(
                self.init,
                self.socket,
                self.schedule,
                self.state,
                self.cmd,
            )?),
            Some(Command::Ctl(args)) => {
                supd::control::client::expect_server_uid(args.server_uid);
                Face::Ctl(args.into())
            }
            Some(Command::Scheduler(args)) => {
                supd::control::client::expect_server_uid(args.server_uid);
                Face::Scheduler(scheduler_config(args)?)
            }
        };
        Ok((level, format, face))
    }
}

/// Parse argv, turning `supctl ARGS` (argv[0] decides) into `supd ctl ARGS`.
pub fn parse() -> Cli {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some("supctl") {
        args[0] = "supd".into();
        args.insert(1, "ctl".into());
    }
    Cli::parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_shapes() {
        Cli::command_for_tests().debug_assert();
        let cli = Cli::try_parse_from(["supd", "--grace", "2s", "--", "sleep", "1"]).unwrap();
        assert_eq!(cli.cmd, vec![OsString::from("sleep"), OsString::from("1")]);
        let cli = Cli::try_parse_from([
            "supd", "ctl", "send", "mysql", "backup", "a", "--user", "forum",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Ctl(_))));
        let cli = Cli::try_parse_from(["supd", "scheduler", "--next", "3", "--expr", "* * * * *"])
            .unwrap();
        assert!(matches!(cli.command, Some(Command::Scheduler(_))));
    }

    impl Cli {
        fn command_for_tests() -> clap::Command {
            <Cli as clap::CommandFactory>::command()
        }
    }
}
