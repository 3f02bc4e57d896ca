//! From what clap parsed to each face's `Config`: the checks clap cannot make (a
//! service name that must name a socket file, the hook's command line).

use std::ffi::OsString;

use supd::control::{protocol, server};
use supd::{ctl, init, schedule};

use super::{CtlArgs, CtlCommand, InProcessArgs, InitArgs, SchedulerArgs, SocketArgs, StateArgs};

pub(super) fn init_config(
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

pub(super) fn scheduler_config(args: SchedulerArgs) -> Result<schedule::Config, String> {
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
