//! Exit statuses: the service's code or 128+signal, exec failures, `--remap-exit`, usage
//! errors, the default entrypoint, and a CMD without `--`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{run, supd_command};
use crate::util::{supd_bin, Guarded, Mode, TempDir, MODES};

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
            // Guarded: a hung supd (and its tree) is killed when the assertion fails.
            let mut child = Guarded::spawn(
                supd_command(mode)
                    .args(["--", "sh", "-c", &format!("kill -{n} $$; sleep 5")])
                    .stdin(Stdio::null()),
            );
            let status = child.wait_exit(Duration::from_secs(4), "supd to exit");
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
    let dir = Path::new(supd::init::DEFAULT_ENTRYPOINT).parent().unwrap();
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
        e = supd::init::DEFAULT_ENTRYPOINT
    ));
    assert_eq!(code, 42, "the default entrypoint ran: {stderr}");
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

#[test]
fn durations_that_sum_past_u64_are_usage_errors() {
    // Each term fits; their sum does not fit a Duration: once a panic (exit 134).
    let huge = "18446744073709551s".repeat(1001);
    let (code, stderr) = run(Mode::Subreaper, &["--grace", &huge, "--", "true"]);
    assert_eq!(code, 2, "--grace: {stderr}");
    assert!(stderr.contains("too large"), "{stderr}");
    let env = Command::new(supd_bin())
        .args(["--no-socket", "--", "true"])
        .env("SUPD_GRACE", &huge)
        .output()
        .unwrap();
    assert_eq!(env.status.code(), Some(2), "SUPD_GRACE");
    let scheduler = Command::new(supd_bin())
        .args([
            "scheduler",
            "--check",
            "--file",
            "/dev/null",
            "--retry-for",
            &huge,
        ])
        .output()
        .unwrap();
    assert_eq!(scheduler.status.code(), Some(2), "--retry-for");
}
