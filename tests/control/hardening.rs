//! Smaller hardening items of issue 9: a timed-out callback takes what it started with
//! it, `list` reports a callbacks file that fails to load, `supctl services` tells "no
//! permission" from "down", and bad command lines and requests get clear usage errors.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use super::{events, Server};
use crate::util::{alive, lazy, stderr, stdout, supd, supd_bin, wait_for, TempDir};

const CALLBACKS: &str = r#"
# Starts a setsid'd daemon, a background job, and a subshell whose child is setsid'd
# too; records their pids, then hangs.
CB_daemons() {
    setsid sleep 1000 & echo $! > "$MARKS/setsid.pid"
    sleep 1001 & echo $! > "$MARKS/job.pid"
    ( setsid sleep 1002 & echo $! > "$MARKS/nested.pid"; wait ) &
    while [ ! -s "$MARKS/nested.pid" ]; do sleep 0.01; done
    echo ready
    sleep 1003
}
CB_many() { echo "$#"; }
"#;

fn start(tag: &str, callbacks: &str, extra: &[&str]) -> Server {
    let dir = TempDir::new(tag);
    let file = dir.write("callbacks.sh", callbacks);
    let mut args = vec!["--callbacks", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start_in(dir, &format!("svc-{tag}"), &args)
}

#[test]
fn a_timed_out_callback_takes_its_setsid_daemons_and_jobs_with_it() {
    // Before: only the callback's process group was killed; the `setsid sleep 1000 &`
    // (a session and group of its own) outlived the timeout.
    let supd = start("daemons", CALLBACKS, &["--callback-timeout", "1s"]);
    let out = supd.ctl_output(&["send", &supd.service, "daemons"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(stdout(&out).contains("ready"), "{}", stdout(&out));
    for name in ["setsid", "job", "nested"] {
        let text = std::fs::read_to_string(supd.marks().join(format!("{name}.pid"))).unwrap();
        let pid: i32 = text.trim().parse().unwrap();
        wait_for(
            Duration::from_secs(5),
            lazy(|| {
                format!(
                    "the {name} sleep (pid {pid}) to be killed; log:\n{}",
                    supd.log()
                )
            }),
            || !alive(pid),
        );
    }
}

#[test]
fn list_reports_a_callbacks_file_that_fails_to_load() {
    // Before: `list` answered every function defined before the syntax error (exit 0),
    // while each of them then failed `internal`.
    let broken = "CB_first() { :; }\nCB_second() { if; }\nCB_third() { :; }\n";
    let supd = start("syntax", broken, &[]);
    let out = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(out.status.code(), Some(70), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("internal"), "{}", stderr(&out));
    assert!(stderr(&out).contains("syntax error"), "{}", stderr(&out));
    let out = supd.ctl_output(&["send", &supd.service, "first"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
}

#[test]
fn services_tells_no_permission_from_down() {
    // The socket is 0660 root:root: uid 65534 cannot connect (EACCES). Before, supctl
    // services showed that as "down".
    let supd = start("noperm", CALLBACKS, &[]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(supd_bin())
        .args(["ctl", "--socket-dir"])
        .arg(supd.marks())
        .arg("services")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}\tno-permission\n", supd.service),
        "{}",
        stderr(&out)
    );
    // Root still sees it up.
    let out = supd.ctl_output(&["services"]);
    assert_eq!(stdout(&out), format!("{}\tup\n", supd.service));
}

#[test]
fn socket_mode_beyond_0777_and_bad_service_names_are_usage_errors() {
    // Before: --socket-mode 7777 was accepted (setuid, setgid and sticky on a socket).
    let dir = TempDir::new("usage");
    for args in [
        vec!["--socket-mode", "7777"],
        vec!["--socket-mode", "1777"],
        vec!["--socket-mode", "0o4660"],
        vec!["--service", "bad/name"],
        vec!["--service", ".."],
    ] {
        let out = supd()
            .args(&args)
            .arg("--socket-dir")
            .arg(dir.path())
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = supd()
        .args(["--socket-mode", "0777", "--socket-dir"])
        .arg(dir.path())
        .args(["--service", "fine", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn too_many_arguments_and_too_long_requests_say_so() {
    let supd = start("args", CALLBACKS, &[]);
    // A text request with 2,000 arguments: the server says 2000, not "65".
    let mut stream = UnixStream::connect(supd.socket()).unwrap();
    let request = format!("root many {}\n", vec!["a"; 2000].join(" "));
    // (Under the 4096-byte limit, which is checked first.)
    assert!(request.len() <= 4096, "{}", request.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let event = &events(&reply)[0];
    assert_eq!(event["kind"], "bad-request", "{reply}");
    assert_eq!(
        event["message"], "too many arguments (2000, at most 64)",
        "{reply}"
    );
    // supctl: 2,000 arguments, and 64 arguments too long for one request, are usage
    // errors (64) with a clear message, before anything is sent.
    let many: Vec<String> = (1..=2000).map(|n| n.to_string()).collect();
    let out = supd
        .ctl()
        .args(["send", &supd.service, "many"])
        .args(&many)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too many arguments (2000, at most 64)"),
        "{}",
        stderr(&out)
    );
    let long: Vec<String> = (0..64).map(|_| "x".repeat(100)).collect();
    let out = supd
        .ctl()
        .args(["send", &supd.service, "many"])
        .args(&long)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("request too long"),
        "{}",
        stderr(&out)
    );
    // Nothing ran.
    assert!(!supd.log().contains("callback started"), "{}", supd.log());
}
