//! Shutdown while a callback runs: one path signals what is below supd, so a callback's
//! TERM trap (its cleanup) runs exactly once.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::{children_of, stderr, supd_bin, Guarded, TempDir};

/// Poll `check` every 10 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A cleanup that takes a while, as real ones do (flush, unlock, upload): a second TERM
/// that arrives meanwhile would run it again.
const CALLBACKS: &str = r#"
CB_cleanup() {
    trap 'echo TERM >> "$MARKS/cleanup"; sleep 0.5; exit 0' TERM
    touch "$MARKS/ready"
    sleep 300 &
    wait
}
"#;

/// Exits on TERM at once, as most services do.
const SERVICE: &str = r#"
trap 'exit 0' TERM
echo $$ > "$MARKS/service.ready"
while :; do sleep 1000 & wait $!; done
"#;

/// Start supd (PID 1 of a fresh PID namespace, or run directly as a subreaper), start
/// the trapping callback, SIGTERM supd, and return supd's exit status and what the trap
/// wrote.
fn stop_with_a_callback_running(dir: &Path, pid1: bool) -> (ExitStatus, String, String) {
    let service = "term-once";
    let callbacks = dir.join("callbacks.sh");
    std::fs::write(&callbacks, CALLBACKS).unwrap();
    std::fs::write(dir.join("service.sh"), SERVICE).unwrap();
    let log_path = dir.join("supd.log");
    let mut command = if pid1 {
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(supd_bin());
        command
    } else {
        Command::new(supd_bin())
    };
    command
        .args(["-v", "--grace", "5s", "--service", service, "--socket-dir"])
        .arg(dir)
        .arg("--callbacks")
        .arg(&callbacks)
        .arg("--callback-lib")
        .arg(dir.join("no-lib.sh"))
        .arg("--")
        .arg("bash")
        .arg(dir.join("service.sh"))
        .env("MARKS", dir)
        .env_remove("SUPD_SOCKET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    // Guarded: on failure, supd and everything below it are killed.
    let mut child = Guarded(command.spawn().unwrap());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let socket = dir.join(format!("{service}-request.sock"));
    assert!(
        wait_for(Duration::from_secs(10), || socket.exists()
            && dir.join("service.ready").exists()),
        "supd did not come up; log:\n{}",
        log()
    );
    let out = Command::new(supd_bin())
        .arg("ctl")
        .arg("--socket-dir")
        .arg(dir)
        .args(["send", service, "cleanup", "--no-wait"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        wait_for(Duration::from_secs(10), || dir.join("ready").exists()),
        "the callback did not set its trap; log:\n{}",
        log()
    );
    let supd = if pid1 {
        let unshare = child.id() as i32;
        let mut supd = None;
        assert!(wait_for(Duration::from_secs(10), || {
            supd = children_of(unshare).first().copied();
            supd.is_some()
        }));
        supd.unwrap_or_default()
    } else {
        child.id() as i32
    };
    // SAFETY: plain syscall; `supd` is our unreaped child or its only child (unshare's).
    let rc = unsafe { libc::kill(supd, libc::SIGTERM) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "supd still running:\n{}", log());
        std::thread::sleep(Duration::from_millis(10));
    };
    let trapped = std::fs::read_to_string(dir.join("cleanup")).unwrap_or_default();
    (status, trapped, log())
}

#[test]
fn callback_term_trap_runs_once_at_shutdown() {
    // Both ways supd runs: PID 1 (the final SIGKILL is kill(-1)) and subreaper.
    let mut failures = Vec::new();
    for pid1 in [true, false] {
        let dir = TempDir::new(&format!("ctl-term-once-{pid1}"));
        let (status, trapped, log) = stop_with_a_callback_running(dir.path(), pid1);
        if status.code() != Some(0) || trapped != "TERM\n" {
            failures.push(format!(
                "pid1 {pid1}: status {status}, the trap wrote {trapped:?} (want it once); log:\n{log}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
