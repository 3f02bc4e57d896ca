//! The request socket server (STUB: the control engineer replaces the body; the
//! signatures below are the contract with `init::run`).

use std::rc::Rc;

use crate::cli::SocketArgs;
use crate::init::reaper::Reaper;

/// What the server needs from the init side.
pub struct ServerContext {
    pub args: SocketArgs,
    pub reaper: Rc<Reaper>,
    /// The service's (main child's) pid, for `status`.
    pub service_pid: u32,
    /// supd's own pid, passed to callbacks as $SUPD_PID (so `kill -USR1 $SUPD_PID` works
    /// when supd is not PID 1 too).
    pub supd_pid: u32,
}

/// Handle to a running server, owned by init.
pub struct ServerHandle {}

impl ServerHandle {
    /// Send `signal` to the process group of every running callback (shutdown: TERM
    /// first, then KILL at the end of the grace period).
    pub fn signal_callbacks(&self, signal: i32) {
        let _ = signal;
    }

    /// How many callbacks are still running.
    pub fn running_callbacks(&self) -> usize {
        0
    }

    /// Stop accepting and unlink the socket file (only if it is still ours).
    pub fn close(&self) {}
}

/// Bind the socket (synchronously, so errors are known before the service runs) and spawn
/// the accept loop on the current `LocalSet`. Must be called inside the runtime and a
/// `LocalSet`.
pub fn start(context: ServerContext) -> std::io::Result<ServerHandle> {
    let _ = context;
    Ok(ServerHandle {})
}
