//! Large outputs: a client that reads gets every line and the exit status whatever the
//! volume (backpressure, not loss), supd's memory stays bounded, and only a client that
//! stopped reading altogether is dropped, without stopping its callback.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{events, Server};
use crate::util::proc::status_kib;
use crate::util::{lazy, stderr, stdout, wait_for, TempDir};

const CALLBACKS: &str = "CB_seq() { seq 1 \"$2\"; }\n";

fn start(tag: &str) -> Server {
    let dir = TempDir::new(tag);
    let callbacks = dir.write("volume.sh", CALLBACKS);
    Server::start_in(
        dir,
        &format!("svc-{tag}"),
        &["--callbacks", callbacks.to_str().unwrap()],
    )
}

/// Samples a process's VmRSS every 10 ms until dropped; the highest seen, in KiB.
struct RssWatch {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn new(pid: i32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                m.fetch_max(status_kib(pid, "VmRSS:"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn max_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.max.load(Ordering::SeqCst)
    }
}

#[test]
fn every_line_of_a_200000_line_output_arrives_rss_bounded() {
    // Before backpressure: supctl exited 70 ("connection closed before the request
    // finished") after a few thousand lines, dropped as "too slow" although it read as
    // fast as it could.
    const LINES: usize = 200_000;
    let supd = start("volume");
    let rss = RssWatch::new(supd.pid() as i32);
    let out = supd
        .ctl()
        .args(["send", &supd.service, "seq", &LINES.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let max_rss = rss.max_kib();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} lines; stderr: {}",
        lines.len(),
        stderr(&out)
    );
    assert_eq!(lines.len(), LINES, "stderr: {}", stderr(&out));
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, (i + 1).to_string(), "line {}", i + 1);
    }
    eprintln!("supd VmRSS at most {max_rss} KiB while relaying {LINES} lines");
    assert!(max_rss < 20 * 1024, "supd VmRSS reached {max_rss} KiB");
    assert!(!supd.log().contains("dropped it"), "{}", supd.log());
}

#[test]
fn a_client_that_pauses_then_reads_gets_everything() {
    // A client that reads nothing for 2 s (a busy scheduler, a paused pipe) while 200,000
    // lines (~7 MB of events) are produced: the callback waits for it, nothing is lost.
    // Before backpressure it was dropped once 1 MiB was queued.
    const LINES: usize = 200_000;
    let supd = start("pause");
    let stream = UnixStream::connect(supd.socket()).unwrap();
    (&stream)
        .write_all(format!("root seq {LINES}\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    let mut line = String::new();
    let mut stdout_lines = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with(r#"{"event":"stdout""#) {
            stdout_lines += 1;
        } else {
            reply.push_str(&line);
        }
    }
    assert_eq!(stdout_lines, LINES, "log:\n{}", supd.log());
    let events = events(&reply);
    assert_eq!(events[0]["event"], "started", "{reply}");
    assert_eq!(events.last().unwrap()["event"], "exit", "{reply}");
    assert_eq!(events.last().unwrap()["code"], 0, "{reply}");
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_callback_ends() {
    // Backpressure pauses the callback while the client's queue is full; a client that
    // makes no progress at all for 5 s is dropped, and the callback runs to its end.
    let supd = start("stuck");
    let stream = UnixStream::connect(supd.socket()).unwrap();
    (&stream).write_all(b"root seq 300000\n").unwrap();
    let last_seq = || {
        let out = supd.ctl_output(&["--json", "status", &supd.service]);
        // Polled: a status call that fails on a loaded machine is tried again.
        let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).ok()?;
        status["last"]
            .as_array()
            .and_then(|last| last.iter().find(|r| r["action"] == "seq").cloned())
    };
    let result = wait_for(
        Duration::from_secs(60),
        lazy(|| format!("the seq run to end; log:\n{}", supd.log())),
        last_seq,
    );
    assert_eq!(result["code"], 0, "{result}");
    assert!(
        supd.log()
            .contains("client stopped reading: dropped it, the callback runs on"),
        "{}",
        supd.log()
    );
    // The connection was closed: what is left to read ends without the exit event.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &stream, &mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains(r#""event":"exit""#), "got the exit event");
}
