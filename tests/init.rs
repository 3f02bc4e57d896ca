//! supd as PID 1 (in a fresh PID namespace) and as a subreaper (run directly): exit
//! statuses, signal forwarding, reaping, the grace period, the child's clean state, and
//! interactive use under a pty.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{children_of, kill_tree_if_running, supd_bin, Guarded};

/// How supd is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// PID 1 of a fresh PID namespace: `unshare --pid --fork --mount-proc supd ...`.
    Pid1,
    /// Run directly: not PID 1, so it must make itself child subreaper.
    Subreaper,
}

const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/init")
        .join(name)
}

/// A unique scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("supd-init-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The command line that starts supd in `mode`, without the socket (tests run in parallel).
fn supd_command(mode: Mode) -> Command {
    let mut command = match mode {
        Mode::Pid1 => {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc"]).arg(supd_bin());
            c
        }
        Mode::Subreaper => Command::new(supd_bin()),
    };
    command.arg("--no-socket");
    command
}

/// Poll `check` every 10 ms until it returns Some, or panic with `what` after `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0): look at its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn send(pid: i32, signal: i32) {
    // SAFETY: plain syscall.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A running supd (maybe inside `unshare`), killed on drop if the test failed midway.
struct Supd {
    child: Child,
    /// supd's own pid (in our PID namespace).
    pid: i32,
    mode: Mode,
}

impl Supd {
    fn start(mode: Mode, configure: impl FnOnce(&mut Command)) -> Supd {
        let mut command = supd_command(mode);
        configure(&mut command);
        let child = command.spawn().expect("cannot start supd");
        let pid = match mode {
            Mode::Subreaper => child.id() as i32,
            Mode::Pid1 => {
                let unshare = child.id() as i32;
                wait_for(Duration::from_secs(10), "supd under unshare", || {
                    children_of(unshare).first().copied()
                })
            }
        };
        Supd { child, pid, mode }
    }

    /// The service: supd's child.
    fn service(&self) -> i32 {
        wait_for(Duration::from_secs(10), "the service", || {
            children_of(self.pid).first().copied()
        })
    }

    fn signal(&self, signal: i32) {
        send(self.pid, signal);
    }

    /// Wait for supd to exit; its status (through unshare, which passes it on).
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "supd ({:?}) did not exit within {timeout:?}",
                self.mode
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Supd {
    fn drop(&mut self) {
        kill_tree_if_running(&mut self.child);
    }
}

/// Run supd to completion with `cmd`; (exit code, stderr). A supd still running after
/// 30 s fails the test (and is killed with its tree) instead of hanging the suite.
fn run(mode: Mode, args: &[&str]) -> (i32, String) {
    let mut child = Guarded(
        supd_command(mode)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run supd"),
    );
    let mut stderr = child.stderr.take().expect("piped stderr");
    // EOF once supd and everything that inherited its stderr are gone.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = wait_for(Duration::from_secs(30), "supd to exit", || {
        child.try_wait().unwrap()
    });
    let code = status
        .code()
        .unwrap_or_else(|| panic!("supd died: {status:?}"));
    (code, reader.join().unwrap())
}

// ---------------------------------------------------------------------------------------
// Exit statuses

/// All 256 exit codes pass through, 16 supd at a time.
fn all_exit_codes(mode: Mode) {
    let codes: Vec<i32> = (0..256).collect();
    for batch in codes.chunks(16) {
        let children: Vec<(i32, Child)> = batch
            .iter()
            .map(|code| {
                let child = supd_command(mode)
                    .args(["--", "sh", "-c", &format!("exit {code}")])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap();
                (*code, child)
            })
            .collect();
        for (code, mut child) in children {
            let status = child.wait().unwrap();
            assert_eq!(
                status.code(),
                Some(code),
                "{mode:?}: exit {code} became {status:?}"
            );
        }
    }
}

#[test]
fn exit_codes_pass_through_as_pid1() {
    all_exit_codes(Mode::Pid1);
}

#[test]
fn exit_codes_pass_through_as_subreaper() {
    all_exit_codes(Mode::Subreaper);
}

#[test]
fn death_by_signal_gives_128_plus_n() {
    for mode in MODES {
        for (name, n) in [
            ("HUP", 1),
            ("INT", 2),
            ("KILL", 9),
            ("USR1", 10),
            ("SEGV", 11),
            ("TERM", 15),
        ] {
            let script = format!("kill -{name} $$; sleep 5");
            let (code, _) = run(mode, &["--", "sh", "-c", &script]);
            assert_eq!(code, 128 + n, "{mode:?}: death by SIG{name}");
        }
    }
}

#[test]
fn death_by_real_time_signal_gives_128_plus_n() {
    // A status that nix cannot decode (signals 34-64 are not in its enum) must not be
    // lost: supd once hung forever here, its main child reaped but never reported.
    for mode in MODES {
        for n in [40, 64] {
            let child = supd_command(mode)
                .args(["--", "sh", "-c", &format!("kill -{n} $$; sleep 5")])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            // Guarded: a hung supd (and its tree) is killed when the assertion fails.
            let mut child = Guarded(child);
            let status = wait_for(Duration::from_secs(4), "supd to exit", || {
                child.try_wait().unwrap()
            });
            assert_eq!(
                status.code(),
                Some(128 + n),
                "{mode:?}: death by signal {n}"
            );
        }
    }
}

#[test]
fn missing_and_unexecutable_commands() {
    let dir = TempDir::new("exec");
    let not_executable = dir.file("not-executable.sh");
    std::fs::write(&not_executable, "#!/bin/sh\necho hi\n").unwrap();
    let missing = dir.file("missing");
    for mode in MODES {
        let (code, stderr) = run(mode, &["--", missing.to_str().unwrap()]);
        assert_eq!(code, 127, "{mode:?}: missing CMD");
        let expected = format!(
            "cannot run {}: No such file or directory",
            missing.display()
        );
        assert!(stderr.contains(&expected), "{mode:?}: {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "{mode:?}: one line: {stderr:?}");

        let (code, stderr) = run(mode, &["--", not_executable.to_str().unwrap()]);
        assert_eq!(code, 126, "{mode:?}: non-executable CMD");
        let expected = format!("cannot run {}: Permission denied", not_executable.display());
        assert!(stderr.contains(&expected), "{mode:?}: {stderr:?}");

        let (code, _) = run(mode, &["--", dir.path().to_str().unwrap()]);
        assert_eq!(code, 126, "{mode:?}: a directory as CMD");
    }
}

#[test]
fn remap_exit_and_usage_errors() {
    let (code, _) = run(
        Mode::Subreaper,
        &["--remap-exit", "143:0", "--", "sh", "-c", "kill $$"],
    );
    assert_eq!(code, 0, "143 remapped to 0");
    let (code, _) = run(
        Mode::Subreaper,
        &["--remap-exit", "3:4,5:6", "--", "sh", "-c", "exit 5"],
    );
    assert_eq!(code, 6);
    let (code, _) = run(
        Mode::Subreaper,
        &["--remap-exit", "3:4", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(code, 7, "unmapped status unchanged");
    let (code, stderr) = run(Mode::Subreaper, &["--grace", "soon", "--", "true"]);
    assert_eq!(code, 2, "usage error: {stderr}");
    let (code, _) = run(Mode::Subreaper, &["--rewrite", "TERM", "--", "true"]);
    assert_eq!(code, 2);
    let (code, _) = run(Mode::Subreaper, &["--remap-exit", "300:0", "--", "true"]);
    assert_eq!(code, 2);
}

/// Run supd with no CMD as PID 1 of a namespace that also has its own mount namespace,
/// with an empty tmpfs over the directory of the default entrypoint; `setup` is a shell
/// snippet run in it first (e.g. to create the entrypoint). (exit code, stderr)
fn run_default_entrypoint(setup: &str) -> (i32, String) {
    let dir = Path::new(supd::cli::DEFAULT_ENTRYPOINT).parent().unwrap();
    let script = format!(
        "mkdir -p {d} && mount -t tmpfs none {d} && {setup} exec \"$0\" --no-socket",
        d = dir.display()
    );
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .arg(supd_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn default_entrypoint_runs_and_missing_is_127() {
    // No CMD: /usr/local/sbin/entrypoint.sh.
    let (code, stderr) = run_default_entrypoint("");
    assert_eq!(code, 127, "{stderr}");
    assert!(
        stderr.contains("cannot run /usr/local/sbin/entrypoint.sh: No such file or directory"),
        "{stderr}"
    );
    let (code, stderr) = run_default_entrypoint(&format!(
        "printf '#!/bin/sh\\nexit 42\\n' > {e} && chmod +x {e} &&",
        e = supd::cli::DEFAULT_ENTRYPOINT
    ));
    assert_eq!(code, 42, "the default entrypoint ran: {stderr}");
}

// ---------------------------------------------------------------------------------------
// Signal forwarding

/// The fixture's grandchild (a perl child of the service), as a pid of our namespace: in
/// Pid1 mode the pids the fixture writes are the inner namespace's.
fn grandchild_of(supd: &Supd) -> i32 {
    let service = supd.service();
    wait_for(Duration::from_secs(10), "the grandchild", || {
        children_of(service).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "perl")
        })
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

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

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
    let supd = Supd::start(mode, |c| {
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
        dir.file("service.ready").exists().then_some(())
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
                &format!("{mode:?}: service and grandchild got {name}"),
                || {
                    (read_lines(&dir.file("service.log")).len() >= expected.len()
                        && read_lines(&dir.file("grandchild.log")).len()
                            >= expected_grandchild.len())
                    .then_some(())
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

#[test]
fn libc_reserved_and_real_time_signals_are_forwarded() {
    // 32-34 are left out of sigfillset by glibc (32-33) and musl (32-34); 34 is glibc's
    // SIGRTMIN. They must be forwarded like any other signal: once, supd as PID 1 dropped
    // them and supd as a subreaper died of them (leaving its service orphaned). `sleep`
    // dies of each (default action), so supd's status says it was forwarded.
    for mode in MODES {
        for n in [32, 33, 34, 40, 64] {
            let mut supd = Supd::start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            });
            let service = supd.service();
            wait_for(Duration::from_secs(10), "service exec", || {
                std::fs::read_to_string(format!("/proc/{service}/comm"))
                    .ok()
                    .filter(|c| c.trim() == "sleep")
            });
            supd.signal(n);
            let status = supd.wait(Duration::from_secs(5));
            assert_eq!(
                (status.code(), status.signal()),
                (Some(128 + n), None),
                "{mode:?}: signal {n}"
            );
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
    let mut supd = Supd::start(Mode::Subreaper, |c| {
        c.args(["-vv", "--grace", "5s", "--", "perl"])
            .arg(fixture("record-signals.pl"))
            .arg(dir.path())
            .args(["service", "TERM"])
            .stderr(writer);
    });
    wait_for(Duration::from_secs(10), "service ready", || {
        dir.file("service.ready").exists().then_some(())
    });
    supd.signal(libc::SIGUSR1);
    wait_for(Duration::from_secs(10), "USR1", || {
        (!read_lines(&dir.file("service.log")).is_empty()).then_some(())
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
            read_lines(&dir.file("service.log"))
                .contains(&"USR1".to_string())
                .then_some(())
        });
        // Had supd signalled the group, USR1 would have reached the grandchild already
        // (or be pending: perl handles pending signals in ascending order, USR1 before
        // USR2). So a USR2 sent now must be the first thing it records.
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
            (!read_lines(&dir.file("service.log")).is_empty()).then_some(())
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

// ---------------------------------------------------------------------------------------
// Reaping

fn orphans_are_reaped(mode: Mode, count: usize, burst: bool) {
    let dir = TempDir::new("orphans");
    let mut supd = Supd::start(mode, |c| {
        c.args(["--grace", "5s", "--", "bash"])
            .arg(fixture("orphans.sh"))
            .arg(dir.path())
            .arg(count.to_string());
    });
    wait_for(Duration::from_secs(10), "orphans fixture ready", || {
        dir.file("ready").exists().then_some(())
    });
    if burst {
        // 1,000 signals while the orphans are being made: reaping and forwarding go on.
        for i in 0..1000 {
            let signal = if i % 2 == 0 {
                libc::SIGUSR1
            } else {
                libc::SIGWINCH
            };
            send(supd.pid, signal);
        }
    }
    wait_for(Duration::from_secs(60), "orphans reaped", || {
        if let Ok(why) = std::fs::read_to_string(dir.file("failed")) {
            panic!("{mode:?}: {why}");
        }
        dir.file("reaped").exists().then_some(())
    });
    if burst {
        // Standard signals merge, so the service saw USR1 at least once; a fresh USR2
        // after the burst must still arrive.
        assert!(read_lines(&dir.file("signals.log")).contains(&"USR1".to_string()));
        send(supd.pid, libc::SIGUSR2);
        wait_for(Duration::from_secs(10), "USR2 after the burst", || {
            read_lines(&dir.file("signals.log"))
                .contains(&"USR2".to_string())
                .then_some(())
        });
    }
    supd.signal(libc::SIGTERM);
    let status = supd.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{mode:?}");
}

#[test]
fn two_thousand_orphans_leave_no_zombie_as_pid1() {
    orphans_are_reaped(Mode::Pid1, 2000, false);
}

#[test]
fn two_thousand_orphans_leave_no_zombie_as_subreaper() {
    orphans_are_reaped(Mode::Subreaper, 2000, false);
}

#[test]
fn signal_burst_does_not_stop_reaping_or_forwarding() {
    orphans_are_reaped(Mode::Pid1, 500, true);
    orphans_are_reaped(Mode::Subreaper, 500, true);
}

// ---------------------------------------------------------------------------------------
// Shutdown

#[test]
fn term_ignoring_service_is_killed_at_the_end_of_grace() {
    for mode in MODES {
        let dir = TempDir::new("grace");
        let ready = dir.file("ready");
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 1; done",
            ready.display()
        );
        let mut supd = Supd::start(mode, |c| {
            // The option, or its environment variable (SUPD_GRACE), alike.
            match mode {
                Mode::Pid1 => c.args(["--grace", "1s"]),
                Mode::Subreaper => c.env("SUPD_GRACE", "1s"),
            };
            c.args(["--", "sh", "-c", &script]);
        });
        wait_for(Duration::from_secs(10), "ready", || {
            ready.exists().then_some(())
        });
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
    let mut supd = Supd::start(Mode::Subreaper, |c| {
        c.args(["--grace", "18446744073709551615", "--", "sleep", "1000"]);
    });
    let service = supd.service();
    wait_for(Duration::from_secs(10), "service exec", || {
        std::fs::read_to_string(format!("/proc/{service}/comm"))
            .ok()
            .filter(|c| c.trim() == "sleep")
    });
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
        let mut supd = Supd::start(mode, |c| {
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

// ---------------------------------------------------------------------------------------
// The child's clean slate

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn child_gets_clean_signal_state_and_only_stdio() {
    for mode in MODES {
        // Hand supd a dirty state: an extra inherited fd 7, SIGUSR1 blocked, SIGHUP and
        // SIGPIPE ignored. None of it may reach the service.
        let extra = std::fs::File::open("/dev/null").unwrap();
        let extra_fd = extra.as_raw_fd();
        let mut supd = Supd::start(mode, |c| {
            c.args(["--", "sleep", "1000"]);
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(extra_fd, 7) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR1);
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
        });
        // Prove the dirty state did reach supd itself.
        let supd_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", supd.pid))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            supd_fds.contains(&"7".to_string()),
            "{mode:?}: supd lacks fd 7: {supd_fds:?}"
        );

        let service = supd.service();
        // Wait for the exec (the fork may still be in pre_exec).
        wait_for(Duration::from_secs(10), "service exec", || {
            std::fs::read_to_string(format!("/proc/{service}/comm"))
                .ok()
                .filter(|c| c.trim() == "sleep")
        });
        assert_eq!(
            status_field(service, "SigBlk:"),
            "0000000000000000",
            "{mode:?}"
        );
        assert_eq!(
            status_field(service, "SigIgn:"),
            "0000000000000000",
            "{mode:?}"
        );
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{service}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2], "{mode:?}: the service's fds");
        supd.signal(libc::SIGTERM);
        assert_eq!(
            supd.wait(Duration::from_secs(5)).code(),
            Some(143),
            "{mode:?}"
        );
        drop(extra);
    }
}

// ---------------------------------------------------------------------------------------
// Interactive use under a pty

/// Everything read from the pty master so far (a reader thread appends to it).
struct Pty {
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Pty {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.master.write_all(bytes).unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn expect(&self, needle: &str) {
        wait_for(
            Duration::from_secs(10),
            &format!("{needle:?} on the pty"),
            || self.text().contains(needle).then_some(()),
        );
    }
}

/// A process below `root` named `comm` that is its terminal's foreground process group.
fn foreground_process(root: i32, comm: &str) -> Option<i32> {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest: state ppid pgrp session tty_nr tpgid
        let name = head.split_once('(')?.1;
        if name == comm && fields.get(2) == fields.get(5) {
            return Some(pid);
        }
        queue.extend(children_of(pid));
    }
    None
}

/// Start `program args` as the leader of a new session whose controlling terminal is a
/// fresh pty (what a container runtime does with `-t`); the pty's output is collected.
fn spawn_in_pty(program: &Path, args: &[&str]) -> (Guarded, Pty) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut command = Command::new(program);
    command
        .args(args)
        .env("PS1", "$ ")
        .env("TERM", "dumb")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(slave);
    let master = std::fs::File::from(pty.master);
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let mut reader = master.try_clone().unwrap();
        let output = output.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // EIO once every slave fd is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    (Guarded(child), Pty { master, output })
}

#[test]
fn interactive_bash_gets_job_control_and_ctrl_c_as_pid1() {
    interactive_bash(Mode::Pid1);
}

#[test]
fn interactive_bash_gets_job_control_and_ctrl_c_as_subreaper() {
    interactive_bash(Mode::Subreaper);
}

fn interactive_bash(mode: Mode) {
    // `docker run -it IMAGE bash`: supd (or unshare, as the runtime) leads the session,
    // bash is supd's service.
    let supd_path = supd_bin();
    let mut args = vec![supd_path.to_str().unwrap()];
    args.extend(["--no-socket", "--", "bash", "--norc", "--noprofile", "-i"]);
    let (mut child, mut pty) = match mode {
        Mode::Pid1 => {
            let mut unshare_args = vec!["--pid", "--fork", "--mount-proc"];
            unshare_args.extend(args);
            spawn_in_pty(Path::new("unshare"), &unshare_args)
        }
        Mode::Subreaper => spawn_in_pty(&supd_path, &args[1..]),
    };
    // Where to look for bash's jobs: everything below the process we started.
    let supd = child.id() as i32;

    // $(( )) so that we match bash's answer, not the echo of what we typed.
    pty.write(b"echo ready$((20+1))\n");
    pty.expect("ready21");
    pty.write(b"[[ $- == *m* ]] && echo jobcontrol$((2+3))\n");
    pty.expect("jobcontrol5");
    let text = pty.text();
    assert!(!text.contains("no job control"), "{text}");
    assert!(
        !text.contains("cannot set terminal process group"),
        "{text}"
    );

    // Ctrl-C stops the foreground sleep, not bash.
    pty.write(b"sleep 1000\n");
    let sleep = wait_for(Duration::from_secs(10), "sleep in the foreground", || {
        foreground_process(supd, "sleep")
    });
    pty.write(b"\x03");
    wait_for(Duration::from_secs(10), "sleep to die", || {
        (!alive(sleep)).then_some(())
    });
    pty.write(b"echo alive$((40+2))\n");
    pty.expect("alive42");

    // Ctrl-Z stops the foreground job; bash takes the terminal back.
    pty.write(b"sleep 2000\n");
    let sleep = wait_for(
        Duration::from_secs(10),
        "sleep 2000 in the foreground",
        || foreground_process(supd, "sleep"),
    );
    pty.write(b"\x1a");
    pty.expect("Stopped");
    // `wait`: bash must have reaped the job before `exit`, or it refuses ("There are
    // stopped jobs").
    pty.write(b"kill -9 %1; wait %1; echo killed$((1+2))\n");
    pty.expect("killed3");
    wait_for(Duration::from_secs(10), "stopped sleep killed", || {
        (!alive(sleep)).then_some(())
    });

    pty.write(b"exit 3\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "supd did not exit after bash; pty: {}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(3),
        "{:?} {}",
        status.signal(),
        pty.text()
    );
}

// ---------------------------------------------------------------------------------------
// Shutdown and the request socket

#[test]
fn shutdown_terminates_running_callbacks_and_their_client_gets_the_exit() {
    let dir = TempDir::new("callbacks");
    let callbacks = dir.file("callbacks.sh");
    let started = dir.file("started");
    std::fs::write(
        &callbacks,
        format!(
            "CB_long() {{ trap 'exit 3' TERM; touch {}; sleep 1000 & wait; }}\n",
            started.display()
        ),
    )
    .unwrap();
    // Guarded: on failure, supd, its service, the callback and the client are killed.
    let mut supd = Guarded(
        Command::new(supd_bin())
            .args(["--grace", "5s", "--service", "svc", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(&callbacks)
            .args(["--", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let supd_pid = supd.id() as i32;
    wait_for(Duration::from_secs(10), "the socket", || {
        dir.file("svc-request.sock").exists().then_some(())
    });
    let mut client = Guarded(
        Command::new(supd_bin())
            .args(["ctl", "--socket-dir"])
            .arg(dir.path())
            .args(["send", "svc", "long"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(10), "the callback", || {
        started.exists().then_some(())
    });
    send(supd_pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(4);
    let status = loop {
        if let Some(status) = supd.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "supd still running");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143), "the service's SIGTERM death");
    let client_status = wait_for(Duration::from_secs(5), "the client to exit", || {
        client.try_wait().unwrap()
    });
    assert_eq!(
        client_status.code(),
        Some(3),
        "the callback's exit reached its client"
    );
    assert!(
        !dir.file("svc-request.sock").exists(),
        "socket file removed"
    );
}

#[test]
fn ctrl_z_stops_supd_run_from_an_interactive_shell() {
    // supd as a job of an interactive shell, stdin not a terminal: supd (not the service)
    // is the terminal's foreground group and receives Ctrl-Z/Ctrl-C itself. Ctrl-Z must
    // stop the service and supd (the shell gets its prompt back), `fg` continue both,
    // and Ctrl-C end the service (supd exits 130).
    let (mut shell, mut pty) = spawn_in_pty(Path::new("bash"), &["--norc", "--noprofile", "-i"]);
    let shell_pid = shell.id() as i32;
    pty.write(b"echo ready$((20+1))\n");
    pty.expect("ready21");
    let line = format!(
        "{} --no-socket -- sleep 1000 </dev/null\n",
        supd_bin().display()
    );
    pty.write(line.as_bytes());
    let supd = wait_for(Duration::from_secs(10), "supd in the foreground", || {
        foreground_process(shell_pid, "supd")
    });
    let service = wait_for(Duration::from_secs(10), "the service", || {
        children_of(supd).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    });
    pty.write(b"\x1a");
    pty.expect("Stopped");
    wait_for(Duration::from_secs(10), "both stopped", || {
        (state(supd) == Some('T') && state(service) == Some('T')).then_some(())
    });
    pty.write(b"fg\n");
    wait_for(Duration::from_secs(10), "both running again", || {
        (state(supd) == Some('S') && state(service) == Some('S')).then_some(())
    });
    wait_for(
        Duration::from_secs(10),
        "supd in the foreground again",
        || foreground_process(shell_pid, "supd"),
    );
    pty.write(b"\x03");
    wait_for(Duration::from_secs(10), "supd gone", || {
        (!alive(supd)).then_some(())
    });
    pty.write(b"echo status$?\n");
    pty.expect("status130");
    pty.write(b"exit 0\n");
    let _ = shell.wait();
}

// ---------------------------------------------------------------------------------------
// Logging and idleness

#[test]
fn quiet_by_default_and_says_subreaper_once_at_debug() {
    for mode in MODES {
        let (code, stderr) = run(mode, &["--", "true"]);
        assert_eq!(code, 0);
        assert_eq!(stderr, "", "{mode:?}: nothing logged by default");
        let (code, stderr) = run(mode, &["-vv", "--", "true"]);
        assert_eq!(code, 0);
        let said = stderr.matches("child subreaper").count();
        let expected = usize::from(mode == Mode::Subreaper);
        assert_eq!(said, expected, "{mode:?}: {stderr}");
        assert!(
            stderr.lines().all(|l| l.contains(" supd[")),
            "{mode:?}: {stderr}"
        );
    }
}

fn context_switches(pid: i32) -> u64 {
    ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
        .iter()
        .map(|f| status_field(pid, f).parse::<u64>().unwrap())
        .sum()
}

#[test]
fn idle_supd_makes_no_wakeups() {
    // Both modes without the socket, and once with the request socket served (the
    // default in a container): an idle listener must not wake supd either.
    let dir = TempDir::new("idle");
    for (mode, socket) in [
        (Mode::Pid1, false),
        (Mode::Subreaper, false),
        (Mode::Subreaper, true),
    ] {
        let mut supd = if socket {
            let child = Command::new(supd_bin())
                .args([
                    "--service",
                    "idle",
                    "--callbacks",
                    "/dev/null",
                    "--socket-dir",
                ])
                .arg(dir.path())
                .args(["--", "sleep", "1000"])
                .stdin(Stdio::null())
                .spawn()
                .expect("cannot start supd");
            let pid = child.id() as i32;
            let supd = Supd { child, pid, mode };
            wait_for(Duration::from_secs(10), "the socket", || {
                dir.file("idle-request.sock").exists().then_some(())
            });
            supd
        } else {
            Supd::start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            })
        };
        let service = supd.service();
        wait_for(Duration::from_secs(10), "service exec", || {
            std::fs::read_to_string(format!("/proc/{service}/comm"))
                .ok()
                .filter(|c| c.trim() == "sleep")
        });
        // A measuring window, not a synchronisation: any timer or polling loop would
        // wake supd at least once in it. (200 ms first for supd to reach its loop.)
        std::thread::sleep(Duration::from_millis(200));
        let before = context_switches(supd.pid);
        std::thread::sleep(Duration::from_millis(1500));
        let after = context_switches(supd.pid);
        assert_eq!(
            after, before,
            "{mode:?} socket={socket}: supd woke up while idle"
        );
        supd.signal(libc::SIGTERM);
        assert_eq!(supd.wait(Duration::from_secs(5)).code(), Some(143));
    }
}

#[test]
fn cmd_without_double_dash_like_docker_run_image_cmd() {
    // ENTRYPOINT ["/usr/sbin/supd"] + `docker run IMAGE sh -c ...`: no `--` in argv.
    for mode in MODES {
        let (code, _) = run(mode, &["sh", "-c", "exit 5"]);
        assert_eq!(code, 5, "{mode:?}");
    }
    // Options after CMD belong to CMD.
    let output = supd_command(Mode::Subreaper)
        .args([
            "--grace",
            "1s",
            "sh",
            "-c",
            "echo \"$@\"",
            "x",
            "-v",
            "--grace",
            "9",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "-v --grace 9\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn stop_signals_stop_the_service_never_supd() {
    // `docker kill -s TSTP` / `docker pause`-like use: TSTP, TTIN, TTOU are forwarded
    // (the service stops), CONT continues it; supd itself keeps running and reaping.
    for mode in MODES {
        for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            let mut supd = Supd::start(mode, |c| {
                c.args(["--", "sleep", "1000"]);
            });
            let service = supd.service();
            wait_for(Duration::from_secs(10), "service exec", || {
                std::fs::read_to_string(format!("/proc/{service}/comm"))
                    .ok()
                    .filter(|c| c.trim() == "sleep")
            });
            supd.signal(signal);
            wait_for(Duration::from_secs(10), "service stopped", || {
                (state(service) == Some('T')).then_some(())
            });
            assert_ne!(state(supd.pid), Some('T'), "{mode:?}: supd stopped itself");
            supd.signal(libc::SIGCONT);
            wait_for(Duration::from_secs(10), "service continued", || {
                (state(service) == Some('S')).then_some(())
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

#[test]
fn kill_at_end_of_grace_spares_processes_outside_supd() {
    // As a subreaper supd must never kill(-1): that would hit every process of the user.
    // A bystander started by the test itself (not below supd) must survive.
    let mut bystander = Guarded(Command::new("sleep").arg("1000").spawn().unwrap());
    let dir = TempDir::new("bystander");
    let ready = dir.file("ready");
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 1; done",
        ready.display()
    );
    let mut supd = Supd::start(Mode::Subreaper, |c| {
        c.args(["--grace", "300ms", "--", "sh", "-c", &script]);
    });
    wait_for(Duration::from_secs(10), "ready", || {
        ready.exists().then_some(())
    });
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
fn supd_as_a_background_job_leaves_the_terminal_to_the_shell() {
    let (mut shell, mut pty) = spawn_in_pty(Path::new("bash"), &["--norc", "--noprofile", "-i"]);
    let shell_pid = shell.id() as i32;
    pty.write(b"echo ready$((20+1))\n");
    pty.expect("ready21");
    let line = format!("{} --no-socket -- sleep 1000 &\n", supd_bin().display());
    pty.write(line.as_bytes());
    let supd = wait_for(Duration::from_secs(10), "supd", || {
        children_of(shell_pid).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "supd")
        })
    });
    let service = wait_for(Duration::from_secs(10), "the service", || {
        children_of(supd).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    });
    // The terminal's foreground group is still the shell's.
    let tpgid = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(5)?
            .parse()
            .ok()
    };
    assert_eq!(
        tpgid(service),
        Some(shell_pid),
        "the service took the terminal"
    );
    pty.write(b"echo alive$((40+2))\n");
    pty.expect("alive42");
    pty.write(b"kill %1; wait; echo done$((1+2))\n");
    pty.expect("done3");
    pty.write(b"exit 0\n");
    let _ = shell.wait();
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
            let mut supd = Supd::start(mode, |c| {
                c.args(["--grace", "5s", "--", "bash", "-c", &script]);
                c.stdout(Stdio::piped());
            });
            let mut line = String::new();
            let stdout = supd.child.stdout.take().expect("piped stdout");
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("ready line");
            assert_eq!(line, "ready\n");
            let service = supd.service();
            if stopped {
                send(service, libc::SIGSTOP);
                wait_for(Duration::from_secs(10), "service stopped", || {
                    (state(service) == Some('T')).then_some(())
                });
            }
            let started = Instant::now();
            supd.signal(libc::SIGTERM);
            let status = supd.wait(Duration::from_secs(4));
            assert_eq!(status.code(), Some(7), "{mode:?} stopped={stopped}");
            assert!(started.elapsed() < Duration::from_secs(3), "{mode:?}");
        }
    }
}
