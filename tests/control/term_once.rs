//! Shutdown while a callback runs: one path signals what is below supd, so a callback's
//! TERM trap (its cleanup) runs exactly once.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::util::{children_of, lazy, send, stderr, supd_bin, wait_for, Guarded, TempDir};

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
    let mut child = Guarded::spawn(&mut command);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let socket = dir.join(format!("{service}-request.sock"));
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("supd to come up; log:\n{}", log())),
        || socket.exists() && dir.join("service.ready").exists(),
    );
    let out = Command::new(supd_bin())
        .arg("ctl")
        .arg("--socket-dir")
        .arg(dir)
        .args(["send", service, "cleanup", "--no-wait"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the callback to set its trap; log:\n{}", log())),
        || dir.join("ready").exists(),
    );
    let supd = if pid1 {
        let unshare = child.pid();
        wait_for(Duration::from_secs(10), "unshare's child, supd", || {
            children_of(unshare).first().copied()
        })
    } else {
        child.pid()
    };
    // `supd` is our unreaped child or its only child (unshare's): its pid is not reused.
    send(supd, libc::SIGTERM);
    let status = child.wait_exit(
        Duration::from_secs(10),
        lazy(|| format!("supd to exit:\n{}", log())),
    );
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
