//! Signal forwarding: every signal reaches the service's group once, in order
//! (libc-reserved and real-time ones too), supd's own SIGPIPE does not, `--single-child`
//! and `--rewrite`, and stop signals stop the service but never supd.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use super::{run, start};
use crate::util::proc::{child_running, state};
use crate::util::{alive, fixture, read_lines, send, wait_for, Mode, Supd, TempDir, MODES};

/// The fixture's grandchild (a perl child of the service), as a pid of our namespace: in
/// Pid1 mode the pids the fixture writes are the inner namespace's.
fn grandchild_of(supd: &Supd) -> i32 {
    let service = supd.service();
    wait_for(Duration::from_secs(10), "the grandchild", || {
        child_running(service, "perl")
    })
}

const SIGNALS: [(&str, i32); 7] = [
    ("HUP", libc::SIGHUP),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("TERM", libc::SIGTERM),
];

/// Start the record-signals fixture under supd and wait for its ready file(s).
fn start_recorder(
    mode: Mode,
    dir: &TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
    exit_on: &str,
    spawn: bool,
) -> Supd {
    let script = fixture("record-signals.pl");
    let supd = start(mode, |c| {
        c.envs(env.iter().copied())
            .args(extra)
            .args(["--", "perl"])
            .arg(&script)
            .arg(dir.path())
            .args(["service", exit_on]);
        if spawn {
            c.arg("spawn");
        }
    });
    wait_for(Duration::from_secs(10), "service ready", || {
        dir.file("service.ready").exists()
    });
    supd
}

/// Every signal reaches the service, exactly once and in order. The grandchild (same
/// process group) gets the terminating ones only (INT, QUIT, TERM) by default, and every
/// one with `--signal-group` (or `SUPD_SIGNAL_GROUP`).
fn each_signal_reaches_service_and_group(mode: Mode, signal_group: bool) {
    let dir = TempDir::new("signals");
    let (flags, env): (&[&str], &[(&str, &str)]) = match (signal_group, mode) {
        (false, _) => (&[], &[]),
        (true, Mode::Pid1) => (&["--signal-group"], &[]),
        (true, Mode::Subreaper) => (&[], &[("SUPD_SIGNAL_GROUP", "true")]),
    };
    // A long grace: INT and QUIT start it, but the fixture only exits on TERM.
    let mut args = vec!["--grace", "60s"];
    args.extend_from_slice(flags);
    let mut supd = start_recorder(mode, &dir, &args, env, "TERM", true);
    let mut expected = Vec::new();
    let mut expected_grandchild = Vec::new();
    for (name, signal) in SIGNALS {
        supd.signal(signal);
        expected.push(name.to_string());
        if signal_group || matches!(name, "INT" | "QUIT" | "TERM") {
            expected_grandchild.push(name.to_string());
        }
        if name != "TERM" {
            // Both must have handled it before the next one goes out (a kill() of the
            // group makes it pending in every member before it returns).
            wait_for(
                Duration::from_secs(10),
                format!("{mode:?}: service and grandchild got {name}"),
                || {
                    read_lines(&dir.file("service.log")).len() >= expected.len()
                        && read_lines(&dir.file("grandchild.log")).len()
                            >= expected_grandchild.len()
                },
            );
        }
    }
    let status = supd.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{mode:?}");
    // Exactly once each, in order.
    assert_eq!(read_lines(&dir.file("service.log")), expected, "{mode:?}");
    // The grandchild got exactly its share, once each: had HUP, USR1, USR2 or WINCH gone
    // to the group, it would have recorded them long before TERM.
    assert_eq!(
        read_lines(&dir.file("grandchild.log")),
        expected_grandchild,
        "{mode:?} signal_group={signal_group}: grandchild"
    );
}

#[test]
fn terminating_signals_reach_the_group_others_the_main_child_as_pid1() {
    each_signal_reaches_service_and_group(Mode::Pid1, false);
}

#[test]
fn terminating_signals_reach_the_group_others_the_main_child_as_subreaper() {
    each_signal_reaches_service_and_group(Mode::Subreaper, false);
}

#[test]
fn signal_group_sends_every_signal_to_the_group() {
    for mode in MODES {
        each_signal_reaches_service_and_group(mode, true);
    }
}

#[test]
fn usr1_reaches_the_main_child_not_the_grandchild_and_term_reaches_both() {
    // The php-fpm case: a worker (the grandchild) keeps USR1's default action.
    for mode in MODES {
        let dir = TempDir::new("usr1-main");
        // Both exit on HUP only, so TERM is recorded while the main child still runs:
        // the grandchild can only have it from supd's kill of the group.
        let mut supd = start_recorder(mode, &dir, &["--grace", "30s"], &[], "HUP", true);
        let service = supd.service();
        supd.signal(libc::SIGUSR1);
        wait_for(Duration::from_secs(10), "service got USR1", || {
            read_lines(&dir.file("service.log"))
                .contains(&"USR1".to_string())
                .then_some(())
        });
        // As in single_child_spares_the_grandchild: a USR2 sent now must be the first
        // thing the grandchild records (perl runs pending handlers in ascending order).
        let grandchild = grandchild_of(&supd);
        send(grandchild, libc::SIGUSR2);
        wait_for(Duration::from_secs(10), "grandchild got USR2", || {
            (!read_lines(&dir.file("grandchild.log")).is_empty()).then_some(())
        });
        assert_eq!(
            read_lines(&dir.file("grandchild.log")),
            ["USR2"],
            "{mode:?}"
        );
        supd.signal(libc::SIGTERM);
        wait_for(Duration::from_secs(10), "TERM in the group", || {
            (read_lines(&dir.file("grandchild.log")).len() == 2
                && read_lines(&dir.file("service.log")).len() == 2)
                .then_some(())
        });
        assert!(alive(service), "{mode:?}: the main child exits on HUP only");
        assert_eq!(
            read_lines(&dir.file("grandchild.log")),
            ["USR2", "TERM"],
            "{mode:?}"
        );
        assert_eq!(read_lines(&dir.file("service.log")), ["USR1", "TERM"]);
        send(grandchild, libc::SIGHUP);
        supd.signal(libc::SIGHUP);
        let status = supd.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{mode:?}");
    }
}

#[test]
fn signal_group_and_single_child_are_a_usage_error() {
    let (code, stderr) = run(
        Mode::Subreaper,
        &["--signal-group", "--single-child", "true"],
    );
    assert_eq!(code, 2, "{stderr}");
}

/// Send `n` to supd, whose service is a `sleep` (which dies of it): supd must exit 128+n,
/// the proof that the signal was forwarded and did not kill supd itself.
fn kills_its_sleeping_service(supd: &mut Supd, n: i32) {
    supd.signal(n);
    let status = supd.wait(Duration::from_secs(5));
    assert_eq!(
        (status.code(), status.signal()),
        (Some(128 + n), None),
        "{:?}: signal {n}",
        supd.mode
    );
}

#[test]
fn libc_reserved_and_real_time_signals_are_forwarded() {
    // 32-34 are left out of sigfillset by glibc (32-33) and musl (32-34); 34 is glibc's
    // SIGRTMIN. They must be forwarded like any other signal: once, supd as PID 1 dropped
    // them and supd as a subreaper died of them (leaving its service orphaned). `sleep`
    // dies of each (default action), so supd's status says it was forwarded.
    for mode in MODES {
        for n in [32, 33, 34, 40, 64] {
            let mut supd = start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            });
            supd.service_running("sleep");
            kills_its_sleeping_service(&mut supd, n);
        }
    }
}

/// The blocked mask of every thread of `pid`, from /proc/PID/task/*/status.
fn thread_masks(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .collect()
}

/// With the socket open the request server runs on a thread of its own, and the libcs
/// unblock 32-34 behind supd's back (musl: in the thread that creates the first thread,
/// and after each posix_spawn; glibc: 32 in every new thread). A thread with one
/// unblocked would take a process-directed one and die of it, taking supd along (as a
/// subreaper it orphaned the service). After a callback ran, every thread still blocks
/// 32-34, and each is forwarded to the service.
#[test]
fn with_the_socket_open_reserved_signals_stay_blocked_in_every_thread_and_are_forwarded() {
    let dir = TempDir::new("reserved-socket");
    let callbacks = dir.file("callbacks.sh");
    std::fs::write(&callbacks, "CB_noop() { :; }\n").unwrap();
    let reserved: u64 = 0b111 << 31;
    for mode in MODES {
        for n in [32, 33, 34] {
            let service = format!("rs{n}");
            let mut supd = Supd::start(mode, |c| {
                c.arg("--socket-dir")
                    .arg(dir.path())
                    .args(["--service", &service, "--callbacks"])
                    .arg(&callbacks)
                    .args(["--", "sleep", "1000"]);
            });
            supd.service_running("sleep");
            wait_for(Duration::from_secs(10), "the socket", || {
                dir.file(&format!("{service}-request.sock")).exists()
            });
            let sent = crate::util::supd()
                .arg("ctl")
                .arg("--socket-dir")
                .arg(dir.path())
                .args(["send", &service, "noop"])
                .output()
                .unwrap();
            assert_eq!(sent.status.code(), Some(0), "{mode:?}: the callback");
            let masks = thread_masks(supd.pid);
            assert_eq!(
                masks.len(),
                2,
                "{mode:?}: the init's thread and the server's"
            );
            for mask in masks {
                assert_eq!(mask & reserved, reserved, "{mode:?}: SigBlk {mask:016x}");
            }
            kills_its_sleeping_service(&mut supd, n);
        }
    }
}

#[test]
fn sigpipe_from_supds_own_log_is_not_forwarded() {
    // supd's stderr is a pipe nobody reads: its next log line raises SIGPIPE at supd
    // itself. That one is supd's, not the service's: only USR1 and TERM may arrive.
    let dir = TempDir::new("sigpipe");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut supd = start(Mode::Subreaper, |c| {
        c.args(["-vv", "--grace", "5s", "--", "perl"])
            .arg(fixture("record-signals.pl"))
            .arg(dir.path())
            .args(["service", "TERM"])
            .stderr(writer);
    });
    wait_for(Duration::from_secs(10), "service ready", || {
        dir.file("service.ready").exists()
    });
    supd.signal(libc::SIGUSR1);
    wait_for(Duration::from_secs(10), "USR1", || {
        !read_lines(&dir.file("service.log")).is_empty()
    });
    supd.signal(libc::SIGTERM);
    assert_eq!(supd.wait(Duration::from_secs(5)).code(), Some(0));
    assert_eq!(read_lines(&dir.file("service.log")), ["USR1", "TERM"]);
}

#[test]
fn single_child_spares_the_grandchild() {
    for mode in MODES {
        let dir = TempDir::new("single");
        let mut supd = start_recorder(
            mode,
            &dir,
            &["--single-child", "--grace", "5s"],
            &[],
            "TERM",
            true,
        );
        supd.signal(libc::SIGUSR1);
        wait_for(Duration::from_secs(10), "service got USR1", || {
            read_lines(&dir.file("service.log")).contains(&"USR1".to_string())
        });
        // Had supd signalled the group, USR1 would have reached the grandchild already
        // (or be pending: perl handles pending signals in ascending order, USR1 before
        // USR2). So a USR2 sent now must be the first thing it records.
        let grandchild = grandchild_of(&supd);
        send(grandchild, libc::SIGUSR2);
        wait_for(Duration::from_secs(10), "grandchild got USR2", || {
            !read_lines(&dir.file("grandchild.log")).is_empty()
        });
        assert_eq!(
            read_lines(&dir.file("grandchild.log")),
            ["USR2"],
            "{mode:?}"
        );
        // TERM reaches the service only; the grandchild is terminated by supd once the
        // main child has exited (it exits on TERM), so supd still ends promptly.
        supd.signal(libc::SIGTERM);
        let status = supd.wait(Duration::from_secs(4));
        assert_eq!(status.code(), Some(0), "{mode:?}");
        assert!(!alive(grandchild), "{mode:?}: grandchild survived supd");
        assert_eq!(
            read_lines(&dir.file("grandchild.log")),
            ["USR2", "TERM"],
            "{mode:?}"
        );
    }
}

#[test]
fn rewrite_term_to_quit() {
    for mode in MODES {
        let dir = TempDir::new("rewrite");
        let rewrite = "TERM:QUIT,USR1:USR2";
        // The option, or its environment variable (SUPD_REWRITE), alike.
        let (flags, env) = match mode {
            Mode::Pid1 => (vec!["--rewrite", rewrite], vec![]),
            Mode::Subreaper => (vec![], vec![("SUPD_REWRITE", rewrite)]),
        };
        let mut supd = start_recorder(mode, &dir, &flags, &env, "QUIT", false);
        supd.signal(libc::SIGUSR1);
        wait_for(Duration::from_secs(10), "USR1 rewritten", || {
            !read_lines(&dir.file("service.log")).is_empty()
        });
        supd.signal(libc::SIGTERM);
        let status = supd.wait(Duration::from_secs(4));
        assert_eq!(status.code(), Some(0), "{mode:?}");
        assert_eq!(
            read_lines(&dir.file("service.log")),
            ["USR2", "QUIT"],
            "{mode:?}"
        );
    }
}

#[test]
fn stop_signals_stop_the_service_never_supd() {
    // `docker kill -s TSTP` / `docker pause`-like use: TSTP, TTIN, TTOU are forwarded
    // (the service stops), CONT continues it; supd itself keeps running and reaping.
    for mode in MODES {
        for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            let mut supd = start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            });
            let service = supd.service_running("sleep");
            supd.signal(signal);
            wait_for(Duration::from_secs(10), "service stopped", || {
                state(service) == Some('T')
            });
            assert_ne!(state(supd.pid), Some('T'), "{mode:?}: supd stopped itself");
            supd.signal(libc::SIGCONT);
            wait_for(Duration::from_secs(10), "service continued", || {
                state(service) == Some('S')
            });
            supd.signal(libc::SIGTERM);
            assert_eq!(
                supd.wait(Duration::from_secs(5)).code(),
                Some(143),
                "{mode:?}"
            );
        }
    }
}
