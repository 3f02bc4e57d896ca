//! Interactive use under a pty: bash as the service gets job control and Ctrl-C, and
//! supd run from an interactive shell (in the foreground or as a background job)
//! behaves like any job.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::time::Duration;

use crate::util::proc::{child_running, foreground_process, stat, state};
use crate::util::{alive, lazy, supd_bin, wait_for, Guarded, Mode};

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
            format!("{needle:?} on the pty"),
            || self.text().contains(needle),
        );
    }
}

/// Start `command` as the leader of a new session whose controlling terminal is a fresh
/// pty (what a container runtime does with `-t`); the pty's output is collected.
fn spawn_in_pty(mut command: Command) -> (Guarded, Pty) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    command
        .env("PS1", "$ ")
        .env("TERM", "dumb")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: the closure runs in the forked child before exec, so it may only make
    // async-signal-safe calls: setsid and ioctl are, and it allocates nothing
    // (last_os_error only reads errno).
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Guarded::spawn(&mut command);
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
    (child, Pty { master, output })
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
    let mut command = mode.command();
    command.args(["--no-socket", "--", "bash", "--norc", "--noprofile", "-i"]);
    let (mut child, mut pty) = spawn_in_pty(command);
    // Where to look for bash's jobs: everything below the process we started.
    let supd = child.pid();

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
    wait_for(Duration::from_secs(10), "sleep to die", || !alive(sleep));
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
        !alive(sleep)
    });

    pty.write(b"exit 3\n");
    let status = child.wait_exit(
        Duration::from_secs(10),
        lazy(|| format!("supd to exit after bash; pty: {}", pty.text())),
    );
    assert_eq!(
        status.code(),
        Some(3),
        "{:?} {}",
        status.signal(),
        pty.text()
    );
}

#[test]
fn ctrl_z_stops_supd_run_from_an_interactive_shell() {
    // supd as a job of an interactive shell, stdin not a terminal: supd (not the service)
    // is the terminal's foreground group and receives Ctrl-Z/Ctrl-C itself. Ctrl-Z must
    // stop the service and supd (the shell gets its prompt back), `fg` continue both,
    // and Ctrl-C end the service (supd exits 130).
    let (mut shell, mut pty) = interactive_shell();
    let shell_pid = shell.pid();
    let line = format!(
        "{} --no-socket -- sleep 1000 </dev/null\n",
        supd_bin().display()
    );
    pty.write(line.as_bytes());
    let supd = wait_for(Duration::from_secs(10), "supd in the foreground", || {
        foreground_process(shell_pid, "supd")
    });
    let service = wait_for(Duration::from_secs(10), "the service", || {
        child_running(supd, "sleep")
    });
    pty.write(b"\x1a");
    pty.expect("Stopped");
    wait_for(Duration::from_secs(10), "both stopped", || {
        state(supd) == Some('T') && state(service) == Some('T')
    });
    pty.write(b"fg\n");
    wait_for(Duration::from_secs(10), "both running again", || {
        state(supd) == Some('S') && state(service) == Some('S')
    });
    wait_for(
        Duration::from_secs(10),
        "supd in the foreground again",
        || foreground_process(shell_pid, "supd"),
    );
    pty.write(b"\x03");
    wait_for(Duration::from_secs(10), "supd gone", || !alive(supd));
    pty.write(b"echo status$?\n");
    pty.expect("status130");
    pty.write(b"exit 0\n");
    let _ = shell.wait();
}

#[test]
fn supd_as_a_background_job_leaves_the_terminal_to_the_shell() {
    let (mut shell, mut pty) = interactive_shell();
    let shell_pid = shell.pid();
    let line = format!("{} --no-socket -- sleep 1000 &\n", supd_bin().display());
    pty.write(line.as_bytes());
    let supd = wait_for(Duration::from_secs(10), "supd", || {
        child_running(shell_pid, "supd")
    });
    let service = wait_for(Duration::from_secs(10), "the service", || {
        child_running(supd, "sleep")
    });
    // The terminal's foreground group is still the shell's.
    assert_eq!(
        stat(service).map(|s| s.tpgid),
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

/// `bash -i` (without the user's startup files) in a pty, once it answers.
fn interactive_shell() -> (Guarded, Pty) {
    let mut command = Command::new("bash");
    command.args(["--norc", "--noprofile", "-i"]);
    let (shell, mut pty) = spawn_in_pty(command);
    pty.write(b"echo ready$((20+1))\n");
    pty.expect("ready21");
    (shell, pty)
}

#[test]
fn ctrl_z_on_a_service_holding_the_terminal_gives_the_shell_its_prompt() {
    // supd as a job of an interactive shell, stdin the terminal: the service's group
    // holds the terminal, so Ctrl-Z stops the service, not supd. supd must follow
    // (the shell prints its prompt), `fg` must give the service the terminal again, and
    // Ctrl-C still end it.
    let (mut shell, mut pty) = interactive_shell();
    let shell_pid = shell.pid();
    let line = format!("{} --no-socket -- sleep 1000\n", supd_bin().display());
    pty.write(line.as_bytes());
    let supd = wait_for(Duration::from_secs(10), "supd", || {
        child_running(shell_pid, "supd")
    });
    let service = wait_for(Duration::from_secs(10), "the service", || {
        child_running(supd, "sleep")
    });
    wait_for(
        Duration::from_secs(10),
        "the service holds the terminal",
        || stat(service).is_some_and(|s| s.tpgid == service),
    );
    pty.write(b"\x1a");
    pty.expect("Stopped");
    wait_for(Duration::from_secs(10), "both stopped", || {
        state(supd) == Some('T') && state(service) == Some('T')
    });
    // The prompt is back: the shell runs commands again.
    pty.write(b"echo prompt$((6*7))\n");
    pty.expect("prompt42");
    pty.write(b"fg\n");
    wait_for(Duration::from_secs(10), "both running again", || {
        state(supd) == Some('S') && state(service) == Some('S')
    });
    wait_for(
        Duration::from_secs(10),
        "the service holds the terminal again",
        || stat(service).is_some_and(|s| s.tpgid == service),
    );
    pty.write(b"\x03");
    wait_for(Duration::from_secs(10), "supd gone", || !alive(supd));
    pty.write(b"echo status$?\n");
    pty.expect("status130");
    pty.write(b"exit 0\n");
    let _ = shell.wait();
}
