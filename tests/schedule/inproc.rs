//! DESIGN §5 through the real binary, in real time: the in-process schedule of PID-1
//! supd (`--schedule`), slots, catch-up after SIGKILL (supd and `supd scheduler`),
//! `full` retried vs `busy` skipped, `--on-failure`, the metrics file scraped through a
//! real node_exporter and checked by promtool, and `status` after a restart.
//!
//! Every scenario that needs a minute boundary runs in its own thread of ONE test, so
//! they all share the same boundary (about a minute of wall time in all).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::runner::{fake_service, field, scheduler, RAN};
use crate::util::{children_of, lazy, read_lines, supd, supd_bin, wait_for, Logged, Mode, TempDir};

/// A supd running `sleep 1000` as its service, with `--schedule FILE` and `args`, its
/// log collected. In `Mode::Pid1`, also supd's own pid (for SIGKILL).
struct Service {
    log: Logged,
    pid: i32,
}

fn service(mode: Mode, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
    let run = dir.join(format!("run-{name}"));
    let _ = std::fs::create_dir(&run);
    let mut command = mode.command();
    command
        .args([
            "--service",
            "svc",
            "-v",
            "--callback-lib",
            "/nonexistent",
            "--socket-dir",
        ])
        .arg(&run)
        .arg("--callbacks")
        .arg(dir.join("callbacks.sh"))
        .args(args)
        .args(["--", "sleep", "1000"])
        .env_remove("TZ")
        .env_remove("SUPD_VERBOSE")
        .env_remove("SUPD_QUIET")
        .env("MARK", dir.join(format!("mark-{name}")));
    for (k, v) in env {
        command.env(k, v);
    }
    let log = Logged::spawn(&mut command);
    let pid = match mode {
        Mode::Subreaper => log.child.pid(),
        Mode::Pid1 => wait_for(Duration::from_secs(10), "supd under unshare", || {
            children_of(log.child.pid()).into_iter().find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == supd_bin())
            })
        }),
    };
    Service { log, pid }
}

const CALLBACKS: &str = r#"
CB_both() { echo "both $REPLICA" >> "$MARK"; }
CB_one() { echo "one $REPLICA" >> "$MARK"; }
CB_mark() { echo "mark" >> "$MARK"; }
CB_work() { echo "start $1" >> "$MARK.work"; sleep 3; echo "$0" >> "$MARK"; }
CB_long() { sleep 80; }
CB_fail() { echo "out-1"; echo "out-2" >&2; echo "out-3"; return 3; }
"#;

/// Seconds until the next minute boundary.
fn to_boundary() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    60.0 - now % 60.0
}

/// Make sure at least `secs` remain before the next boundary (else wait it out).
fn room_before_boundary(secs: f64) {
    let left = to_boundary();
    if left < secs {
        std::thread::sleep(Duration::from_secs_f64(left + 1.0));
    }
}

fn wait_past_boundary(boundary: Instant) {
    let now = Instant::now();
    if boundary > now {
        std::thread::sleep(boundary - now + Duration::from_millis(1500));
    }
}

/// A free loopback port (bound, then released for node_exporter).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Slots, other services' lines, the in-process run on the minute in supd as PID 1,
/// the metrics through node_exporter and promtool, status after a restart.
fn slots_metrics_and_status(dir: TempDir) {
    let file = dir.write(
        "schedule.cron",
        "* * * * * svc both\n* * * * * other both\nSLOT=1\n* * * * * svc one\nSLOT=*\n",
    );
    let file = file.to_str().unwrap().to_string();
    let state = dir.file("state");
    std::fs::create_dir(&state).unwrap();
    let metrics_dir = dir.file("metrics");
    std::fs::create_dir(&metrics_dir).unwrap();
    let prom = metrics_dir.join("supd.prom");
    let common = |slot: &'static str| {
        vec![
            "--schedule".to_string(),
            file.clone(),
            "--slot".into(),
            slot.into(),
            "--state-dir".into(),
            state.join(slot).display().to_string(),
        ]
    };
    std::fs::create_dir(state.join("1")).unwrap();
    std::fs::create_dir(state.join("2")).unwrap();
    let mut args1 = common("1");
    args1.extend(["--metrics-file".into(), prom.display().to_string()]);
    let args1: Vec<&str> = args1.iter().map(String::as_str).collect();
    let args2 = common("2");
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let one = service(Mode::Pid1, dir.path(), "r1", &args1, &[("REPLICA", "1")]);
    let two = service(
        Mode::Subreaper,
        dir.path(),
        "r2",
        &args2,
        &[("REPLICA", "2")],
    );
    one.log.line_with(
        &["schedule started", "slot=1", "jobs=2"],
        Duration::from_secs(10),
    );
    two.log.line_with(
        &["schedule started", "slot=2", "jobs=1"],
        Duration::from_secs(10),
    );
    // No scheduler process anywhere: supd itself runs its lines on the minute.
    let ran = one
        .log
        .line_with(&["job ran", "action=both"], Duration::from_secs(75));
    assert!(field(&ran, "due").ends_with(":00+00:00"), "{ran}");
    assert!(
        field(&ran, "lateness_ms").parse::<u64>().unwrap() < 1000,
        "{ran}"
    );
    one.log
        .line_with(&["job ran", "action=one"], Duration::from_secs(10));
    two.log
        .line_with(&["job ran", "action=both"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let mut r1 = read_lines(&dir.file("mark-r1"));
    r1.sort();
    assert_eq!(r1, ["both 1", "one 1"], "{}", one.log.all());
    assert_eq!(
        read_lines(&dir.file("mark-r2")),
        ["both 2"],
        "{}",
        two.log.all()
    );
    assert!(
        !one.log.all().contains("service=other"),
        "{}",
        one.log.all()
    );
    assert!(!two.log.all().contains("action=one"), "{}", two.log.all());

    // The metrics file: valid for promtool, served by node_exporter.
    wait_for(Duration::from_secs(5), "metrics with a success", || {
        std::fs::read_to_string(&prom)
            .is_ok_and(|t| t.contains("supd_job_last_success_timestamp_seconds{"))
    });
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .expect("promtool (Debian prometheus; scripts/setup-tools.sh installs it)");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let port = free_port();
    let mut exporter = crate::util::Guarded::spawn(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                metrics_dir.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let scraped = wait_for(Duration::from_secs(10), "node_exporter to serve", || {
        http_get(port, "/metrics").filter(|b| b.contains("supd_job_last_success_timestamp_seconds"))
    });
    let line = scraped
        .lines()
        .find(|l| {
            l.starts_with("supd_job_last_success_timestamp_seconds{")
                && l.contains("action=\"both\"")
        })
        .unwrap_or_else(|| panic!("no success metric for both: {scraped}"));
    assert!(
        line.contains("service=\"svc\"") && line.contains("schedule.cron:1"),
        "{line}"
    );
    assert!(
        scraped.lines().any(|l| l == "node_textfile_scrape_error 0"),
        "{scraped}"
    );
    exporter.terminate(Duration::from_secs(5), "node_exporter");

    // status after a restart shows the results from before it.
    let mut one = one;
    crate::util::send(one.pid, libc::SIGTERM);
    one.log
        .child
        .wait_exit(Duration::from_secs(10), "supd slot 1 to stop");
    let again = service(
        Mode::Subreaper,
        dir.path(),
        "r1",
        &args1,
        &[("REPLICA", "1")],
    );
    again
        .log
        .line_with(&["schedule started"], Duration::from_secs(10));
    let status = supd()
        .args(["ctl", "--socket-dir"])
        .arg(dir.file("run-r1"))
        .args(["status", "svc"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.status.success(), "{text}");
    let both = text
        .lines()
        .find(|l| l.starts_with("last: both"))
        .unwrap_or_else(|| panic!("no last result of both: {text}"));
    assert!(both.contains("ok (exit 0)"), "{both}");
    assert!(text.lines().any(|l| l.starts_with("last: one")), "{text}");
}

/// supd as PID 1 killed with SIGKILL before a due time, restarted after it: the job runs
/// once, `catch-up missed=1`; with `--catch-up 0` it does not run.
fn supd_catch_up(dir: TempDir, catch_up: &'static str, boundary: Instant) {
    dir.write("schedule.cron", "* * * * * svc mark\n");
    let state = dir.file("state");
    std::fs::create_dir(&state).unwrap();
    let file = dir.file("schedule.cron").display().to_string();
    let state_arg = state.display().to_string();
    let args = [
        "--schedule",
        &file,
        "--state-dir",
        &state_arg,
        "--catch-up",
        catch_up,
    ];
    let first = service(Mode::Pid1, dir.path(), "a", &args, &[]);
    first
        .log
        .line_with(&["schedule started", "jobs=1"], Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "the state file", || {
        state.join("schedule-svc.json").exists()
    });
    crate::util::send(first.pid, libc::SIGKILL);
    let mut first = first;
    first
        .log
        .child
        .wait_exit(Duration::from_secs(10), "the killed supd's namespace");
    assert!(read_lines(&dir.file("mark-a")).is_empty());
    wait_past_boundary(boundary);
    let second = service(Mode::Pid1, dir.path(), "a", &args, &[]);
    second
        .log
        .line_with(&["schedule started", "jobs=1"], Duration::from_secs(10));
    if catch_up == "0" {
        let line = second.log.line_with(
            &["missed runs not caught up", "missed=1"],
            Duration::from_secs(5),
        );
        assert!(line.contains("--catch-up 0"), "{line}");
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            read_lines(&dir.file("mark-a")).is_empty(),
            "{}",
            second.log.all()
        );
        assert!(
            !second.log.all().contains("catch-up missed"),
            "{}",
            second.log.all()
        );
    } else {
        second.log.line_with(
            &["catch-up missed=1", "action=mark"],
            Duration::from_secs(5),
        );
        second
            .log
            .line_with(&["job ran", "action=mark"], Duration::from_secs(10));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            read_lines(&dir.file("mark-a")),
            ["mark"],
            "{}",
            second.log.all()
        );
        assert_eq!(second.log.all().matches("catch-up missed").count(), 1);
    }
}

/// `supd scheduler` killed with SIGKILL before a due time and restarted after it: one
/// request, `catch-up missed=1`.
fn scheduler_catch_up(dir: TempDir, boundary: Instant) {
    let run = dir.file("run");
    std::fs::create_dir(&run).unwrap();
    let seen = fake_service(&run, "svc", RAN, Duration::ZERO);
    let file = dir.write("schedule.cron", "* * * * * svc act\n");
    std::fs::create_dir(file.with_extension("state")).unwrap();
    let first = scheduler(&file, &run, &[]);
    first.line_with(&["scheduler started"], Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "the state file", || {
        file.with_extension("state").join("scheduler.json").exists()
    });
    first.signal(libc::SIGKILL);
    wait_past_boundary(boundary);
    assert!(seen.lock().unwrap().is_empty());
    let second = scheduler(&file, &run, &[]);
    second.line_with(
        &["catch-up missed=1", "service=svc"],
        Duration::from_secs(10),
    );
    second.line_with(&["job ran", "service=svc"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 1, "{}", second.all());
}

/// No state dir: logged, and the job still runs; a corrupt state file: logged, ignored.
fn without_usable_state(dir: TempDir) {
    dir.write("schedule.cron", "* * * * * svc mark\n");
    let file = dir.file("schedule.cron").display().to_string();
    let state = dir.file("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        state.join("schedule-svc.json"),
        "{\"v\":1,\"jobs\":[garbage",
    )
    .unwrap();
    let state_arg = state.display().to_string();
    let missing = dir.file("no-such-dir").display().to_string();
    let none = service(
        Mode::Subreaper,
        dir.path(),
        "none",
        &["--schedule", &file, "--state-dir", &missing],
        &[],
    );
    let corrupt = service(
        Mode::Subreaper,
        dir.path(),
        "bad",
        &["--schedule", &file, "--state-dir", &state_arg],
        &[],
    );
    none.log.line_with(
        &["no state dir; running without state"],
        Duration::from_secs(10),
    );
    corrupt.log.line_with(
        &["state file is corrupt; ignoring it"],
        Duration::from_secs(10),
    );
    none.log.line_with(
        &["job ran", "action=mark", "code=0"],
        Duration::from_secs(75),
    );
    corrupt.log.line_with(
        &["job ran", "action=mark", "code=0"],
        Duration::from_secs(10),
    );
    // The corrupt file was replaced by a valid one.
    wait_for(Duration::from_secs(5), "a valid state file", || {
        std::fs::read(state.join("schedule-svc.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["jobs"].as_object().is_some_and(|j| j.len() == 1))
    });
}

/// Six jobs under --max-callbacks 4 with one action already running: `full` is
/// retried until each of the six ran; the running action's job is skipped as busy.
fn full_is_retried_busy_is_skipped(dir: TempDir) {
    let mut text = String::new();
    for n in 1..=6 {
        text.push_str(&format!("* * * * * u{n} svc work\n"));
    }
    // Six distinct actions: work-1 .. work-6 all call CB_work via their own names.
    let mut callbacks = CALLBACKS.to_string();
    let mut lines = String::new();
    for n in 1..=6 {
        callbacks.push_str(&format!("CB_work_{n}() {{ CB_work \"$@\"; }}\n"));
        lines.push_str(&format!("* * * * * svc work-{n}\n"));
    }
    let _ = text;
    lines.push_str("* * * * * svc long\n");
    std::fs::write(dir.file("callbacks.sh"), callbacks).unwrap();
    let file = dir.write("schedule.cron", &lines).display().to_string();
    let state = dir.file("no-state").display().to_string();
    let svc = service(
        Mode::Subreaper,
        dir.path(),
        "full",
        &[
            "--schedule",
            &file,
            "--state-dir",
            &state,
            "--max-callbacks",
            "4",
        ],
        &[],
    );
    svc.log
        .line_with(&["schedule started", "jobs=7"], Duration::from_secs(10));
    // `long` is already running when the minute comes.
    let long = supd()
        .args(["ctl", "--socket-dir"])
        .arg(dir.file("run-full"))
        .args(["send", "svc", "long", "--no-wait"])
        .status()
        .unwrap();
    assert!(long.success());
    let skipped = svc
        .log
        .line_with(&["job skipped", "action=long"], Duration::from_secs(75));
    assert_eq!(field(&skipped, "reason"), "busy", "{skipped}");
    svc.log.line_with(
        &["service full (--max-callbacks); retrying"],
        Duration::from_secs(5),
    );
    for n in 1..=6 {
        let ran = svc.log.line_with(
            &["job ran", &format!("action=work-{n} ")],
            Duration::from_secs(40),
        );
        assert_eq!(field(&ran, "code"), "0", "{ran}");
    }
    assert_eq!(read_lines(&dir.file("mark-full")).len(), 6);
    assert!(!svc.log.all().contains("job lost"), "{}", svc.log.all());
    assert_eq!(
        svc.log.all().matches("reason=busy").count(),
        1,
        "{}",
        svc.log.all()
    );
}

/// --on-failure: once per failed run, the documented environment, the output tail on
/// stdin; the hook's own failure is logged. A lost run (supd scheduler) too.
fn on_failure(dir: TempDir) {
    let file = dir.write(
        "schedule.cron",
        "* * * * * forum svc fail\n* * * * * svc mark\n",
    );
    let file = file.display().to_string();
    let out = dir.file("hook");
    std::fs::create_dir(&out).unwrap();
    let hook = format!(
        "sh -c 'env | grep ^SUPD_ | sort > {0}/env-$SUPD_OUTCOME-$$; cat > {0}/tail-$$; exit 7'",
        out.display()
    );
    let state = dir.file("no-state").display().to_string();
    let svc = service(
        Mode::Pid1,
        dir.path(),
        "hook",
        &[
            "--schedule",
            &file,
            "--state-dir",
            &state,
            "--on-failure",
            &hook,
        ],
        &[],
    );
    svc.log
        .line_with(&["schedule started", "jobs=2"], Duration::from_secs(10));
    // A lost run, from supd scheduler against a service that never comes.
    let run = dir.file("sched-run");
    std::fs::create_dir(&run).unwrap();
    let gone = dir.write("gone.cron", "* * * * * gone act\n");
    let sched = scheduler(&gone, &run, &["--retry-for", "3s", "--on-failure", &hook]);
    sched.line_with(&["scheduler started"], Duration::from_secs(10));

    let failed = svc
        .log
        .line_with(&["job ran", "action=fail"], Duration::from_secs(75));
    assert_eq!(field(&failed, "code"), "3");
    svc.log.line_with(
        &["job ran", "action=mark", "code=0"],
        Duration::from_secs(10),
    );
    svc.log.line_with(
        &["on-failure hook failed", "status=\"exit 7\""],
        Duration::from_secs(10),
    );
    sched.line_with(&["job lost", "service=gone"], Duration::from_secs(10));
    sched.line_with(&["on-failure hook failed"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let entries: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let envs: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("env-failed")
        })
        .collect();
    assert_eq!(
        envs.len(),
        1,
        "once per failed run (mark's ok run runs no hook): {entries:?}"
    );
    let env = std::fs::read_to_string(envs[0]).unwrap();
    let due = field(&failed, "due");
    for want in [
        format!("SUPD_JOB={file}:1"),
        "SUPD_SERVICE=svc".into(),
        "SUPD_ACTION=fail".into(),
        "SUPD_USER=forum".into(),
        "SUPD_OUTCOME=failed".into(),
        "SUPD_CODE=3".into(),
        format!("SUPD_DUE={due}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    let pid = envs[0]
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let tail = std::fs::read_to_string(out.join(format!("tail-{pid}"))).unwrap();
    // stdout and stderr are separate pipes: their relative order is not kept.
    let mut lines: Vec<&str> = tail.lines().collect();
    lines.sort();
    assert!(tail.ends_with('\n'), "{tail:?}");
    assert_eq!(
        lines,
        ["out-1", "out-2", "out-3"],
        "the output tail, then EOF"
    );
    let lost: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("env-lost")
        })
        .collect();
    assert_eq!(lost.len(), 1, "{entries:?}");
    let env = std::fs::read_to_string(lost[0]).unwrap();
    assert!(
        env.contains("SUPD_SERVICE=gone\n") && env.contains("SUPD_CODE=69\n"),
        "{env}"
    );
}

#[test]
fn in_process_schedule_catch_up_full_hook_metrics_on_one_minute_boundary() {
    // Room for the kills before the boundary the catch-up scenarios wait past.
    room_before_boundary(15.0);
    let boundary = Instant::now() + Duration::from_secs_f64(to_boundary());
    let mk = |tag: &str| {
        let dir = TempDir::new(tag);
        dir.write("callbacks.sh", CALLBACKS);
        dir
    };
    type Scenario = Box<dyn FnOnce() + Send>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("slots, metrics, status", {
            let d = mk("inproc-slots");
            Box::new(move || slots_metrics_and_status(d))
        }),
        ("supd catch-up", {
            let d = mk("inproc-catchup");
            Box::new(move || supd_catch_up(d, "1d", boundary))
        }),
        ("supd --catch-up 0", {
            let d = mk("inproc-nocatchup");
            Box::new(move || supd_catch_up(d, "0", boundary))
        }),
        ("scheduler catch-up", {
            let d = mk("sched-catchup");
            Box::new(move || scheduler_catch_up(d, boundary))
        }),
        ("no or corrupt state", {
            let d = mk("inproc-nostate");
            Box::new(move || without_usable_state(d))
        }),
        ("full vs busy", {
            let d = mk("inproc-full");
            Box::new(move || full_is_retried_busy_is_skipped(d))
        }),
        ("on-failure", {
            let d = mk("inproc-hook");
            Box::new(move || on_failure(d))
        }),
    ];
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|(name, f)| (name, std::thread::spawn(f)))
        .collect();
    let failed: Vec<&str> = handles
        .into_iter()
        .filter_map(|(name, h)| h.join().is_err().then_some(name))
        .collect();
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}

/// Quick ones, no minute boundary: an unreadable schedule is logged at the change; a
/// healthcheck ping logs at debug only; SIGTERM is answered during a 100,000-line
/// reload.
#[test]
fn unreadable_schedule_is_logged_at_the_change_and_pings_log_at_debug() {
    let dir = TempDir::new("sched-unreadable");
    let run = dir.file("run");
    std::fs::create_dir(&run).unwrap();
    let file = dir.write("schedule.cron", "@yearly svc act\n");
    let sched = scheduler(&file, &run, &[]);
    sched.line_with(&["scheduler started", "jobs=1"], Duration::from_secs(10));
    std::os::unix::fs::symlink("/nonexistent/schedule.cron", dir.file("new.cron")).unwrap();
    std::fs::rename(dir.file("new.cron"), &file).unwrap();
    let line = sched.line_with(
        &["cannot read the schedule; keeping the old one"],
        Duration::from_secs(5),
    );
    assert!(line.contains("file change"), "{line}");

    dir.write("callbacks.sh", CALLBACKS);
    let svc = service(Mode::Subreaper, dir.path(), "ping", &[], &[]);
    let sock = dir.file("run-ping");
    wait_for(Duration::from_secs(10), lazy(|| svc.log.all()), || {
        sock.join("svc-request.sock").exists()
    });
    for action in ["ping", "status"] {
        let out = supd()
            .args(["ctl", "--socket-dir"])
            .arg(&sock)
            .args([action, "svc"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    svc.log
        .line_with(&["request", "action=status"], Duration::from_secs(5));
    assert!(
        !svc.log.all().contains("action=ping"),
        "-v (info) shows no ping: {}",
        svc.log.all()
    );
}

#[test]
fn sigterm_is_answered_during_a_reload_of_100000_lines() {
    let dir = TempDir::new("sched-bigreload");
    let mut text = String::with_capacity(4 << 20);
    for n in 0..100_000 {
        text.push_str(&format!("{} {} * * * svc a{n}\n", n % 60, (n / 60) % 24));
    }
    let file = dir.write("schedule.cron", &text);
    let mut sched = scheduler(&file, dir.path(), &[]);
    sched.line_with(
        &["scheduler started", "jobs=100000"],
        Duration::from_secs(60),
    );
    // A changed file (every job new) and SIGTERM right behind the reload.
    std::fs::write(&file, text.replace(" svc ", " other ")).unwrap();
    sched.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    sched.signal(libc::SIGTERM);
    let status = sched
        .child
        .wait_exit(Duration::from_secs(5), "the scheduler to stop");
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}
