//! Clients that misbehave: killed, vanished, never reading, or flooding with bad and idle
//! connections. None of it stops a callback, blocks supd, or reaches the service.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{events, Server};
use crate::util::proc::{kill, status_kib};
use crate::util::{lazy, stderr, stdout, wait_for};

#[test]
fn killed_client_does_not_stop_its_callback() {
    let supd = Server::start("killed", &[]);
    let (mut client, line) = supd.ctl_first_line(&["send", &supd.service, "marker", "m1"]);
    assert_eq!(line, "started\n");
    client.kill().unwrap();
    client.wait().unwrap();
    let marker = supd.marks().join("marker-m1");
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the marker; log:\n{}", supd.log())),
        || marker.exists(),
    );
}

#[test]
fn a_vanished_client_frees_its_connection_the_callback_runs_on() {
    // -v twice: debug, where the server says it let the connection go.
    let supd = Server::start("vanished", &["-v"]);
    let stream = UnixStream::connect(supd.socket()).unwrap();
    (&stream).write_all(b"root hang\n").unwrap();
    // A long, silent callback: it prints "ready" and then nothing.
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while !line.contains("\"ready\"") {
        line.clear();
        assert_ne!(reader.read_line(&mut line).unwrap(), 0, "closed early");
    }
    drop(reader);
    drop(stream);
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the connection to be let go; log:\n{}", supd.log())),
        || {
            supd.log()
                .contains("client went away; the callback runs on")
        },
    );
    let out = supd.ctl_output(&["--json", "status", &supd.service]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["running"][0]["action"], "hang", "{status}");
}

#[test]
fn slow_reader_never_blocks_the_callback() {
    const BYTES: &str = "100000000";
    // At warn (-v -q): 200 MB of "callback output" lines in the log file would make this
    // a test of the disk under load (file writes block, whatever O_NONBLOCK says).
    let supd = Server::start("slow-reader", &["-q"]);
    // Baseline: nobody listens (--no-wait returns at `started`).
    let start = Instant::now();
    let out = supd.ctl_output(&["send", &supd.service, "flood", BYTES, "alone", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let alone = supd.marks().join("flood-alone");
    wait_for(
        Duration::from_secs(60),
        "the flood without a client",
        || alone.exists(),
    );
    let baseline = start.elapsed();
    // The marker is left just before the callback ends: wait for that end, or the next
    // request may still find this run going (busy) and the stuck client gets no flood.
    wait_for(
        Duration::from_secs(10),
        "the flood without a client to end",
        || {
            let out = supd.ctl_output(&["--json", "status", &supd.service]);
            let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
            status["running"].as_array().is_some_and(Vec::is_empty)
        },
    );

    // A client that sends its request and never reads.
    let start = Instant::now();
    let mut stream = UnixStream::connect(supd.socket()).unwrap();
    stream.write_all(b"root flood 100000000 stuck\n").unwrap();
    let stuck = supd.marks().join("flood-stuck");
    wait_for(
        Duration::from_secs(60),
        lazy(|| format!("the flood with a stuck client; log:\n{}", supd.log())),
        || stuck.exists(),
    );
    let with_client = start.elapsed();
    let hwm = status_kib(supd.pid() as i32, "VmHWM:");
    let rss = status_kib(supd.pid() as i32, "VmRSS:");
    eprintln!("flood: alone {baseline:?}, stuck client {with_client:?}, supd VmHWM {hwm} KiB, VmRSS {rss} KiB");
    // Backpressure holds the callback while the client's queue is full; the client
    // that makes no progress is dropped after 5 s (CLIENT_STALL), then the flood goes on.
    assert!(
        with_client < baseline * 2 + Duration::from_secs(5 + 2),
        "alone {baseline:?}, with a stuck client {with_client:?}"
    );
    assert!(hwm < 32 * 1024, "VmHWM {hwm} KiB");
    assert!(
        supd.log().contains("client stopped reading"),
        "{}",
        supd.log()
    );
    drop(stream);
}

#[test]
fn floods_of_bad_and_idle_connections_change_nothing() {
    let supd = Server::start("flood", &[]);
    let injected = supd.marks().join("injected");
    let inj = injected.to_str().unwrap();
    let idle: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(supd.socket()).unwrap())
        .collect();
    let long = vec![b'a'; 5000];
    let mut bad: Vec<Vec<u8>> = vec![
        long.clone(),
        [b"root ping ".as_slice(), &long].concat(),
        b"root \xff\xfe\xfd".to_vec(),
        b"".to_vec(),
        b"\n".to_vec(),
        b"root".to_vec(),
        b"Root ping".to_vec(),
        format!("root a;touch {inj}").into_bytes(),
        format!("root $(touch {inj})").into_bytes(),
        format!("root `touch {inj}`").into_bytes(),
        format!("$(touch {inj}) ping").into_bytes(),
        b"root ../../bin/sh".to_vec(),
        format!("root hello\rtouch {inj}\n").into_bytes(),
        format!("root hello\0touch {inj}").into_bytes(),
        format!(r#"{{"user":"root","action":"$(touch {inj})"}}"#).into_bytes(),
        format!(r#"{{"user":"root","action":"hello","args":["\n$(touch {inj})"]}}"#).into_bytes(),
        br#"{"user":"root","action":"hello","args":[1]}"#.to_vec(),
        b"{".to_vec(),
    ];
    let many_args = format!("root hello {}", "a ".repeat(100));
    bad.push(many_args.into_bytes());
    let socket = supd.socket();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bad = bad.clone();
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                for i in 0..2500 {
                    let request = &bad[(i + t) % bad.len()];
                    let Ok(mut stream) = UnixStream::connect(&socket) else {
                        continue;
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let _ = stream.write_all(request);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    let mut reply = String::new();
                    let _ = stream.read_to_string(&mut reply);
                    if reply.contains("\"bad-request\"") {
                        answered += 1;
                    } else {
                        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]);
                        panic!("{shown:?}... got {reply:?}");
                    }
                }
                answered
            })
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 10_000);

    // The idle connections are still open (some evicted): ping answers at once.
    let start = Instant::now();
    let reply = events(&supd.raw(b"root ping\n", false));
    let took = start.elapsed();
    assert_eq!(reply[0]["event"], "pong");
    assert!(took < Duration::from_secs(1), "ping took {took:?}");
    let out = supd.ctl_output(&["send", &supd.service, "exit", "0"]);
    assert_eq!(out.status.code(), Some(0));
    drop(idle);

    assert!(!injected.exists(), "an injected command ran");
    assert_eq!(supd.service_signals(), "", "the service noticed");
    assert!(kill(supd.service_pid(), 0).is_ok(), "service gone");
}
