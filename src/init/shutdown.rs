//! Signalling everything that is still alive below supd.
//!
//! The service's process group is the cheap target, but not everything sits in it:
//! callbacks have their own groups, and a service may start daemons with `setsid`.
//! So supd also walks /proc and signals every process whose parent chain leads back to
//! supd. As a subreaper (or PID 1) supd inherits every orphan of its subtree, so "below
//! supd" is exactly the set of processes it is responsible for.
//!
//! `kill(-1, ...)` would be simpler, and as PID 1 it is what supd uses for the final
//! SIGKILL (the kernel spares init). When supd is NOT PID 1, `kill(-1)` would hit every
//! process of the user on the host: never use it there.
//!

//! Without /proc (not mounted, or hidden) the walk finds nothing, so supd falls back on
//! what it knows: as PID 1 `kill(-1)` (everything in the namespace but supd); otherwise
//! the process groups it started (the service's, the callbacks').

use crate::sys::process::{
    born_since, descendants, descendants_with_state, last_pid, proc_available, send, Below,
};

/// What supd knows of the processes below it without /proc.
pub struct Known {
    /// supd is PID 1: `kill(-1)` reaches everything else in the namespace.
    pub pid1: bool,
    /// Process groups supd started (the service's; the running callbacks').
    pub groups: Vec<i32>,
}

impl Known {
    /// Send `signals` to what supd knows; returns how many targets were signalled.
    fn signal(&self, signals: &[i32]) -> usize {
        if self.pid1 {
            for signal in signals {
                send(-1, *signal);
            }
            return 1;
        }
        for group in &self.groups {
            for signal in signals {
                send(-group, *signal);
            }
        }
        self.groups.len()
    }
}

/// Send each of `signals`, in order, to every process below supd (not supd itself).
/// Returns how many processes were signalled.
pub fn signal_descendants(signals: &[i32]) -> usize {
    let own = std::process::id() as i32;
    let pids = descendants(own);
    for pid in &pids {
        for signal in signals {
            send(*pid, *signal);
        }
    }
    pids.len()
}

/// A process group that was sent a terminating signal: its members got it, except
/// those forked since (a shell's loop forks again before it runs its TERM trap).
#[derive(Clone, Copy, Debug)]
pub struct Told {
    pub group: i32,
    /// [`last_pid`] just before the signal; None: unknown (no /proc), and then every
    /// member counts as told.
    pub last_pid: Option<i32>,
}

impl Told {
    /// Read the namespace's last pid for a signal about to go to `group`. Before the
    /// signal, not after: a member forking between the signal and a later reading (the
    /// woken shell may run first) would count as told without having been; read before,
    /// the worst is a second TERM to a child forked in those microseconds, which got
    /// the first as a member already (a subshell does not keep its parent's traps).
    pub fn before_signal(group: i32) -> Told {
        Told {
            group,
            last_pid: last_pid(),
        }
    }

    /// Whether `below` got the signal: a member of the group, forked before it. `now`:
    /// the namespace's last pid at this walk.
    fn got_it(&self, below: &Below, now: Option<i32>) -> bool {
        if below.pgrp != self.group {
            return false;
        }
        match (self.last_pid, now) {
            (Some(then), Some(now)) => !born_since(below.pid, then, now),
            _ => true,
        }
    }
}

/// SIGTERM to every process below supd, then SIGCONT to those that are stopped (so
/// that they can act on it). Only to those: bash trapping both TERM and CONT can lose its
/// TERM trap when both arrive together. Members of `already_told`, a group that was sent
/// a terminating signal already, are left alone if they got it: a second TERM would run
/// a TERM trap (a cleanup) twice; those forked after it get theirs now. Returns how many
/// processes were signalled.
pub fn terminate_descendants(known: &Known, already_told: Option<Told>) -> usize {
    if !proc_available() {
        // Stopped processes cannot be told apart: CONT them all, after the TERM.
        return known.signal(&[libc::SIGTERM, libc::SIGCONT]);
    }
    let found = descendants_with_state(std::process::id() as i32);
    // Read after the walk: every pid it found was handed out by then, so a member
    // forked while /proc was being read falls inside (then, now] and gets its TERM.
    let now = already_told.and_then(|_| last_pid());
    let mut told = 0;
    for below in found {
        if already_told.is_some_and(|group| group.got_it(&below, now)) {
            continue;
        }
        send(below.pid, libc::SIGTERM);
        if below.stopped() {
            send(below.pid, libc::SIGCONT);
        }
        told += 1;
    }
    told
}

/// SIGCONT to the stopped processes below supd that `target` picks. Returns how many
/// were continued.
pub fn continue_stopped(target: impl Fn(&Below) -> bool) -> usize {
    let mut continued = 0;
    for below in descendants_with_state(std::process::id() as i32) {
        if below.stopped() && target(&below) {
            send(below.pid, libc::SIGCONT);
            continued += 1;
        }
    }
    continued
}

/// The end of the grace period: SIGKILL everything below supd. As PID 1 `kill(-1)` is
/// the atomic way to get every process in the namespace (including any that fork while
/// we walk); the walk still runs to cover the not-PID-1 case and is harmless otherwise.
pub fn kill_everything(known: &Known) -> usize {
    if !proc_available() {
        return known.signal(&[libc::SIGKILL]);
    }
    if known.pid1 {
        send(-1, libc::SIGKILL);
    }
    signal_descendants(&[libc::SIGKILL])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pid: i32, pgrp: i32) -> Below {
        Below {
            pid,
            state: 'S',
            pgrp,
        }
    }

    #[test]
    fn told_are_the_group_members_older_than_the_signal() {
        let told = Told {
            group: 50,
            last_pid: Some(100),
        };
        // now = 200: pids 101..=200 were handed out after the signal.
        assert!(told.got_it(&member(60, 50), Some(200)));
        assert!(told.got_it(&member(100, 50), Some(200)));
        assert!(!told.got_it(&member(101, 50), Some(200)), "forked after");
        assert!(!told.got_it(&member(200, 50), Some(200)), "forked after");
        assert!(!told.got_it(&member(60, 51), Some(200)), "not a member");
        // Unknown: every member counts as told (no second TERM).
        assert!(told.got_it(&member(150, 50), None));
        let unknown = Told {
            group: 50,
            last_pid: None,
        };
        assert!(unknown.got_it(&member(150, 50), Some(200)));
    }
}
