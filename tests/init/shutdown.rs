//! Shutdown: the grace period, stragglers left by the service, and TERM reaching a
//! stopped or trapping service.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{run, start};
use crate::util::proc::{child_running, state};
use crate::util::{alive, read_lines, send, wait_for, Guarded, Mode, Supd, TempDir, MODES};

#[test]
fn term_ignoring_service_is_killed_at_the_end_of_grace() {
    for mode in MODES {
        let dir = TempDir::new("grace");
        let ready = dir.file("ready");
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 1; done",
            ready.display()
        );
        let mut supd = start(mode, |c| {
            // The option, or its environment variable (SUPD_GRACE), alike.
            match mode {
                Mode::Pid1 => c.args(["--grace", "1s"]),
                Mode::Subreaper => c.env("SUPD_GRACE", "1s"),
            };
            c.args(["--", "sh", "-c", &script]);
        });
        wait_for(Duration::from_secs(10), "ready", || ready.exists());
        let service = supd.service();
        let started = Instant::now();
        supd.signal(libc::SIGTERM);
        let status = supd.wait(Duration::from_secs(3));
        let elapsed = started.elapsed();
        assert_eq!(status.code(), Some(128 + 9), "{mode:?}: SIGKILLed service");
        assert!(
            elapsed >= Duration::from_millis(950),
            "{mode:?}: killed before the grace ended: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(1500),
            "{mode:?}: exit took {elapsed:?} (grace 1s)"
        );
        assert!(!alive(service), "{mode:?}");
    }
}

#[test]
fn huge_grace_does_not_overflow_the_clock() {
    // `--grace` up to u64::MAX seconds parses; starting the grace period once panicked
    // (Instant + Duration overflow) and left the service orphaned.
    let mut supd = start(Mode::Subreaper, |c| {
        c.args(["--grace", "18446744073709551615", "--", "sleep", "1000"]);
    });
    supd.service_running("sleep");
    supd.signal(libc::SIGTERM);
    assert_eq!(supd.wait(Duration::from_secs(5)).code(), Some(143));
}

#[test]
fn lingering_grandchildren_are_terminated_after_the_main_child_exits() {
    for mode in MODES {
        let dir = TempDir::new("linger");
        let pids = dir.file("pids");
        let ignoring = dir.file("ignoring");
        // Three stragglers: one in the service's group that dies on TERM, one that
        // ignores TERM (needs the SIGKILL at the end of grace), and one daemon in its own
        // session (not in the group: only the /proc walk finds it).
        let script = format!(
            "sleep 1000 & echo $! >> {p}; \
             (trap '' TERM; touch {i}; exec sleep 1000) & echo $! >> {p}; \
             setsid sleep 1000 & echo $! >> {p}; \
             while [ ! -e {i} ]; do sleep 0.01; done; \
             exit 7",
            p = pids.display(),
            i = ignoring.display()
        );
        let mut supd = start(mode, |c| {
            c.args(["--grace", "1s", "--", "sh", "-c", &script]);
        });
        let started = Instant::now();
        let status = supd.wait(Duration::from_secs(5));
        let elapsed = started.elapsed();
        assert_eq!(status.code(), Some(7), "{mode:?}: the main child's status");
        // The TERM-ignoring straggler keeps supd waiting until the grace period ends.
        assert!(
            elapsed >= Duration::from_millis(900),
            "{mode:?}: exited early: {elapsed:?}"
        );
        // (Measured from supd's start: the bound includes starting unshare, sh and its
        // three children, which takes a while on a loaded machine.)
        assert!(
            elapsed < Duration::from_millis(2500),
            "{mode:?}: took {elapsed:?}"
        );
        let stragglers: Vec<i32> = read_lines(&pids)
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        assert_eq!(stragglers.len(), 3);
        // As PID 1 the pids are the inner namespace's, and the kernel kills whatever is
        // left with it: the check is meaningful for the subreaper only.
        if mode == Mode::Subreaper {
            for pid in stragglers {
                assert!(!alive(pid), "{mode:?}: straggler {pid} outlived supd");
            }
        }
    }
}

#[test]
fn stragglers_that_exit_on_term_end_supd_at_once() {
    for mode in MODES {
        let started = Instant::now();
        let (code, _) = run(
            mode,
            &[
                "--grace",
                "10s",
                "--",
                "sh",
                "-c",
                "sleep 1000 & setsid sleep 1000 & exit 3",
            ],
        );
        assert_eq!(code, 3, "{mode:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode:?}: supd waited for the grace period"
        );
        // A classic daemon: double fork + setsid, the service exits 0 once the daemon
        // runs. supd TERMs the daemon (an orphan it inherited) and exits 0 at once.
        let dir = TempDir::new("daemon");
        let up = dir.file("up");
        let script = format!(
            "(setsid sh -c 'touch {u}; exec sleep 1000' &); \
             while [ ! -e {u} ]; do sleep 0.01; done; exit 0",
            u = up.display()
        );
        let started = Instant::now();
        let (code, _) = run(mode, &["--grace", "10s", "--", "sh", "-c", &script]);
        assert_eq!(code, 0, "{mode:?}: daemonizing service");
        assert!(up.exists());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode:?}: the daemon was not terminated at once"
        );
        // A stopped straggler that traps TERM: supd continues it so the trap runs.
        let trapped = dir.file("trapped");
        let script = format!(
            "bash -c 'trap \"exit 0\" TERM; touch {t}; while :; do sleep 0.05; done' & \
             while [ ! -e {t} ]; do sleep 0.01; done; kill -STOP $!; \
             until grep -q \"^State:.T\" /proc/$!/status; do sleep 0.01; done; exit 6",
            t = trapped.display()
        );
        let started = Instant::now();
        let (code, _) = run(mode, &["--grace", "10s", "--", "sh", "-c", &script]);
        assert_eq!(code, 6, "{mode:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode:?}: the stopped straggler was not continued"
        );
    }
}

#[test]
fn supd_waits_for_a_child_that_outlives_the_service() {
    // The straggler catches TERM and takes 0.5 s to exit: supd must not exit before it.
    for mode in MODES {
        let dir = TempDir::new("outlive");
        let done = dir.file("done");
        let trapped = dir.file("trapped");
        // The service exits only once the straggler's trap is set (a handshake, not a
        // fixed sleep: under load bash could still be starting and die of the TERM).
        let script = format!(
            "bash -c 'trap \"sleep 0.5; echo done > {d}; exit 0\" TERM; touch {t}; \
             sleep 1000 & wait' & \
             while [ ! -e {t} ]; do sleep 0.01; done; exit 4",
            d = done.display(),
            t = trapped.display()
        );
        let (code, _) = run(mode, &["--grace", "5s", "--", "sh", "-c", &script]);
        assert_eq!(code, 4, "{mode:?}");
        assert!(
            done.exists(),
            "{mode:?}: supd exited before its last child finished"
        );
    }
}

#[test]
fn kill_at_end_of_grace_spares_processes_outside_supd() {
    // As a subreaper supd must never kill(-1): that would hit every process of the user.
    // A bystander started by the test itself (not below supd) must survive.
    let mut bystander = Guarded::spawn(Command::new("sleep").arg("1000"));
    let dir = TempDir::new("bystander");
    let ready = dir.file("ready");
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 1; done",
        ready.display()
    );
    let mut supd = start(Mode::Subreaper, |c| {
        c.args(["--grace", "300ms", "--", "sh", "-c", &script]);
    });
    wait_for(Duration::from_secs(10), "ready", || ready.exists());
    supd.signal(libc::SIGTERM);
    assert_eq!(supd.wait(Duration::from_secs(5)).code(), Some(137));
    assert_eq!(
        bystander.try_wait().unwrap(),
        None,
        "a process outside supd's tree was killed"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn term_continues_a_stopped_service_and_spares_cont_traps() {
    // Case 1: the service runs and traps TERM (exit 7) and CONT: TERM must reach its trap
    // (supd sends no SIGCONT to a service that is not stopped). Case 2: the service is
    // stopped: supd must continue it, so that its TERM trap runs long before the grace
    // period ends. (Case 2 traps only TERM: bash 5.2 trapping both can lose the TERM trap
    // when CONT and TERM arrive together, which no init can prevent.)
    let wait_loop = "echo ready; while :; do sleep 1000 & wait $!; done";
    for stopped in [false, true] {
        let traps = if stopped {
            "trap 'exit 7' TERM;"
        } else {
            "trap 'exit 7' TERM; trap ':' CONT;"
        };
        let script = format!("{traps} {wait_loop}");
        for mode in MODES {
            let mut supd = start(mode, |c| {
                c.args(["--grace", "5s", "--", "bash", "-c", &script]);
                c.stdout(Stdio::piped());
            });
            read_ready(&mut supd);
            let service = supd.service();
            if stopped {
                send(service, libc::SIGSTOP);
                wait_for(Duration::from_secs(10), "service stopped", || {
                    state(service) == Some('T')
                });
            }
            term_ends_supd_at_once(&mut supd, 7, &format!("{mode:?} stopped={stopped}"));
        }
    }
}

#[test]
fn a_stopped_group_member_is_continued_to_act_on_term_after_the_main_child_left() {
    // The main child exits at once on TERM; a member of its group, stopped, holds the
    // TERM pending. The walk at the main child's exit leaves the group alone (it got
    // its TERM already), so supd's look for stopped processes, a little after the
    // signal, must continue it: its trap runs once and supd leaves long before the
    // grace period ends (without the CONT: SIGKILL after 5 s, no trap).
    for mode in MODES {
        let (mut supd, dir) = start_with_trapping_member(mode, "");
        // (Its pid as seen from here: in PID-1 mode $$ is the namespace's.)
        let member = child_running(supd.service(), "bash").expect("the member");
        send(member, libc::SIGSTOP);
        wait_for(Duration::from_secs(10), "member stopped", || {
            state(member) == Some('T')
        });
        term_ends_supd_at_once(&mut supd, 0, &format!("{mode:?}"));
        assert_eq!(
            read_lines(&dir.file("trapped")),
            ["TERM"],
            "{mode:?}: the trap ran once"
        );
    }
}

#[test]
fn a_group_member_forked_after_the_term_gets_one_when_the_main_child_exits() {
    // The service's TERM trap forks into its own group and exits (as a shell's loop
    // does when it forks again before running its trap): that member never got the
    // group's TERM, so the walk at the main child's exit must TERM it, not count it
    // as told and wait for the end of the grace period.
    for mode in MODES {
        let mut supd = start(mode, |c| {
            c.args([
                "--grace",
                "5s",
                "--",
                "bash",
                "-c",
                "trap 'sleep 1000 & exit 3' TERM; echo ready; while :; do sleep 1000 & wait $!; done",
            ]);
            c.stdout(Stdio::piped());
        });
        read_ready(&mut supd);
        term_ends_supd_at_once(&mut supd, 3, &format!("{mode:?}"));
    }
}

#[test]
fn a_group_member_trapping_term_runs_its_trap_once() {
    // supd's TERM reaches the service's group; when the main child then exits, the
    // walk of what is left must not TERM that member again (its cleanup would run
    // twice).
    for mode in MODES {
        let (mut supd, dir) = start_with_trapping_member(mode, "sleep 0.5; ");
        supd.signal(libc::SIGTERM);
        let status = supd.wait(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{mode:?}");
        assert_eq!(
            read_lines(&dir.file("trapped")),
            ["TERM"],
            "{mode:?}: the trap ran once"
        );
    }
}

/// supd (grace 5 s) for a service that exits 0 on TERM, with a member of its group
/// (a bash loop) whose TERM trap appends "TERM" to the returned file, runs `on_term`,
/// and exits 0. Returns once the member's trap is set and its child runs (a child
/// forked after supd's walk would get no TERM: the walk sees what exists); the file is
/// `dir.file("trapped")` of the returned dir.
fn start_with_trapping_member(mode: Mode, on_term: &str) -> (Supd, TempDir) {
    let dir = TempDir::new("trapping-member");
    let marks = dir.file("trapped");
    let ready = dir.file("ready");
    let script = format!(
        "bash -c 'trap \"echo TERM >> {m}; {on_term}exit 0\" TERM; \
         while :; do sleep 1000 & touch {r}; wait $!; done' & \
         trap 'exit 0' TERM; while :; do sleep 1000 & wait $!; done",
        m = marks.display(),
        r = ready.display()
    );
    let supd = start(mode, |c| {
        c.args(["--grace", "5s", "--", "bash", "-c", &script]);
    });
    wait_for(Duration::from_secs(10), "the member's trap", || {
        ready.exists()
    });
    (supd, dir)
}

/// The service's first line of output, which says it has set its traps.
fn read_ready(supd: &mut Supd) {
    let mut line = String::new();
    let stdout = supd.child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(line, "ready\n");
}

/// TERM to supd: it must exit with `code` (the main child's) well within the tests'
/// grace period of 5 s, not at its end.
fn term_ends_supd_at_once(supd: &mut Supd, code: i32, case: &str) {
    let started = Instant::now();
    supd.signal(libc::SIGTERM);
    let status = supd.wait(Duration::from_secs(4));
    assert_eq!(status.code(), Some(code), "{case}: the main child's status");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{case}: took {elapsed:?}");
}
