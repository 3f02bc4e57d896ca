//! The runner end to end: real minute boundaries, real sockets (stand-in services and a
//! real supd), delivery retries and skips, reloads, and the scheduler as PID 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{children_of, lazy, supd, wait_for, Logged, Mode, Supd, TempDir};

pub(super) fn scheduler(file: &Path, socket_dir: &Path, extra: &[&str]) -> Logged {
    let mut command = supd();
    command
        .arg("scheduler")
        .arg("--file")
        .arg(file)
        .arg("--socket-dir")
        .arg(socket_dir)
        // Each test its own state (never the host's /var/lib/supd).
        .arg("--state-dir")
        .arg(file.with_extension("state"))
        .args(extra)
        .env_remove("TZ")
        .env_remove("SUPD_VERBOSE")
        .env_remove("SUPD_QUIET");
    Logged::spawn(&mut command)
}

/// A stand-in service socket: records each request line and answers with `reply`
/// after `delay`.
pub(super) fn fake_service(
    dir: &Path,
    service: &str,
    reply: &'static str,
    delay: Duration,
) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(dir.join(format!("{service}-request.sock"))).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = reader.read_line(&mut line);
                record.lock().unwrap().push(line.trim_end().to_string());
                std::thread::sleep(delay);
                let _ = stream.write_all(reply.as_bytes());
                let mut rest = Vec::new();
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read_to_end(&mut rest);
            });
        }
    });
    seen
}

pub(super) const RAN: &str = "{\"event\":\"started\",\"action\":\"act\",\"id\":1}\n{\"event\":\"stdout\",\"line\":\"hi\"}\n{\"event\":\"exit\",\"code\":0,\"duration_ms\":5}\n";
const BUSY: &str =
    "{\"event\":\"error\",\"kind\":\"busy\",\"message\":\"act is already running\"}\n";

pub(super) fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .to_string()
}

#[test]
fn delivery_retries_a_late_socket_loses_an_absent_one_and_skips_busy_and_overlap() {
    let dir = TempDir::new("deliver");
    let file = dir.write(
        "schedule.cron",
        "* * * * * forum late act\n* * * * * busy act\n* * * * * slow act\n* * * * * slow act\n",
    );
    let gone_file = dir.write("gone.cron", "* * * * * gone act\n");
    let _busy = fake_service(dir.path(), "busy", BUSY, Duration::ZERO);
    let slow = fake_service(dir.path(), "slow", RAN, Duration::from_secs(3));
    let sched = scheduler(&file, dir.path(), &["-v"]);
    let gone = scheduler(&gone_file, dir.path(), &["--retry-for", "4s"]);
    sched.line_with(&["scheduler started", "jobs=4"], Duration::from_secs(10));
    gone.line_with(&["scheduler started", "jobs=1"], Duration::from_secs(10));
    // Due at the next minute boundary: the late service is not there yet.
    sched.line_with(
        &["service unreachable; retrying", "service=late"],
        Duration::from_secs(70),
    );
    // Two attempts failed (the third is scheduled): now the service comes up.
    sched.line_with(
        &["retrying", "service=late", "attempt=3"],
        Duration::from_secs(10),
    );
    let late = fake_service(dir.path(), "late", RAN, Duration::ZERO);
    let ran = sched.line_with(&["job ran", "service=late"], Duration::from_secs(20));
    assert!(
        field(&ran, "attempts").parse::<u32>().unwrap() >= 3,
        "{ran}"
    );
    assert_eq!(field(&ran, "code"), "0");
    assert_eq!(field(&ran, "user"), "forum");
    let request = late.lock().unwrap()[0].clone();
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    assert_eq!(
        (request["user"].as_str(), request["action"].as_str()),
        (Some("forum"), Some("act"))
    );
    // Never there: lost after the 4 s retry window, logged at error level.
    let lost = gone.line_with(&["job lost", "service=gone"], Duration::from_secs(5));
    assert!(lost.contains("ERROR"), "{lost}");
    assert!(
        field(&lost, "retried_ms").parse::<u64>().unwrap() >= 3_000,
        "{lost}"
    );
    // busy is a skip.
    let busy = sched.line_with(&["job skipped", "service=busy"], Duration::from_secs(5));
    assert_eq!(field(&busy, "reason"), "busy");
    // The same job twice at once: the second is skipped, the first runs to its end.
    sched.line_with(
        &["job skipped", "service=slow", "still running"],
        Duration::from_secs(5),
    );
    sched.line_with(&["job ran", "service=slow"], Duration::from_secs(10));
    assert_eq!(slow.lock().unwrap().len(), 1, "{}", sched.all());
}

#[test]
fn real_supd_gets_the_request_on_the_minute_and_reloads_keep_or_replace_jobs() {
    let dir = TempDir::new("e2e");
    let run = dir.file("run");
    std::fs::create_dir(&run).unwrap();
    let marker = dir.file("marker");
    let callbacks = dir.write(
        "callbacks.sh",
        &format!(
            "CB_mark() {{ echo \"ran by $1\" > {}; echo relayed-line; }}\n",
            marker.display()
        ),
    );
    let service = Logged::spawn(
        supd()
            .args(["--service", "svc", "--socket-dir"])
            .arg(&run)
            .arg("--callbacks")
            .arg(&callbacks)
            .args(["--callback-lib", "/nonexistent", "--", "sleep", "1000"]),
    );
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("supd's socket; log: {}", service.all())),
        || run.join("svc-request.sock").exists(),
    );
    let file = dir.write("schedule.cron", "* * * * * forum svc mark\n");
    let sched = scheduler(&file, &run, &["-v"]);
    sched.line_with(&["scheduler started", "jobs=1"], Duration::from_secs(10));
    // A broken file on SIGHUP keeps the old job.
    std::fs::write(&file, "* * * * * forum svc mark\n61 * * * * svc mark\n").unwrap();
    sched.signal(libc::SIGHUP);
    sched.line_with(
        &["schedule.cron:2: minute 61 out of range 0-59"],
        Duration::from_secs(5),
    );
    sched.line_with(
        &["schedule has errors; keeping the old one", "jobs=1"],
        Duration::from_secs(5),
    );
    // The old job fires at the next minute boundary and reaches the real supd.
    let ran = sched.line_with(&["job ran", "service=svc"], Duration::from_secs(70));
    assert_eq!(field(&ran, "code"), "0");
    let lateness: u64 = field(&ran, "lateness_ms").parse().unwrap();
    assert!(lateness < 1000, "{ran}");
    assert!(field(&ran, "due").ends_with(":00+00:00"), "{ran}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran by forum\n");
    // -v: the callback's output is relayed at debug level.
    sched.line_with(&["DEBUG", "output", "relayed-line"], Duration::from_secs(5));
    // An editor's rename-over is noticed without SIGHUP.
    let tmp = dir.write(
        "schedule.cron.tmp",
        "* * * * * forum svc mark\n@daily svc mark\n",
    );
    std::fs::rename(&tmp, &file).unwrap();
    sched.line_with(
        &["schedule reloaded", "jobs=2", "file change"],
        Duration::from_secs(5),
    );
    // SIGTERM: exit 0 promptly.
    let mut sched = sched;
    let start = Instant::now();
    let status = sched
        .child
        .terminate(Duration::from_secs(2), "the scheduler to exit");
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(100), "exit took {took:?}");
}

#[test]
fn bad_file_at_start_exits_65_and_missing_66() {
    let dir = TempDir::new("start");
    let file = dir.write("schedule.cron", "0 0 * * 9 svc act\n");
    let out = supd()
        .args(["scheduler", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1: day-of-week 9 out of range 0-7"));
    let out = supd()
        .args(["scheduler", "--file"])
        .arg(dir.file("nope.cron"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
}

/// As PID 1 of a PID namespace (the scheduler container), the scheduler reaps orphans.
#[test]
fn scheduler_as_pid1_reaps_orphans_and_stops_on_sigterm() {
    let dir = TempDir::new("pid1");
    let file = dir.write("schedule.cron", "@yearly svc act\n");
    let mut sched = Supd::start(Mode::Pid1, |c| {
        c.args(["scheduler", "--file"])
            .arg(&file)
            .arg("--socket-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    });
    // An orphan inside its namespace: sh starts sleep and exits at once.
    let status = Command::new("nsenter")
        .args([
            "--target",
            &sched.pid.to_string(),
            "--pid",
            "--mount",
            "--",
            "sh",
            "-c",
            "sleep 1 & exit 0",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut adopted = false;
    wait_for(
        Duration::from_secs(10),
        lazy(|| {
            format!(
                "the orphan to be adopted and reaped: {:?}",
                children_of(sched.pid)
            )
        }),
        || {
            let kids = children_of(sched.pid);
            adopted |= !kids.is_empty();
            // Gone from the children list = exited AND reaped (a zombie stays listed).
            adopted && kids.is_empty()
        },
    );
    sched.signal(libc::SIGTERM);
    let status = sched.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
}

/// The retry margin (DESIGN §5) with real time: a run whose service never answers is
/// retried under the default `--retry-for 10m` only until 1 s before the job is due
/// again, so it is logged `lost` before the next run starts, and the next run is
/// attempted (never `skipped reason="still running"`).
#[test]
fn a_run_retried_until_due_again_is_lost_a_second_before_the_next_run() {
    let dir = TempDir::new("margin");
    let file = dir.write("schedule.cron", "* * * * * never act\n");
    let sched = scheduler(&file, dir.path(), &["-v"]);
    sched.line_with(&["scheduler started", "jobs=1"], Duration::from_secs(10));
    let first = sched.line_with(
        &["service unreachable; retrying", "service=never"],
        Duration::from_secs(70),
    );
    let lost = sched.line_with(&["job lost", "service=never"], Duration::from_secs(70));
    let retried: u64 = field(&lost, "retried_ms").parse().unwrap();
    assert!(
        (55_000..60_000).contains(&retried),
        "lost within the last seconds before the next due time: {lost}"
    );
    // The next run: attempted after the lost line, not skipped.
    let all = wait_second_attempt(&sched);
    let lost_at = all.find("job lost").unwrap();
    let second = all[lost_at..]
        .find("service unreachable; retrying")
        .map(|i| &all[lost_at + i..]);
    let second = second.unwrap_or_else(|| panic!("no second attempt after lost: {all}"));
    // Each run retries until 1 s before the next due minute (`until=hh:mm:59`).
    let until = |line: &str| field(line, "until");
    let (first_until, second_until) = (until(&first), until(second.lines().next().unwrap()));
    assert!(first_until.ends_with(":59+00:00"), "{first}");
    assert!(second_until.ends_with(":59+00:00"), "{all}");
    assert_ne!(first_until, second_until, "{all}");
    assert!(!all.contains("still running"), "{all}");
}

fn wait_second_attempt(sched: &Logged) -> String {
    wait_for(Duration::from_secs(10), lazy(|| sched.all()), || {
        sched.all().matches("service unreachable; retrying").count() >= 2
    });
    sched.all()
}
