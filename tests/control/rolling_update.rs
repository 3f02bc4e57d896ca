//! A rolling update: a second supd for the same service (one shared socket dir) finds
//! the lock held, waits, and serves within 1 s of the first one leaving.

use std::time::{Duration, Instant};

use super::{log_in, Server};
use crate::util::{lazy, wait_for, TempDir};

#[test]
fn the_second_supd_serves_within_a_second_of_the_first_leaving() {
    let dir = TempDir::new("rolling");
    let service = "svc-rolling";
    let mut first = Server::start_in(dir, service, &[]);
    let socket = first.socket();
    let mut second = Server::spawn(first.dir.path(), service, &[]);
    let dir = first.dir.path().to_path_buf();
    wait_for(
        Duration::from_secs(10),
        lazy(|| {
            format!(
                "the second supd to wait for the lock; log:\n{}",
                log_in(&dir)
            )
        }),
        || log_in(&dir).contains("is live"),
    );
    // While both run, the first one serves.
    assert_eq!(ping_pid(&socket), Some(first.pid()));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(ping_pid(&socket), Some(first.pid()));

    let status = first.stop();
    assert_eq!(status.code(), Some(0), "{}", log_in(&dir));
    let left = Instant::now();
    let second_pid = second.id();
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the second supd to serve; log:\n{}", log_in(&dir))),
        || ping_pid(&socket) == Some(second_pid),
    );
    let took = left.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the second supd served {took:?} after the first left; log:\n{}",
        log_in(&dir)
    );
    assert!(log_in(&dir).contains("taking it over"), "{}", log_in(&dir));
    second.terminate(Duration::from_secs(10), "the second supd to stop");
    assert!(!socket.exists(), "the second supd left its socket behind");
}

/// The supd pid a raw ping on `socket` gets back, if any.
fn ping_pid(socket: &std::path::Path) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"root ping\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let event: serde_json::Value = serde_json::from_str(reply.lines().next()?).ok()?;
    event["supd_pid"].as_u64().map(|p| p as u32)
}
