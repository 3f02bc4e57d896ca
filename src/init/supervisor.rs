//! The decisions of the init, shared by both drivers of `drive.rs`: spawn the service;
//! on SIGCHLD reap, and learn at once whether the main child was among the reaped (not
//! on a later turn: once reaped, its pid may be reused, and a signal forwarded in
//! between could hit a stranger), then SIGTERM the rest and start the grace period;
//! rewrite and forward every other signal, a terminating one (TERM, INT, QUIT after
//! rewrite) starting the grace period and closing the request socket (stopped processes
//! that got it are continued 10 ms later); at its end SIGKILL everything left, retried
//! (100 ms, doubling up to 5 s) until the last child is reaped; follow a Ctrl-Z of the
//! terminal. [`Supervisor::finished`] is the exit condition.

use std::ffi::OsString;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::companion::Companion;
use crate::exit;
use crate::init::{rules, shutdown, Config, DEFAULT_ENTRYPOINT};
use crate::sys::process::{proc_available, send};
use crate::sys::reaper::{self, Exit, Reaper};
use crate::sys::signals::{signal_name, Received};
use crate::sys::spawn;
use crate::sys::stopped::any_stopped_below_self;
use crate::sys::tty;

/// After the final SIGKILL, how often to look again for survivors (new forks, processes
/// that were in uninterruptible sleep).
const KILL_RETRY: Duration = Duration::from_millis(100);

/// The retry interval doubles up to this: a process stuck in uninterruptible sleep (a
/// dead NFS server) can outlive SIGKILL for long, and supd must not walk /proc ten
/// times a second all that while.
const KILL_RETRY_MAX: Duration = Duration::from_secs(5);

/// The longest grace period honoured (100 years): "never SIGKILL", without overflowing
/// the clock arithmetic.
const MAX_GRACE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How long after a terminating signal supd looks for stopped processes of the
/// service's group to continue. A service that acts on the signal and exits sooner
/// needs no look at all: the look is a /proc scan (tens of µs), and on the signal's own
/// path it was the largest part of supd's TERM-to-exit (bench/RESULTS.md, after-drain).
/// A stopped process holds the signal pending meanwhile; 10 ms late is nothing to a
/// grace period of seconds.
const STOPPED_CHECK_AFTER: Duration = Duration::from_millis(10);

pub(super) struct Supervisor {
    own_pid: i32,
    pid1: bool,
    /// The main child's pid, also its process group id (spawn::prepare does setpgid).
    pub(super) service: i32,
    grace: Duration,
    single_child: bool,
    /// `--signal-group`: every signal to the group, not only the terminating ones.
    signal_group: bool,
    rewrite: Vec<(i32, i32)>,
    /// The request server's thread, told when the service exits.
    pub(super) server: Option<Companion>,
    reaper: Arc<Reaper>,
    /// Where the reaper delivers the main child's exit.
    main_exit: oneshot::Receiver<Exit>,
    /// The main child's exit status (after the 128+N rule), once it has exited.
    pub(super) main_status: Option<i32>,
    /// Nothing is left below supd, for good: the main child has exited and the kernel
    /// said "no child" after that, when nothing can start one any more (supd spawns
    /// nothing itself after the service; the server's spawns are refused from the
    /// service's exit on) and no orphan can come (orphans come from descendants). Saves
    /// asking the kernel again on the way out.
    childless: bool,
    /// End of the grace period (or next SIGKILL retry), while shutting down.
    deadline: Option<Instant>,
    /// When to look for stopped members of the service's group, after a terminating
    /// signal (STOPPED_CHECK_AFTER).
    stopped_check: Option<Instant>,
    /// The grace period is over: SIGKILL has been sent.
    killing: bool,
    /// The wait before the next SIGKILL round.
    kill_retry: Duration,
    /// Not PID 1 and no /proc: children are left that supd cannot find to kill; it
    /// leaves them to the reaper above rather than wait for ever.
    abandoned: bool,
    /// A terminating signal went to the service's whole group: its members then (not
    /// those forked since) need no second one when the main child exits.
    group_told: Option<shutdown::Told>,
    /// The service's group was given the terminal, and supd is not PID 1: a Ctrl-Z that
    /// stops the service must stop supd too, so that the shell above gets its prompt.
    job_control: bool,
    /// supd stopped itself because the service was stopped from the terminal; the
    /// SIGCONT of the shell's `fg` resumes the service in the foreground.
    stopped_with_service: bool,
}

impl Supervisor {
    /// Spawn the service and register its waiter. Err: supd's exit status (126, 127...).
    pub(super) fn start(config: &Config, reaper: Arc<Reaper>) -> Result<Self, i32> {
        let (program, args) = match config.cmd.split_first() {
            Some((program, args)) => (program.clone(), args),
            None => (OsString::from(DEFAULT_ENTRYPOINT), &[][..]),
        };
        // Decided before the spawn, as the child's pre_exec decides it: whether the
        // service gets the terminal (supd is the foreground job of an interactive
        // shell, or leads the session of `docker run -it`).
        let terminal = tty::foreground_is_ours();
        let mut command = Command::new(&program);
        command.args(args);
        spawn::prepare(&mut command);
        let (pid, main_exit) = match reaper.spawn(&mut command) {
            Ok((child, main_exit)) => (child.id(), main_exit),
            Err(err) => {
                let path = std::path::Path::new(&program).display().to_string();
                let message = format!("cannot run {path}: {}", spawn::describe_error(&err));
                crate::error!(message);
                return Err(exit::spawn_failure(&err));
            }
        };
        crate::debug!(
            "service started",
            pid = pid,
            cmd = program.to_string_lossy()
        );
        Ok(Supervisor {
            own_pid: std::process::id() as i32,
            pid1: std::process::id() == 1,
            service: pid as i32,
            grace: config.grace,
            single_child: config.single_child,
            signal_group: config.signal_group,
            rewrite: config.rewrite.clone(),
            server: None,
            reaper,
            main_exit,
            main_status: None,
            childless: false,
            deadline: None,
            stopped_check: None,
            killing: false,
            kill_retry: KILL_RETRY,
            abandoned: false,
            group_told: None,
            job_control: terminal && std::process::id() != 1,
            stopped_with_service: false,
        })
    }

    /// The exit condition: the main child has exited AND nothing is left below supd (or
    /// what is left cannot be found). Some(status) once supd may leave.
    pub(super) fn finished(&self) -> Option<i32> {
        let code = self.main_status?;
        if self.childless || self.abandoned {
            return Some(code);
        }
        if !reaper::has_children() {
            // Collect any zombie left (has_children counts them too).
            self.reaper.reap();
            return Some(code);
        }
        None
    }

    /// Handle a batch of signals in order. Some(status) when supd may leave before the
    /// rest of the batch (nothing left to forward it to).
    pub(super) fn on_signals(&mut self, batch: &[Received]) -> Option<i32> {
        for received in batch {
            self.on_signal(*received);
            if self.main_status.is_some() {
                if let Some(code) = self.finished() {
                    return Some(code);
                }
            }
        }
        None
    }

    pub(super) fn exit_status(&self, code: i32, config: &Config) -> i32 {
        let code = exit::remap(code, &config.remap_exit);
        crate::debug!("exiting", status = code);
        code
    }

    fn on_signal(&mut self, received: Received) {
        if received.signal == libc::SIGCHLD {
            self.reap();
            self.follow_a_terminal_stop();
            return;
        }
        if received.signal == libc::SIGCONT && self.stopped_with_service {
            // `fg` in the shell: it gave supd's group the terminal and continued it.
            self.stopped_with_service = false;
            if self.main_status.is_none() {
                tty::give_terminal(self.service);
                send(-self.service, libc::SIGCONT);
            }
            return;
        }
        if received.sender_pid == self.own_pid {
            // Raised by supd itself (SIGPIPE on a closed stderr...): not for the service.
            return;
        }
        let signal = rules::rewrite_signal(received.signal, &self.rewrite);
        crate::debug!(
            "forwarding signal",
            received = signal_name(received.signal),
            signal = signal_name(signal),
            from_pid = received.sender_pid,
        );
        let terminating = rules::is_terminating(signal);
        let to_group = terminating && !self.single_child && self.main_status.is_none();
        let told = to_group.then(|| shutdown::Told::before_signal(self.service));
        self.forward(signal);
        if terminating {
            // A stopped process cannot act on the signal until it is continued; that
            // is looked at a little later (`on_timers`), if supd is still here.
            self.stopped_check
                .get_or_insert_with(|| Instant::now() + STOPPED_CHECK_AFTER);
        }
        if told.is_some() {
            self.group_told = told;
        }
        if terminating && self.main_status.is_none() {
            // After the signal, not before: it is the service's exit that waits.
            if let Some(server) = &self.server {
                server.close_at_shutdown();
            }
        }
        if terminating {
            self.start_grace(signal_name(signal));
        } else if rules::is_tty_stop(signal) && !self.pid1 && received.sender_pid == 0 {
            // Ctrl-Z on a terminal where supd, not the service, is the foreground group
            // (run from an interactive shell with stdin redirected): the service is
            // stopped by the forward above; now stop supd too, so that the user's shell
            // sees the job stop and gets the terminal back. `fg` continues supd with
            // SIGCONT, which is forwarded like any other signal (dumb-init does the
            // same). PID 1 cannot be stopped and never tries.
            send(self.own_pid, libc::SIGSTOP);
        }
    }

    /// Ctrl-Z on the terminal stopped the service's group, which holds the terminal:
    /// the shell that started supd waits for supd, not the service. Take the terminal
    /// back for supd's group and stop supd too: the shell sees its job stop and prints
    /// its prompt; its `fg` continues supd (see the SIGCONT case in `on_signal`).
    fn follow_a_terminal_stop(&mut self) {
        if !self.job_control || self.main_status.is_some() {
            return;
        }
        match tty::stopped_by(self.service) {
            Some(signal) if rules::is_tty_stop(signal) => {
                crate::debug!("service stopped from the terminal; stopping supd too");
                tty::give_terminal(tty::own_group());
                self.stopped_with_service = true;
                send(self.own_pid, libc::SIGSTOP);
            }
            _ => {}
        }
    }

    /// Forward to the service's process group or to the main child only, as
    /// [`rules::to_group`] decides. Once the main child is gone, supd is only waiting
    /// for the rest to end: signals go to everything still below supd (found through
    /// /proc), not to the old group id, which could be reused once its last member is
    /// gone.
    fn forward(&self, signal: i32) {
        self.forward_to(signal, rules::to_group(signal, self.signal_group))
    }

    /// `forward`, with the target chosen by the caller (group: true).
    fn forward_to(&self, signal: i32, group: bool) {
        match (self.main_status.is_some(), self.single_child) {
            (false, false) if group => send(-self.service, signal),
            (false, _) => send(self.service, signal),
            (true, false) => {
                shutdown::signal_descendants(&[signal]);
            }
            (true, true) => {}
        }
    }

    /// What supd knows of the processes below it, for when /proc cannot tell.
    fn known(&self) -> shutdown::Known {
        shutdown::Known {
            pid1: self.pid1,
            groups: vec![self.service],
        }
    }

    fn start_grace(&mut self, reason: String) {
        if self.deadline.is_some() || self.killing {
            return;
        }
        crate::info!(
            "shutting down",
            reason = reason,
            grace = format!("{:?}", self.grace)
        );
        // `--grace` is user input up to u64::MAX seconds: Instant + Duration panics on
        // overflow (a panic in PID 1 would orphan the service mid-shutdown). Cap it.
        let grace = self.grace.min(MAX_GRACE);
        self.deadline = Some(Instant::now() + grace);
    }

    /// Collect exited children, and learn at once whether the main child was one of
    /// them: from here on its pid may be reused, so nothing may be sent to it any more.
    pub(super) fn reap(&mut self) {
        let reaped = self.reaper.reap();
        crate::trace!("reaped", children = reaped.count);
        if self.main_status.is_some() {
            self.childless |= reaped.childless;
            return;
        }
        match self.main_exit.try_recv() {
            Ok(exit) => self.on_main_exit(Some(exit), reaped.childless),
            // The main child is our child until it is reaped: no child left at all
            // means it was reaped and its status went missing. Never wait for it then.
            Err(oneshot::error::TryRecvError::Empty) if !reaper::has_children() => {
                self.on_main_exit(None, true)
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
            Err(oneshot::error::TryRecvError::Closed) => self.on_main_exit(None, false),
        }
    }

    /// `childless`: the reap that found the exit also found no child left.
    fn on_main_exit(&mut self, exit: Option<Exit>, childless: bool) {
        let code = match exit {
            Some(exit) => {
                crate::info!("service exited", pid = self.service, status = exit);
                exit.status()
            }
            None => {
                // The reaper dropped the waiter or could not decode the status: should
                // not happen; exit rather than wait for a child that is gone.
                crate::error!("lost the service's exit status", pid = self.service);
                1
            }
        };
        self.main_status = Some(code);
        self.childless = match &self.server {
            Some(server) => {
                server.close();
                // The server may have started a callback since that reap; from now on
                // it cannot: ask again.
                !reaper::has_children()
            }
            None => childless,
        };
        if self.childless {
            return;
        }
        // Stragglers: callbacks, the service's leftovers, daemons. TERM now, KILL at the
        // end of the grace period. This walk is the one path that signals callbacks (the
        // server does not): each gets its TERM once, so a TERM trap runs once.
        self.start_grace(format!("service exited ({code})"));
        // (The walk finds the service's group too; CONT wakes stopped ones up to act.)
        let count = shutdown::terminate_descendants(&self.known(), self.group_told);
        crate::debug!("terminating the rest", processes = count);
    }

    /// The earliest of supd's timers: the grace deadline (or next SIGKILL round) and
    /// the look for stopped processes. None: nothing to wake up for.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        match (self.deadline, self.stopped_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run the timers that are due.
    pub(super) fn on_timers(&mut self) {
        if self.next_timer().is_none() {
            return; // not even a clock read per forwarded signal
        }
        let now = Instant::now();
        if self.stopped_check.is_some_and(|at| now >= at) {
            self.stopped_check = None;
            self.continue_stopped();
        }
        if self.deadline.is_some_and(|at| now >= at) {
            self.on_deadline();
        }
    }

    /// SIGCONT to the stopped processes that got the terminating signal and hold it
    /// pending: the service's group's (`--single-child`: the main child's); after the
    /// main child's exit, every one below supd (the signal went to all of them; the
    /// walk at that exit left the service's group to this, as it does not signal the
    /// group twice; with `--single-child` the walk continued them itself).
    ///
    /// CONT follows the signal rather than precedes it: a stopped process takes both
    /// when CONT wakes it, in either order (the kernel delivers the lower number, TERM,
    /// first). Only the stopped ones: bash 5.2 trapping both TERM and CONT can lose the
    /// TERM trap when a CONT reaches it running.
    fn continue_stopped(&self) {
        if !any_stopped_below_self() {
            return;
        }
        let service = self.service;
        let count = match (self.main_status.is_some(), self.single_child) {
            (false, false) => shutdown::continue_stopped(|below| below.pgrp == service),
            (false, true) => shutdown::continue_stopped(|below| below.pid == service),
            (true, false) => shutdown::continue_stopped(|_| true),
            (true, true) => 0,
        };
        crate::debug!("continued stopped processes", processes = count);
    }

    fn on_deadline(&mut self) {
        if !self.killing {
            self.killing = true;
            crate::warn!(
                "grace period over: killing everything left",
                grace = format!("{:?}", self.grace)
            );
        }
        if self.main_status.is_none() {
            send(-self.service, libc::SIGKILL);
            send(self.service, libc::SIGKILL);
        }
        let count = shutdown::kill_everything(&self.known());
        crate::trace!("SIGKILL sent", processes = count);
        if self.main_status.is_some()
            && !self.pid1
            && !proc_available()
            && self.kill_retry > KILL_RETRY
        {
            // The second round without /proc: what is left (daemons that left the
            // service's group) cannot be found, and waiting would be for ever.
            crate::warn!(
                "no /proc: cannot find the processes left below supd; exiting without them \
                 (the reaper above supd inherits them)"
            );
            self.abandoned = true;
            return;
        }
        self.deadline = Some(Instant::now() + self.kill_retry);
        self.kill_retry = (self.kill_retry * 2).min(KILL_RETRY_MAX);
    }
}
