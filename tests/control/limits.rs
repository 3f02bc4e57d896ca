//! Limits: `--max-callbacks`, and one `list` at a time.

use std::process::Stdio;
use std::time::Duration;

use super::Server;
use crate::util::{children_of, lazy, stderr, stdout, wait_for, TempDir};

#[test]
fn max_callbacks_limits_concurrency() {
    let supd = Server::start("max", &["--max-callbacks", "1"]);
    let (mut first, line) = supd.ctl_first_line(&["send", &supd.service, "slow"]);
    assert_eq!(line, "before\n");
    // A different action, over the limit: busy, with the reason.
    let out = supd.ctl_output(&["send", &supd.service, "exit", "0"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-callbacks 1"),
        "{}",
        stderr(&out)
    );
    // Built-ins do not count.
    let out = supd.ctl_output(&["ping", &supd.service]);
    assert_eq!(out.status.code(), Some(0));
    let out = supd.ctl_output(&["--json", "status", &supd.service]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["running"][0]["action"], "slow");
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let out = supd.ctl_output(&["send", &supd.service, "exit", "0"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn one_list_at_a_time() {
    // `list` starts a bash that sources the callbacks file; it is not a callback, so
    // --max-callbacks does not bound it: a second `list` while one runs is busy (75)
    // instead of another bash. The file here takes 1 s to source.
    let dir = TempDir::new("slowlist");
    let slow = dir.path().join("slow.sh");
    std::fs::write(&slow, "sleep 1\nCB_one() { :; }\n").unwrap();
    let supd = Server::start_in(
        dir,
        "svc-slowlist",
        &["--callbacks", slow.to_str().unwrap()],
    );
    let first = supd
        .ctl()
        .args(["list", &supd.service])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first list's bash is running when supd has two children (service + bash).
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the first list's bash; log:\n{}", supd.log())),
        || children_of(supd.pid() as i32).len() >= 2,
    );
    let second = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(stdout(&first).trim(), "one");
    let again = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}
