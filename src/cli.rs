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

use supd::control::{protocol, server};
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

/// Parse `1h30m`, `8s`, `500ms`, `2m`, `1d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "bad duration {text:?} (use e.g. 500ms, 8s, 30m, 1h)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "bad duration unit {unit:?} in {text:?} (ms, s, m, h, d)"
                ))
            }
        };
        // Checked all the way: a sum past u64 must be a usage error, not a panic.
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|millis| total.checked_add(Duration::from_millis(millis)))
            .ok_or_else(|| format!("duration {text:?} too large"))?;
    }
    Ok(total)
}

/// Parse a signal name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("signal number {n} out of range 1-64"))
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal {text:?}"))
}

fn parse_signal_pair(text: &str) -> Result<(i32, i32), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("expected FROM:TO, got {text:?}"))?;
    Ok((parse_signal(from)?, parse_signal(to)?))
}

fn parse_exit_pair(text: &str) -> Result<(u8, u8), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("expected FROM:TO, got {text:?}"))?;
    let code = |s: &str| {
        s.parse::<u8>()
            .map_err(|_| format!("exit status {s:?} not in 0-255"))
    };
    Ok((code(from)?, code(to)?))
}

/// A socket file's permission bits, 0 to 0777: setuid, setgid and sticky mean nothing
/// on a socket, so they are refused rather than set.
fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("bad octal mode {text:?}"))?;
    if mode > 0o777 {
        return Err(format!(
            "mode {text:?} has bits beyond 0777 (setuid, setgid, sticky): a socket takes \
             permission bits only"
        ));
    }
    Ok(mode)
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

fn init_config(
    init: InitArgs,
    socket: SocketArgs,
    in_process: InProcessArgs,
    state: StateArgs,
    cmd: Vec<OsString>,
) -> Result<init::Config, String> {
    let needs_executor = !socket.no_socket || in_process.schedule.is_some();
    let executor = if needs_executor {
        Some(server::Config {
            service: service_name(socket.service.as_deref())?,
            socket_dir: socket.socket_dir,
            callbacks: socket.callbacks,
            callback_lib: socket.callback_lib,
            max_callbacks: socket.max_callbacks,
            callback_timeout: socket.callback_timeout,
            socket_mode: socket.socket_mode,
            socket_group: socket.socket_group,
            allow_uid: socket.allow_uid,
            allow_gid: socket.allow_gid,
        })
    } else {
        None
    };
    let schedule = match (in_process.schedule, &executor) {
        (Some(file), Some(executor)) => Some(schedule::InProcess {
            file,
            slot: in_process.slot,
            state_dir: state.state_dir.clone(),
            catch_up: state.catch_up,
            retry_for: in_process.retry_for,
            on_failure: state.on_failure()?,
            metrics_file: state.metrics_file.clone(),
            executor: executor.clone(),
        }),
        _ => None,
    };
    let server = if socket.no_socket { None } else { executor };
    Ok(init::Config {
        cmd,
        grace: init.grace,
        single_child: init.single_child,
        signal_group: init.signal_group,
        rewrite: init.rewrite,
        remap_exit: init.remap_exit,
        server,
        schedule,
    })
}

/// `--service`, else $SERVICE, else the host name; it must be a plain file name.
fn service_name(flag: Option<&str>) -> Result<String, String> {
    let name = match flag {
        Some(name) => name.to_string(),
        None => match std::env::var("SERVICE") {
            Ok(name) if !name.is_empty() => name,
            _ => nix::unistd::gethostname()
                .map_err(|e| format!("no --service and cannot read the host name: {e}"))?
                .to_string_lossy()
                .into_owned(),
        },
    };
    if protocol::valid_service(&name) {
        Ok(name)
    } else {
        Err(format!(
            "bad service name {name:?} (want [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}: it names \
             the socket file; set --service or $SERVICE)"
        ))
    }
}

impl From<CtlArgs> for ctl::Config {
    fn from(args: CtlArgs) -> Self {
        let command = match args.action {
            CtlCommand::Send {
                service,
                action,
                args,
                user,
                no_wait,
                timeout,
            } => ctl::Command::Send {
                service,
                action,
                args,
                user,
                no_wait,
                timeout,
            },
            CtlCommand::List { service } => ctl::Command::List { service },
            CtlCommand::Status { service } => ctl::Command::Status { service },
            CtlCommand::Ping { service, timeout } => ctl::Command::Ping { service, timeout },
            CtlCommand::Services => ctl::Command::Services,
        };
        ctl::Config {
            socket_dir: args.socket_dir,
            json: args.json,
            command,
        }
    }
}

fn scheduler_config(args: SchedulerArgs) -> Result<schedule::Config, String> {
    {
        let on_failure = args.state.on_failure()?;
        let mode = match (args.next, args.expr) {
            // clap's `requires` makes --next and --expr come together.
            (Some(count), Some(expr)) => schedule::Mode::Next {
                count,
                expr,
                from: args.from,
                tz: args.tz,
            },
            _ if args.check => schedule::Mode::Check,
            _ => schedule::Mode::Serve,
        };
        Ok(schedule::Config {
            file: args.file,
            socket_dir: args.socket_dir,
            retry_for: args.retry_for,
            state_dir: args.state.state_dir,
            catch_up: args.state.catch_up,
            on_failure,
            metrics_file: args.state.metrics_file,
            mode,
        })
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
    fn durations() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        // Sums past u64 are errors, not panics.
        assert!(parse_duration("18446744073709551615s").is_err());
        let sum_past_u64_seconds = "18446744073709551s".repeat(1001);
        assert!(parse_duration(&sum_past_u64_seconds).is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Ok(libc::SIGQUIT));
        assert_eq!(parse_signal("10"), Ok(10));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(
            parse_signal_pair("TERM:QUIT"),
            Ok((libc::SIGTERM, libc::SIGQUIT))
        );
    }

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
