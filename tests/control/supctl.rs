//! supctl: live streaming, and every exit code it maps (the callback's, 64, 69, 75, 124
//! and usage), `status`, `list`, `ping` and `services`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;
use crate::util::proc::group_members;
use crate::util::{lazy, stderr, stdout, supd_bin, wait_for, TempDir};

/// Run `supctl ARGS` (a symlink named supctl) and time each stdout line.
fn timed_lines(mut command: Command) -> (Vec<(Duration, String)>, i32) {
    let start = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push((start.elapsed(), line.unwrap()));
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (lines, code)
}

#[test]
fn supctl_streams_live_and_maps_exit_codes() {
    let supd = Server::start("supctl", &["--callback-timeout", "3s"]);
    let bin = TempDir::new("supctl-bin");
    let supctl = bin.path().join("supctl");
    std::os::unix::fs::symlink(supd_bin(), &supctl).unwrap();
    let dir = supd.dir.path().to_str().unwrap().to_string();
    let service = supd.service.clone();

    // Live streaming, through the supctl name: "before" arrives before the 2 s sleep ends.
    let mut command = Command::new(&supctl);
    command.args(["--socket-dir", &dir, "send", &service, "slow"]);
    let (lines, code) = timed_lines(command);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].1, "before");
    assert!(lines[0].0 < Duration::from_millis(1500), "{lines:?}");
    assert!(lines[1].0 >= Duration::from_secs(2), "{lines:?}");

    // Exit codes, via both faces.
    for code in ["0", "3", "255"] {
        let out = Command::new(&supctl)
            .args(["--socket-dir", &dir, "send", &service, "exit", code])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code.parse().unwrap()),
            "{}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), format!("exiting with {code}\n"));
        let out = supd.ctl_output(&["send", &service, "exit", code]);
        assert_eq!(out.status.code(), Some(code.parse().unwrap()));
    }
    // stderr lines go to stderr.
    let out = supd.ctl_output(&["send", &service, "hello", "x"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("to stderr") && !stdout(&out).contains("to stderr"));

    // Unknown action and bad requests: 64.
    let out = supd.ctl_output(&["send", &service, "no-such-thing"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown-action"), "{}", stderr(&out));
    let out = supd.ctl_output(&["send", &service, "Bad;Name"]);
    assert_eq!(out.status.code(), Some(64));
    // Unreachable socket: 69.
    let out = supd.ctl_output(&["send", "nobody-here", "slow"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    // Usage: 2.
    let out = supd.ctl_output(&["send"]);
    assert_eq!(out.status.code(), Some(2));

    // The same action twice at once: 75 for the second.
    let mut first = supd
        .ctl()
        .args(["send", &service, "slow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    first_out.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");
    let out = supd.ctl_output(&["send", &service, "slow"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("busy"));
    assert_eq!(first.wait().unwrap().code(), Some(0));

    // Past --callback-timeout (3 s): 124, and nothing of its process group survives.
    let started = Instant::now();
    let out = supd.ctl_output(&["send", &service, "hang"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
    let pgid: i32 = std::fs::read_to_string(supd.marks().join("hang.pgid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        Duration::from_secs(2),
        lazy(|| format!("left in group {pgid}: {:?}", group_members(pgid))),
        || group_members(pgid).is_empty(),
    );
    // A client-side --timeout also gives 124 (the callback runs on).
    let out = supd.ctl_output(&["send", &service, "slow", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(124));

    // status remembers the last results; list shows the callbacks.
    let out = supd.ctl_output(&["--json", "status", &service]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["event"], "status");
    assert_eq!(status["service_pid"], supd.service_pid());
    let hang = status["last"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "hang")
        .unwrap();
    assert_eq!(hang["error"], "timeout");
    let out = supd.ctl_output(&["list", &service]);
    let list = stdout(&out);
    for action in [
        "exit",
        "flood",
        "hang",
        "hello",
        "nightly-backup",
        "slow",
        "trap-term",
    ] {
        assert!(list.lines().any(|l| l == action), "{action} not in {list}");
    }
    let out = supd.ctl_output(&["ping", &service]);
    assert_eq!(out.status.code(), Some(0));
    let out = supd.ctl_output(&["services"]);
    assert_eq!(stdout(&out), format!("{service}\tup\n"));
}
