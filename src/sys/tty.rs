//! The controlling terminal and job control, for supd run from an interactive shell.
//!
//! When supd's group is the terminal's foreground group, the service's group is given
//! the terminal (`spawn::prepare`), so Ctrl-C and Ctrl-Z reach the service,
//! not supd. The shell that started supd only sees supd: for Ctrl-Z to give the shell
//! its prompt back, supd must notice that the service stopped, take the terminal back
//! and stop itself; and on `fg` give the terminal to the service again.

/// Whether stdin is a terminal whose foreground group is supd's own group (the test
/// `spawn::prepare` makes before handing the terminal to the service).
pub fn foreground_is_ours() -> bool {
    // SAFETY: plain calls on fd 0 with no pointers.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Make `pgid` the terminal's foreground group. supd blocks SIGTTOU (it reads signals
/// from a signalfd), so this works from a background group too. Errors mean no job
/// control (the terminal went away): nothing to do about them.
pub fn give_terminal(pgid: i32) {
    // SAFETY: plain call on fd 0.
    unsafe { libc::tcsetpgrp(0, pgid) };
}

/// supd's own process group.
pub fn own_group() -> i32 {
    // SAFETY: getpgrp cannot fail.
    unsafe { libc::getpgrp() }
}

/// If the child `pid` has stopped since the last call, the signal that stopped it.
/// Consumes the stop notification only: the reaper (which waits with WEXITED alone)
/// still gets the child's exit.
pub fn stopped_by(pid: i32) -> Option<i32> {
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WNOHANG;
    // SAFETY: a valid out-pointer; P_PID on our own child.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // SAFETY: after a successful waitid the pid and status fields are initialized
    // (si_pid 0: no child changed state).
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    (rc == 0 && child == pid && info.si_code == libc::CLD_STOPPED).then_some(status)
}
