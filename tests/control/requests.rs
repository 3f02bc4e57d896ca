//! Requests: the legacy text form (half-close or newline) and the JSON form, arguments
//! passed verbatim, `wait:false`, the 5 s read deadline, one request a connection, a
//! callback signalling the service, and a broken or missing callbacks file.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{events, Server};
use crate::util::{fixture, lazy, stderr, stdout, wait_for, TempDir};

#[test]
fn legacy_half_close_ping_and_text_form() {
    let supd = Server::start("legacy", &[]);
    // The legacy scheduler: no newline, then half-close.
    let reply = events(&supd.raw(b"root ping", true));
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(reply[0]["event"], "pong");
    assert_eq!(reply[0]["v"], 1);
    assert_eq!(reply[0]["supd_pid"], supd.pid());

    // `forum nightly-backup` runs `CB_nightly_backup forum`.
    let reply = events(&supd.raw(b"forum nightly-backup", true));
    let kinds: Vec<&str> = reply.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["started", "stdout", "exit"], "{reply:?}");
    assert_eq!(reply[0]["action"], "nightly-backup");
    assert_eq!(reply[0]["v"], 1);
    assert_eq!(reply[1]["line"], "backup for forum");
    assert_eq!(reply[2]["code"], 0);
    let mark = std::fs::read_to_string(supd.marks().join("nightly-backup")).unwrap();
    assert_eq!(mark, "forum\n");

    // With a newline and no half-close; JSON form with arguments passed verbatim.
    let reply = events(&supd.raw(b"root ping\n", false));
    assert_eq!(reply[0]["event"], "pong");
    let json = br#"{"user":"forum","action":"hello","args":["a b","$(touch x)","*"],"wait":true}"#;
    let reply = events(&supd.raw(&[&json[..], b"\n"].concat(), false));
    let lines: Vec<&str> = reply.iter().filter_map(|e| e["line"].as_str()).collect();
    assert_eq!(
        lines[1..],
        [
            "arg:forum",
            "arg:a b",
            "arg:$(touch x)",
            "arg:*",
            "to stderr"
        ],
        "{reply:?}"
    );
    assert!(lines[0].starts_with("lib=yes service=svc-legacy action=hello supd_pid="));
    assert!(!Path::new("/x").exists() && !supd.marks().join("x").exists());
    // wait:false: `started`, then the connection closes; the callback runs on.
    let json = br#"{"user":"root","action":"marker","args":["nowait"],"wait":false}"#;
    let reply = events(&supd.raw(json, true));
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(reply[0]["event"], "started");
    let marker = supd.marks().join("marker-nowait");
    wait_for(
        Duration::from_secs(10),
        "the no-wait callback's marker",
        || marker.exists(),
    );

    // A client that starts a request and goes quiet is answered after 5 s.
    let start = Instant::now();
    let reply = events(&supd.raw(b"root pi", false));
    let waited = start.elapsed();
    assert_eq!(reply[0]["kind"], "bad-request", "{reply:?}");
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    // One request a connection: a second line is never read, let alone run.
    let second = supd.marks().join("second-line");
    let request = format!("root hello\ntouch {}\n", second.display());
    let reply = events(&supd.raw(request.as_bytes(), true));
    assert_eq!(reply.last().unwrap()["code"], 0, "{reply:?}");
    assert!(!second.exists());
    // The output also went to supd's log, with the action.
    assert!(
        supd.log().contains("callback output action=hello"),
        "{}",
        supd.log()
    );
}

#[test]
fn callback_usr1_reaches_the_service() {
    let supd = Server::start("usr1", &[]);
    let out = supd.ctl_output(&["send", &supd.service, "usr1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(
        Duration::from_secs(5),
        lazy(|| {
            format!(
                "USR1 at the service, which got: {:?}\n{}",
                supd.service_signals(),
                supd.log()
            )
        }),
        || supd.service_signals().contains("USR1"),
    );
}

#[test]
fn broken_or_missing_callbacks_file() {
    let dir = TempDir::new("broken");
    // The file fails while being sourced: internal error (70), with its last stderr line.
    let broken = fixture("control/broken.sh");
    let supd = Server::start_in(
        dir,
        "svc-broken",
        &["--callbacks", broken.to_str().unwrap()],
    );
    let out = supd.ctl_output(&["send", &supd.service, "fine"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed to load (exit 3)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let out = supd.ctl_output(&["--json", "status", &supd.service]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["last"][0]["error"], "internal");
    drop(supd);

    // No callbacks file at all: every action is unknown (64), the built-ins still work.
    let dir = TempDir::new("nofile");
    let missing = dir.path().join("missing.sh");
    let supd = Server::start_in(
        dir,
        "svc-nofile",
        &["--callbacks", missing.to_str().unwrap()],
    );
    let out = supd.ctl_output(&["send", &supd.service, "fine"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = supd.ctl_output(&["list", &supd.service]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()));
}
