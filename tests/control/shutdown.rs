//! Shutdown: a SIGTERMed supd terminates the callbacks still running, and their clients
//! get the callbacks' exit.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Server;
use crate::util::proc::status_field;
use crate::util::{alive, stderr, wait_for, Guarded, TempDir};

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
    // The run had no client (`--no-wait`): the server's thread stayed for it anyway,
    // and recorded its end.
    assert!(
        supd.log().contains("callback finished action=trap-term"),
        "{}",
        supd.log()
    );
}

#[test]
fn shutdown_terminates_running_callbacks_and_their_client_gets_the_exit() {
    let dir = TempDir::new("callbacks");
    let callbacks = dir.file("callbacks.sh");
    let started = dir.file("started");
    std::fs::write(
        &callbacks,
        format!(
            // Ready once its child runs (one forked after supd's shutdown walk would
            // get no TERM: the walk sees what exists).
            "CB_long() {{ trap 'exit 3' TERM; sleep 1000 & touch {}; wait; }}\n",
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

/// supd for service "svc" in `dir`, its service `script` (bash), a no-op callback.
fn supd_for(dir: &TempDir, script: &str) -> Guarded {
    let callbacks = dir.file("callbacks.sh");
    std::fs::write(&callbacks, "CB_noop() { :; }\n").unwrap();
    Guarded::spawn(
        crate::util::supd()
            .args(["--grace", "20s", "--service", "svc", "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(&callbacks)
            .args(["--", "bash", "-c", script])
            .stdin(Stdio::null()),
    )
}

fn ctl(dir: &TempDir, args: &[&str]) -> std::process::Output {
    crate::util::supd()
        .args(["ctl", "--socket-dir"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn term_stops_taking_requests_at_once_and_a_rolling_update_takes_the_socket() {
    // The service stops only when the test says so. From the TERM on, supd takes no
    // request (the socket is gone at once, as a draining server stops listening), its
    // idle server thread leaves, and the next supd for the same service (a rolling
    // update) gets the socket and its lock while the first one still waits for its
    // service.
    let dir = TempDir::new("drain");
    let socket = dir.file("svc-request.sock");
    let ready = dir.file("ready");
    let go = dir.file("go");
    let mut old = supd_for(
        &dir,
        &format!(
            "trap 'while [ ! -e {g} ]; do sleep 0.05; done; exit 0' TERM; touch {r}; \
             while :; do sleep 1000 & wait $!; done",
            g = go.display(),
            r = ready.display()
        ),
    );
    wait_for(Duration::from_secs(10), "the socket", || {
        socket.exists() && ready.exists()
    });
    assert_eq!(ctl(&dir, &["send", "svc", "noop"]).status.code(), Some(0));
    assert_eq!(status_field(old.pid(), "Threads:"), "2");
    old.signal(libc::SIGTERM);
    wait_for(Duration::from_secs(1), "the socket to go", || {
        !socket.exists()
    });
    wait_for(
        Duration::from_secs(1),
        "the server's thread to leave",
        || status_field(old.pid(), "Threads:") == "1",
    );
    let refused = ctl(&dir, &["send", "svc", "noop"]);
    assert_eq!(refused.status.code(), Some(69), "{}", stderr(&refused));
    let mut new = supd_for(&dir, "sleep 1000");
    wait_for(Duration::from_secs(1), "the next supd's socket", || {
        socket.exists()
    });
    let pong = ctl(&dir, &["ping", "svc"]);
    let pong = String::from_utf8_lossy(&pong.stdout);
    assert!(
        pong.contains(&format!("pid {} ", new.pid())),
        "the next supd answers: {pong}"
    );
    assert!(
        alive(old.pid()),
        "measured while the first supd still stops"
    );
    std::fs::write(&go, "").unwrap();
    let status = old.wait_exit(Duration::from_secs(5), "the first supd to stop");
    assert_eq!(status.code(), Some(0));
    assert!(
        socket.exists(),
        "the first supd left the next one's socket alone"
    );
    new.terminate(Duration::from_secs(5), "the next supd to stop");
}
