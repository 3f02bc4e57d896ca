//! The request socket and supctl, against the real `supd` binary: real sockets, real
//! bash callbacks (tests/fixtures/control/callbacks.sh), a service fixture that records
//! every signal it receives (tests/fixtures/control/service.sh).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{stderr, stdout, supd_bin, Guarded, TempDir};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/control")
        .join(name)
}

/// Poll `check` every 10 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running supd serving service `name` in its own temp dir, with the fixtures.
struct Supd {
    dir: TempDir,
    service: String,
    child: Option<Child>,
}

impl Supd {
    fn start(tag: &str, extra: &[&str]) -> Supd {
        let dir = TempDir::new(&format!("ctl-{tag}"));
        let service = format!("svc-{tag}");
        Supd::start_in(dir, &service, extra)
    }

    fn start_in(dir: TempDir, service: &str, extra: &[&str]) -> Supd {
        let supd = Supd {
            child: Some(Supd::spawn(dir.path(), service, extra)),
            dir,
            service: service.to_string(),
        };
        let ready = supd.dir.path().join("signals.ready");
        assert!(
            wait_for(Duration::from_secs(10), || ready.exists()
                && supd.socket().exists()),
            "supd did not come up; log:\n{}",
            supd.log()
        );
        supd
    }

    fn spawn(dir: &Path, service: &str, extra: &[&str]) -> Child {
        let log = std::fs::File::create(dir.join(format!("supd-{}.log", unique()))).unwrap();
        let mut command = Command::new(supd_bin());
        if !extra.contains(&"--callbacks") {
            command.arg("--callbacks").arg(fixture("callbacks.sh"));
        }
        command
            .arg("-v")
            .args(["--service", service])
            .arg("--socket-dir")
            .arg(dir)
            .arg("--callback-lib")
            .arg(fixture("lib.sh"))
            .args(extra)
            .arg("--")
            .arg("bash")
            .arg(fixture("service.sh"))
            .arg(dir.join("signals"))
            .env("MARKS", dir)
            .env_remove("SUPD_SOCKET_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn socket(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}-request.sock", self.service))
    }

    fn marks(&self) -> &Path {
        self.dir.path()
    }

    /// Everything every supd in this dir logged.
    fn log(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("supd-") && name.ends_with(".log") {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    /// Signals the service fixture received.
    fn service_signals(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("signals")).unwrap_or_default()
    }

    fn service_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.dir.path().join("signals.ready")).unwrap();
        text.trim().parse().unwrap()
    }

    /// `supd ctl --socket-dir DIR ARGS...`.
    fn ctl(&self) -> Command {
        let mut command = Command::new(supd_bin());
        command.arg("ctl").arg("--socket-dir").arg(self.dir.path());
        command
    }

    fn ctl_output(&self, args: &[&str]) -> Output {
        self.ctl().args(args).output().unwrap()
    }

    /// Send raw bytes, optionally half-close, and read the reply to EOF.
    fn raw(&self, request: &[u8], half_close: bool) -> String {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        if half_close {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    /// SIGTERM and wait for the exit (SIGKILL after 10 s).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Supd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unique() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

fn events(reply: &str) -> Vec<serde_json::Value> {
    reply
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// Processes (pids) whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may contain blanks, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn legacy_half_close_ping_and_text_form() {
    let supd = Supd::start("legacy", &[]);
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
    assert!(wait_for(Duration::from_secs(10), || marker.exists()));

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
    let supd = Supd::start("supctl", &["--callback-timeout", "3s"]);
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
    assert!(
        wait_for(Duration::from_secs(2), || group_members(pgid).is_empty()),
        "left in group {pgid}: {:?}",
        group_members(pgid)
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

#[test]
fn killed_client_does_not_stop_its_callback() {
    let supd = Supd::start("killed", &[]);
    let mut client = supd
        .ctl()
        .args(["send", &supd.service, "marker", "m1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    client.kill().unwrap();
    client.wait().unwrap();
    let marker = supd.marks().join("marker-m1");
    assert!(
        wait_for(Duration::from_secs(10), || marker.exists()),
        "{}",
        supd.log()
    );
}

#[test]
fn a_vanished_client_frees_its_connection_the_callback_runs_on() {
    // -v twice: debug, where the server says it let the connection go.
    let supd = Supd::start("vanished", &["-v"]);
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
    assert!(
        wait_for(Duration::from_secs(10), || supd
            .log()
            .contains("client went away; the callback runs on")),
        "{}",
        supd.log()
    );
    let out = supd.ctl_output(&["--json", "status", &supd.service]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["running"][0]["action"], "hang", "{status}");
}

#[test]
fn slow_reader_never_blocks_the_callback() {
    const BYTES: &str = "100000000";
    let supd = Supd::start("slow-reader", &[]);
    // Baseline: nobody listens (--no-wait returns at `started`).
    let start = Instant::now();
    let out = supd.ctl_output(&["send", &supd.service, "flood", BYTES, "alone", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let alone = supd.marks().join("flood-alone");
    assert!(wait_for(Duration::from_secs(60), || alone.exists()));
    let baseline = start.elapsed();

    // A client that sends its request and never reads.
    let start = Instant::now();
    let mut stream = UnixStream::connect(supd.socket()).unwrap();
    stream.write_all(b"root flood 100000000 stuck\n").unwrap();
    let stuck = supd.marks().join("flood-stuck");
    assert!(
        wait_for(Duration::from_secs(60), || stuck.exists()),
        "{}",
        supd.log()
    );
    let with_client = start.elapsed();
    let hwm = proc_status_kib(supd.pid(), "VmHWM:");
    let rss = proc_status_kib(supd.pid(), "VmRSS:");
    eprintln!("flood: alone {baseline:?}, stuck client {with_client:?}, supd VmHWM {hwm} KiB, VmRSS {rss} KiB");
    assert!(
        with_client < baseline * 2 + Duration::from_secs(2),
        "alone {baseline:?}, with a stuck client {with_client:?}"
    );
    assert!(hwm < 32 * 1024, "VmHWM {hwm} KiB");
    assert!(supd.log().contains("client too slow"), "{}", supd.log());
    drop(stream);
}

#[test]
fn floods_of_bad_and_idle_connections_change_nothing() {
    let supd = Supd::start("flood", &[]);
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
    assert_eq!(
        unsafe { libc::kill(supd.service_pid(), 0) },
        0,
        "service gone"
    );
}

#[test]
fn peer_credentials_socket_mode_and_ownership() {
    // Default mode 0660; --socket-group sets the group.
    let supd = Supd::start("mode", &["--socket-group", "65534"]);
    let meta = std::fs::metadata(supd.socket()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), 65534);
    drop(supd);

    // --allow-uid: uid 65534 is refused (77); root always passes.
    let supd = Supd::start("creds", &["--allow-uid", "1000", "--socket-mode", "0666"]);
    let meta = std::fs::metadata(supd.socket()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o666);
    let out = supd
        .ctl()
        .args(["send", &supd.service, "exit", "0"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("denied"));
    let out = supd.ctl_output(&["send", &supd.service, "exit", "0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(supd.log().contains("request denied"), "{}", supd.log());
    assert!(supd.log().contains("peer_uid=65534"));
}

#[test]
fn stale_socket_replaced_live_socket_kept() {
    let dir = TempDir::new("stale");
    let service = "svc-stale";
    let path = dir.path().join(format!("{service}-request.sock"));
    // A stale socket: bound, then its listener gone.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut first = Supd::start_in(dir, service, &[]);
    assert!(
        first.log().contains("replacing stale socket"),
        "{}",
        first.log()
    );
    let ino = std::fs::metadata(&path).unwrap().ino();
    assert_eq!(
        events(&first.raw(b"root ping\n", false))[0]["supd_pid"],
        first.pid()
    );

    // A second supd for the same service leaves the live socket alone and says why.
    let mut second = Guarded(Supd::spawn(first.dir.path(), service, &[]));
    assert!(
        wait_for(Duration::from_secs(10), || first.log().contains("is live")),
        "{}",
        first.log()
    );
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    assert_eq!(
        events(&first.raw(b"root ping\n", false))[0]["supd_pid"],
        first.pid()
    );
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    second.wait().unwrap();
    // The second one's exit did not remove the first one's socket.
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    assert_eq!(
        events(&first.raw(b"root ping\n", false))[0]["supd_pid"],
        first.pid()
    );

    // A clean stop removes the socket file.
    first.stop();
    assert!(!path.exists());
}

#[test]
fn live_socket_with_a_full_backlog_does_not_hang_startup() {
    use nix::sys::socket::{
        bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("backlog");
    let service = "svc-backlog";
    let path = dir.path().join(format!("{service}-request.sock"));
    // A live listener that never accepts, its backlog full (a stopped or flooded supd).
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let address = UnixAddr::new(&path).unwrap();
    bind(listener.as_raw_fd(), &address).unwrap();
    listen(&listener, Backlog::new(1).unwrap()).unwrap();
    let mut queued = Vec::new();
    loop {
        let client = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        match connect(client.as_raw_fd(), &address) {
            Ok(()) => queued.push(client),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
        assert!(queued.len() < 100, "backlog never filled");
    }
    // supd must see a live socket, say so, leave it alone, and keep supervising.
    let mut supd = Supd::start_in(dir, service, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || supd.log().contains("is live")),
        "{}",
        supd.log()
    );
    let start = Instant::now();
    let status = supd.stop().unwrap();
    assert_eq!(status.code(), Some(0), "{}", supd.log());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(path.exists(), "the live socket was removed");
    drop(queued);
}

#[test]
fn callback_usr1_reaches_the_service() {
    let supd = Supd::start("usr1", &[]);
    let out = supd.ctl_output(&["send", &supd.service, "usr1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        wait_for(Duration::from_secs(5), || supd
            .service_signals()
            .contains("USR1")),
        "service got: {:?}\n{}",
        supd.service_signals(),
        supd.log()
    );
}

#[test]
fn shutdown_terminates_running_callbacks() {
    let mut supd = Supd::start("shutdown", &["--grace", "5s"]);
    let out = supd.ctl_output(&["send", &supd.service, "trap-term", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ready = supd.marks().join("trap-ready");
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    let start = Instant::now();
    let status = supd.stop().unwrap();
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
fn max_callbacks_limits_concurrency() {
    let supd = Supd::start("max", &["--max-callbacks", "1"]);
    let mut first = supd
        .ctl()
        .args(["send", &supd.service, "slow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
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
fn broken_or_missing_callbacks_file() {
    let dir = TempDir::new("broken");
    // The file fails while being sourced: internal error (70), with its last stderr line.
    let broken = fixture("broken.sh");
    let supd = Supd::start_in(
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
    let supd = Supd::start_in(
        dir,
        "svc-nofile",
        &["--callbacks", missing.to_str().unwrap()],
    );
    let out = supd.ctl_output(&["send", &supd.service, "fine"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = supd.ctl_output(&["list", &supd.service]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()));
}

#[test]
fn one_list_at_a_time() {
    // `list` starts a bash that sources the callbacks file; it is not a callback, so
    // --max-callbacks does not bound it: a second `list` while one runs is busy (75)
    // instead of another bash. The file here takes 1 s to source.
    let dir = TempDir::new("slowlist");
    let slow = dir.path().join("slow.sh");
    std::fs::write(&slow, "sleep 1\nCB_one() { :; }\n").unwrap();
    let supd = Supd::start_in(
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
    let children = format!("/proc/{0}/task/{0}/children", supd.pid());
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&children)
                .map(|c| c.split_whitespace().count() >= 2)
                .unwrap_or(false)
        }),
        "{}",
        supd.log()
    );
    let second = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(stdout(&first).trim(), "one");
    let again = supd.ctl_output(&["list", &supd.service]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

#[test]
fn the_lock_decides_between_two_starting_supds() {
    // Two supds starting together could both find the socket stale; the second's
    // unlink would then remove the first's fresh socket. The one holding
    // `<socket>.lock` wins: while the lock is held, even a stale socket is left alone.
    let dir = TempDir::new("lock");
    let service = "svc-lock";
    let path = dir.path().join(format!("{service}-request.sock"));
    drop(UnixListener::bind(&path).unwrap());
    let ino = std::fs::metadata(&path).unwrap().ino();
    let lock_file =
        std::fs::File::create(dir.path().join(format!("{service}-request.sock.lock"))).unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let log = dir.path().join("supd-lock.log");
    let mut supd = Guarded(
        Command::new(supd_bin())
            .args(["-v", "--service", service, "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(fixture("callbacks.sh"))
            .args(["--", "sleep", "1000"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("is live")
    });
    unsafe { libc::kill(supd.id() as i32, libc::SIGTERM) };
    supd.wait().unwrap();
    assert!(
        logged,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "stale socket was taken"
    );
    drop(held);
    // Lock released: the next supd replaces the stale socket and serves.
    let supd = Supd::start_in(dir, service, &[]);
    // (Not the inode: tmpfs may hand the new socket the old one's number.)
    assert!(
        wait_for(Duration::from_secs(10), || UnixStream::connect(&path)
            .is_ok()),
        "{}",
        supd.log()
    );
    assert_eq!(
        events(&supd.raw(b"root ping\n", false))[0]["supd_pid"],
        supd.pid()
    );
}
