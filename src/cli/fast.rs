//! The PID-1 fast path of argument parsing: the few argv shapes a container's
//! ENTRYPOINT uses (`supd`, `supd CMD...`, `supd --no-socket -- CMD...`, `-v`, `--grace
//! 2s`, `--service NAME`...) are read by hand into the same [`Cli`] value clap would
//! build, and everything else goes to clap. The same for the client's plain shapes
//! (`supctl send SERVICE ACTION [ARG...]`, `ping|list|status SERVICE`, `services`), whose
//! own start was 670,000 instructions of clap.
//!
//! Why: building clap's `Command` for supd's three faces costs about 340,000
//! instructions, most of supd's start (the whole floor init takes 36,000). clap stays
//! the one definition of the command line, its help and its errors: this parser only
//! says yes to argv it understands completely, with no `SUPD_*` variable in the
//! environment (those are clap's `env =` business), and says "ask clap" (None) to
//! anything else: help, version, the scheduler, an unknown or malformed flag, a value it
//! cannot parse (clap then reports the error). The defaults below are clap's; the test
//! at the end checks both parsers agree on every shape accepted here, defaults included.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{
    parse_duration, Cli, Command, CtlArgs, CtlCommand, InProcessArgs, InitArgs, LogArgs, LogFormat,
    SocketArgs, StateArgs,
};

/// The command line, when it is one of the shapes this parser knows; None: use clap.
pub fn parse() -> Option<Cli> {
    if supd_env() {
        return None;
    }
    parse_from(std::env::args_os().collect())
}

/// Whether any `SUPD_*` variable is set. Looked up in `environ` itself: std's
/// `vars_os` copies every variable (30,000 instructions for a dozen).
fn supd_env() -> bool {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is libc's NULL-terminated array of NUL-terminated strings;
    // supd is single-threaded here and changes no variable while it reads.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return false;
        }
        while !(*entry).is_null() {
            if std::ffi::CStr::from_ptr(*entry)
                .to_bytes()
                .starts_with(b"SUPD_")
            {
                return true;
            }
            entry = entry.add(1);
        }
    }
    false
}

/// [`parse`] on a given argv (argv[0] included), ignoring the environment.
pub fn parse_from(argv: Vec<OsString>) -> Option<Cli> {
    let mut args = argv.into_iter();
    let argv0 = args.next()?;
    if std::path::Path::new(&argv0).file_name() == Some(OsStr::new("supctl")) {
        return ctl(args);
    }
    let mut args = args.peekable();
    if args.peek().map(OsString::as_os_str) == Some(OsStr::new("ctl")) {
        args.next();
        return ctl(args);
    }
    let mut cli = defaults();
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        match bytes {
            b"--" => {
                cli.cmd = args.collect();
                break;
            }
            b"--no-socket" => cli.socket.no_socket = true,
            b"--single-child" => cli.init.single_child = true,
            b"--signal-group" => cli.init.signal_group = true,
            b"--verbose" => cli.log.verbose = cli.log.verbose.saturating_add(1),
            b"--quiet" => cli.log.quiet = cli.log.quiet.saturating_add(1),
            b"--grace" => cli.init.grace = parse_duration(utf8(&args.next()?)?).ok()?,
            b"--service" => cli.socket.service = Some(utf8(&args.next()?)?.to_string()),
            b"--socket-dir" => cli.socket.socket_dir = PathBuf::from(args.next()?),
            b"--callbacks" => cli.socket.callbacks = PathBuf::from(args.next()?),
            b"--callback-lib" => cli.socket.callback_lib = PathBuf::from(args.next()?),
            _ if bytes.starts_with(b"--grace=") => {
                cli.init.grace = parse_duration(utf8(&arg)?.get(8..)?).ok()?;
            }
            // -v, -vv, -q, -qvv...: counted flags, as clap counts them.
            [b'-', rest @ ..]
                if !rest.is_empty() && rest.iter().all(|&b| b == b'v' || b == b'q') =>
            {
                for &b in rest {
                    let count = if b == b'v' {
                        &mut cli.log.verbose
                    } else {
                        &mut cli.log.quiet
                    };
                    *count = count.saturating_add(1);
                }
            }
            // Anything else that looks like an option, and the subcommands: clap's.
            [b'-', ..] | b"ctl" | b"scheduler" | b"help" => return None,
            // The first word that is not an option is CMD; the rest is CMD's.
            _ => {
                cli.cmd = std::iter::once(arg).chain(args).collect();
                break;
            }
        }
    }
    if cli.init.single_child && cli.init.signal_group {
        return None; // a conflict: clap says so
    }
    Some(cli)
}

/// The client's plain shapes: `supctl [--socket-dir DIR] [--json] send SERVICE ACTION
/// [ARG...]`, `ping|list|status SERVICE`, `services`. Any option after the subcommand,
/// or an argument that looks like one, is clap's.
fn ctl(args: impl Iterator<Item = OsString>) -> Option<Cli> {
    let mut args = args.map(OsString::into_string);
    let mut next = || args.next()?.ok();
    let mut socket_dir = PathBuf::from("/run");
    let mut json = false;
    let verb = loop {
        match next()?.as_str() {
            "--socket-dir" => socket_dir = PathBuf::from(next()?),
            "--json" => json = true,
            verb => break verb.to_string(),
        }
    };
    let mut rest = Vec::new();
    while let Some(arg) = next() {
        if arg.starts_with('-') {
            return None;
        }
        rest.push(arg);
    }
    let mut rest = rest.into_iter();
    let one = |mut rest: std::vec::IntoIter<String>| {
        let service = rest.next()?;
        rest.next().is_none().then_some(service)
    };
    let action = match verb.as_str() {
        "send" => CtlCommand::Send {
            service: rest.next()?,
            action: rest.next()?,
            args: rest.collect(),
            user: "root".to_string(),
            no_wait: false,
            timeout: None,
        },
        "ping" => CtlCommand::Ping {
            service: one(rest)?,
            timeout: None,
        },
        "list" => CtlCommand::List {
            service: one(rest)?,
        },
        "status" => CtlCommand::Status {
            service: one(rest)?,
        },
        "services" if rest.next().is_none() => CtlCommand::Services,
        _ => return None,
    };
    let mut cli = defaults();
    // clap propagates the global --socket-dir up to supd's own (unused by the client).
    cli.socket.socket_dir = socket_dir.clone();
    cli.command = Some(Command::Ctl(CtlArgs {
        socket_dir,
        json,
        server_uid: None,
        action,
    }));
    Some(cli)
}

fn utf8(arg: &OsStr) -> Option<&str> {
    arg.to_str()
}

/// What clap fills in when nothing is given (the `default_value`s of `cli.rs`).
fn defaults() -> Cli {
    Cli {
        command: None,
        log: LogArgs {
            log_format: LogFormat::Text,
            verbose: 0,
            quiet: 0,
        },
        init: InitArgs {
            grace: Duration::from_secs(8),
            single_child: false,
            signal_group: false,
            rewrite: Vec::new(),
            remap_exit: Vec::new(),
        },
        socket: SocketArgs {
            service: None,
            socket_dir: PathBuf::from("/run"),
            no_socket: false,
            callbacks: PathBuf::from("/usr/local/bin/docker-callbacks.sh"),
            callback_lib: PathBuf::from("/usr/local/sbin/callbacks-lib.sh"),
            max_callbacks: 4,
            callback_timeout: Duration::from_secs(3600),
            socket_mode: 0o660,
            socket_group: None,
            allow_uid: Vec::new(),
            allow_gid: Vec::new(),
        },
        schedule: InProcessArgs {
            schedule: None,
            slot: None,
            retry_for: Duration::from_secs(600),
        },
        state: StateArgs {
            state_dir: PathBuf::from("/var/lib/supd"),
            catch_up: Duration::from_secs(86_400),
            on_failure: None,
            metrics_file: None,
        },
        cmd: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// Every shape the fast path accepts gives exactly what clap gives.
    #[test]
    fn agrees_with_clap() {
        let shapes: &[&[&str]] = &[
            &["supd"],
            &["supd", "--", "sleep", "1"],
            &["supd", "bash", "-l"],
            &["supd", "--no-socket", "--", "/bin/true"],
            &["supd", "--no-socket", "/bin/true", "--help"],
            &[
                "supd",
                "-v",
                "-qvv",
                "--grace",
                "2s",
                "--service",
                "web",
                "--",
                "x",
            ],
            &[
                "supd",
                "--grace=500ms",
                "--socket-dir",
                "/tmp/r",
                "--single-child",
                "x",
            ],
            &[
                "supd",
                "--signal-group",
                "--verbose",
                "--quiet",
                "--",
                "--",
                "-x",
            ],
            &["supd", "--"],
            &[
                "supd",
                "--callbacks",
                "/c.sh",
                "--callback-lib",
                "/l.sh",
                "x",
            ],
            &["supd", "ctl", "send", "mysql", "nightly-backup", "a", "b"],
            &[
                "supd",
                "ctl",
                "--socket-dir",
                "/d",
                "--json",
                "ping",
                "mysql",
            ],
            &["supd", "ctl", "list", "mysql"],
            &["supd", "ctl", "status", "mysql"],
            &["supd", "ctl", "services"],
        ];
        for shape in shapes {
            let fast = parse_from(argv(shape)).unwrap_or_else(|| panic!("not fast: {shape:?}"));
            let clap = Cli::try_parse_from(argv(shape)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{shape:?}");
        }
    }

    /// Help, errors, subcommands and the client are clap's.
    #[test]
    fn leaves_the_rest_to_clap() {
        let shapes: &[&[&str]] = &[
            &["supd", "--help"],
            &["supd", "-h"],
            &["supd", "--version"],
            &["supd", "ctl", "send", "x", "a", "--user", "forum"],
            &["supd", "ctl", "send", "x"],
            &["supd", "ctl", "ping", "x", "y"],
            &["supd", "ctl", "--help"],
            &["supd", "-v", "ctl", "ping", "x"],
            &["supd", "scheduler", "--check"],
            &["supd", "--grace", "soon", "x"],
            &["supd", "--grace"],
            &["supd", "--rewrite", "TERM:QUIT", "x"],
            &["supd", "--single-child", "--signal-group", "x"],
            &["supd", "-x"],
            &["/usr/bin/supctl", "ping", "x", "--timeout", "1s"],
        ];
        for shape in shapes {
            assert!(parse_from(argv(shape)).is_none(), "{shape:?}");
        }
    }
}
