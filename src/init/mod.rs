//! supd as PID 1: spawn the service, reap everything, forward signals, shut down.

pub mod reaper;
pub mod signals;
pub mod spawn;

use std::ffi::OsString;

use crate::cli::{InitArgs, SocketArgs};

/// Run as the container's init; returns supd's exit status.
pub fn run(init: InitArgs, socket: SocketArgs, cmd: Vec<OsString>) -> i32 {
    let _ = (init, socket, cmd);
    crate::error!("not implemented yet");
    70
}
