//! Shutdown: a SIGTERMed supd terminates the callbacks still running, and their clients
//! get the callbacks' exit.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Server;
use crate::util::{stderr, wait_for, Guarded, TempDir};

#[test]
fn shutdown_terminates_running_callbacks() {
    let mut supd = Server::start("shutdown", &["--grace", "5s"]);
    let out = supd.ctl_output(&["send", &supd.service, "trap-term", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ready = supd.marks().join("trap-ready");
    wait_for(Duration::from_secs(5), "the callback's TERM trap", || {
        ready.exists()
    });
    let start = Instant::now();
    let status = supd.stop();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}\n{}",
        start.elapsed(),
        supd.log()
    );
    assert_eq!(status.code(), Some(0), "{}", supd.log());
    let term = std::fs::read_to_string(supd.marks().join("term")).unwrap_or_default();
    assert_eq!(term, "TERM\n", "{}", supd.log());
    assert!(!supd.socket().exists());
}

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
    let mut supd = Guarded::spawn(
        crate::util::supd()
            .args(["--grace", "5s", "--service", "svc", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(&callbacks)
            .args(["--", "sleep", "1000"])
            .stdin(Stdio::null()),
    );
    wait_for(Duration::from_secs(10), "the socket", || {
        dir.file("svc-request.sock").exists()
    });
    let mut client = Guarded::spawn(
        crate::util::supd()
            .args(["ctl", "--socket-dir"])
            .arg(dir.path())
            .args(["send", "svc", "long"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for(Duration::from_secs(10), "the callback", || started.exists());
    let status = supd.terminate(Duration::from_secs(4), "supd to stop");
    assert_eq!(status.code(), Some(143), "the service's SIGTERM death");
    let client_status = client.wait_exit(Duration::from_secs(5), "the client to exit");
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
