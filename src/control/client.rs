//! supctl: the client by hand.

use crate::cli::CtlArgs;

/// Run `supd ctl` / `supctl`; returns the exit status (DESIGN §3).
pub fn run(args: CtlArgs) -> i32 {
    let _ = args;
    crate::error!("not implemented yet");
    70
}
