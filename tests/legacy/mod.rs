//! Migration fidelity (issue 10): callbacks files written for the legacy stack (tini +
//! supervisor.py + listener.sh) run unchanged under supd, with the shipped helper
//! library (target-sbin/callbacks-lib.sh), and behave as they did. Real bash, real
//! signals, real logrotate; supd is PID 1 of a fresh PID namespace, as in a container,
//! so the legacy `kill -USR1 1` reaches it.
//!
//! Fixtures (tests/legacy/fixtures): `docker-callbacks.sh` in the legacy style,
//! `service.pl` (a redis-like service without a USR1 handler, or a master with workers
//! that keep USR1's default action), `policy/*.conf` (the legacy rotation table).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{alive, children_of, send, stderr, stdout, supd_bin, wait_for, Guarded, TempDir};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/legacy/fixtures")
        .join(name)
}

fn callbacks_lib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target-sbin/callbacks-lib.sh")
}

/// The service fixture to run.
enum Service {
    /// No SIGUSR1 handler: USR1 kills it.
    Redis,
    /// A master that handles USR1, with two workers that keep its default.
    Master,
}

/// One container's worth: supd as PID 1 (unshare) running `service.pl`, its socket,
/// log dir, conf dir and WORKDIR in a temp dir.
struct Stack {
    dir: TempDir,
    service: String,
    supd: Guarded,
    /// supd's pid in our namespace.
    supd_pid: i32,
}

impl Stack {
    fn start(tag: &str, service: Service, policy: Option<&str>, extra: &[&str]) -> Stack {
        let policy = policy.map(|name| fixture(&format!("policy/{name}.conf")));
        Stack::start_with(
            tag,
            service,
            &fixture("docker-callbacks.sh"),
            policy,
            extra,
            &[],
        )
    }

    /// `start`, with another callbacks file, policy file and environment.
    fn start_with(
        tag: &str,
        service: Service,
        callbacks: &Path,
        policy: Option<PathBuf>,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Stack {
        let dir = TempDir::new(&format!("legacy-{tag}"));
        let name = format!("legacy-{tag}");
        for sub in ["log", "conf", "workdir", "run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        if let Some(policy) = policy {
            std::fs::copy(policy, dir.path().join("conf/logrotate.conf")).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("supd.log")).unwrap();
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(supd_bin())
            .args(["-v", "--service", &name, "--socket-dir"])
            .arg(dir.path().join("run"))
            .arg("--callbacks")
            .arg(callbacks)
            .arg("--callback-lib")
            .arg(callbacks_lib())
            .args(extra)
            .args(["--", "perl"])
            .arg(fixture("service.pl"))
            .arg(match service {
                Service::Redis => "redis",
                Service::Master => "master",
            })
            .arg(dir.path())
            // Docker starts PID 1 in the image's WORKDIR.
            .current_dir(dir.path().join("workdir"))
            .env("WORK", dir.path())
            .env("LOGROTATE_DIR", dir.path().join("log"))
            .env("LOGROTATE_POLICY", dir.path().join("conf/logrotate.conf"))
            .envs(env.iter().copied())
            .env_remove("SUPD_SOCKET_DIR")
            .env_remove("SUPD_SIGNAL_GROUP")
            .env_remove("SUPD_SINGLE_CHILD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let supd = Guarded::spawn(&mut command);
        let unshare = supd.id() as i32;
        let mut supd_pid = 0;
        wait_for(Duration::from_secs(10), "supd under unshare", || {
            supd_pid = children_of(unshare).first().copied().unwrap_or(0);
            supd_pid != 0
        });
        let stack = Stack {
            dir,
            service: name,
            supd,
            supd_pid,
        };
        wait_for(Duration::from_secs(10), "service and socket", || {
            stack.dir.path().join("service.ready").exists()
                && stack.socket().exists()
                && (!matches!(service, Service::Master)
                    || stack.dir.path().join("workers").exists())
        });
        stack
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path(&format!("run/{}-request.sock", self.service))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("supd.log")).unwrap_or_default()
    }

    /// The service: supd's only long-lived child (callbacks come and go).
    fn service_pid(&self) -> i32 {
        let mut pid = 0;
        wait_for(Duration::from_secs(10), "the service", || {
            pid = children_of(self.supd_pid)
                .into_iter()
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "perl")
                })
                .unwrap_or(0);
            pid != 0
        });
        pid
    }

    /// The master's workers, as pids of our namespace (children of the service).
    fn workers(&self) -> Vec<i32> {
        let mut workers = Vec::new();
        wait_for(Duration::from_secs(10), "the workers", || {
            workers = children_of(self.service_pid());
            workers.len() == 2
        });
        workers
    }

    fn master_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("master.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn ctl(&self) -> Command {
        let mut command = Command::new(supd_bin());
        command
            .arg("ctl")
            .arg("--socket-dir")
            .arg(self.path("run"))
            .env_remove("SUPD_SOCKET_DIR");
        command
    }

    /// `supctl send SERVICE ACTION`, as the scheduler would (user forum).
    fn send(&self, action: &str) -> Output {
        self.ctl()
            .args(["send", &self.service, action, "--user", "forum"])
            .output()
            .unwrap()
    }

    /// `supctl send SERVICE ARGS...` (user forum).
    fn send_args(&self, args: &[&str]) -> Output {
        self.ctl()
            .args(["send", &self.service])
            .args(args)
            .args(["--user", "forum"])
            .output()
            .unwrap()
    }

    /// The legacy scheduler.py's request: `user action`, no newline, half-close.
    fn legacy_send(&self, request: &str) -> String {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    /// supd still runs, still answers, and its service is the same process.
    fn assert_up(&self, service: i32) {
        // Give a stray signal time to land.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            alive(service),
            "the service died; supd log:\n{}",
            self.log()
        );
        let out = self.ctl().args(["ping", &self.service]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "ping: {}", stderr(&out));
        assert_eq!(self.service_pid(), service);
    }

    /// SIGTERM to supd (PID 1 inside), its exit status.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: plain syscall on the supd we started.
        unsafe { libc::kill(self.supd_pid, libc::SIGTERM) };
        self.wait()
    }

    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.supd.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "supd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A log file of `size` bytes (sparse: logrotate goes by st_size).
fn write_log(path: &Path, size: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(b"a log line\n").unwrap();
    file.set_len(size).unwrap();
}

/// logrotate's state: `log` last rotated `days` ago.
fn seed_state(stack: &Stack, log: &Path, days: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    let secs = when
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%-m-%-d-%-H:%-M:%-S"])
        .output()
        .unwrap();
    let stamp = stdout(&out).trim().to_string();
    std::fs::write(
        stack.path("log/.logrotate.state"),
        format!(
            "logrotate state -- version 2\n\"{}\" {stamp}\n",
            log.display()
        ),
    )
    .unwrap();
}

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// 1, 2. Rotation: the per-service policy file decides what is rotated and what is sent.

#[test]
fn redis_without_usr1_handler_survives_rotate_logs() {
    let stack = Stack::start("redis", Service::Redis, Some("redis"), &[]);
    let service = stack.service_pid();
    // redis's log dir belongs to redis (here nobody): logrotate needs the policy's `su`.
    let log = stack.path("log/redis-server.log");
    write_log(&log, 2 * MIB);
    for path in [stack.path("log"), log.clone()] {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    // Last rotated 40 days ago: `monthly` is due, and the log is over `minsize 1M`.
    seed_state(&stack, &log, 40);

    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Rotated as the policy says (delaycompress: .1 stays plain; create: a new log,
    // owned like the old one), and no signal: the service is alive.
    let rotated = stack.path("log/redis-server.log.1");
    assert_eq!(std::fs::metadata(&rotated).unwrap().len(), 2 * MIB);
    let fresh = std::fs::metadata(&log).unwrap();
    assert_eq!((fresh.len(), fresh.uid()), (0, 65534));
    stack.assert_up(service);

    // Just rotated: a second request finds nothing due (monthly), and rotates nothing.
    write_log(&log, 2 * MIB);
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stack.path("log/redis-server.log.2").exists());
    assert!(!stack.path("log/redis-server.log.2.gz").exists());
    stack.assert_up(service);

    // Not vacuous: this service really dies of USR1 (128 + 10, as the issue's redis).
    let mut stack = stack;
    send(stack.supd_pid, libc::SIGUSR1); // the supd this test started

    assert_eq!(stack.wait(), Some(138));
}

#[test]
fn no_policy_file_means_no_rotation_and_no_signal() {
    let stack = Stack::start("nopolicy", Service::Redis, None, &[]);
    let service = stack.service_pid();
    let log = stack.path("log/redis-server.log");
    write_log(&log, 60 * MIB);
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no rotation policy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 60 * MIB);
    let entries: Vec<_> = std::fs::read_dir(stack.path("log"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["redis-server.log"], "nothing else in the log dir");
    stack.assert_up(service);
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn php_master_reopens_on_rotate_logs_and_its_workers_survive() {
    let stack = Stack::start("php", Service::Master, Some("php"), &[]);
    let service = stack.service_pid();
    let workers = stack.workers();
    // Over `maxsize 5M`: due whatever the time rules say (no state yet).
    let log = stack.path("log/php-fpm.log");
    write_log(&log, 6 * MIB);
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stack.path("log/php-fpm.log.1").exists());
    // The policy's `signal USR1`: the master reopened its logs, once; the workers,
    // which would die of a USR1, never got it.
    wait_for(Duration::from_secs(5), "master got USR1", || {
        !stack.master_log().is_empty()
    });
    stack.assert_up(service);
    assert_eq!(stack.master_log(), ["USR1"]);
    for worker in &workers {
        assert!(alive(*worker), "worker {worker} died of the USR1");
    }
    // A small log is not due: nothing rotated, nothing sent.
    write_log(&log, 1000);
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stack.path("log/php-fpm.log.2.gz").exists());
    stack.assert_up(service);
    assert_eq!(stack.master_log(), ["USR1"]);
    // TERM goes to the whole group: the workers (TERM default) end with the master.
    assert_eq!(stack.stop(), Some(0));
    for worker in &workers {
        assert!(!alive(*worker));
    }
}

#[test]
fn apache2_policy_rotates_with_dateext_past_maxsize() {
    let stack = Stack::start("apache2", Service::Master, Some("apache2"), &[]);
    let service = stack.service_pid();
    let workers = stack.workers();
    write_log(&stack.path("log/access.log"), 51 * MIB);
    write_log(&stack.path("log/error.log"), 10 * MIB);
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let today = stdout(&Command::new("date").arg("+%Y%m%d").output().unwrap())
        .trim()
        .to_string();
    // dateext: access.log-YYYYMMDD. error.log is under maxsize and not due by time.
    assert!(
        stack.path(&format!("log/access.log-{today}")).exists(),
        "{:?}",
        std::fs::read_dir(stack.path("log"))
            .unwrap()
            .collect::<Vec<_>>()
    );
    assert!(!stack.path(&format!("log/error.log-{today}")).exists());
    assert_eq!(
        std::fs::metadata(stack.path("log/error.log"))
            .unwrap()
            .len(),
        10 * MIB
    );
    wait_for(Duration::from_secs(5), "master got USR1", || {
        !stack.master_log().is_empty()
    });
    stack.assert_up(service);
    assert_eq!(stack.master_log(), ["USR1"]);
    assert!(workers.iter().all(|w| alive(*w)));
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn kill_usr1_1_from_a_callback_reaches_the_master_once_not_its_workers() {
    let stack = Stack::start("kill1", Service::Master, None, &[]);
    let service = stack.service_pid();
    let workers = stack.workers();
    let out = stack.send("reopen-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(Duration::from_secs(5), "master got USR1", || {
        !stack.master_log().is_empty()
    });
    stack.assert_up(service);
    assert_eq!(stack.master_log(), ["USR1"]);
    assert!(workers.iter().all(|w| alive(*w)));
    assert_eq!(stack.stop(), Some(0));
}

/// The stack's own callbacks (service/<svc>/bin/docker-callbacks.sh) with their own
/// policy files (service/<svc>/conf/logrotate.conf).
fn stack_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn stack_web_callbacks_follow_their_policy_and_signal_apache_only() {
    let stack = Stack::start_with(
        "web",
        Service::Master,
        &stack_file("service/web/bin/docker-callbacks.sh"),
        Some(stack_file("service/web/conf/logrotate.conf")),
        &[],
        &[],
    );
    let service = stack.service_pid();
    let workers = stack.workers();
    let log = stack.path("log/access.log");
    write_log(&log, 5000);
    // `weekly`, and no state yet: logrotate records the log and leaves it.
    let out = stack.send("rotate-logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stack.path("log/access.log.1").exists());
    stack.assert_up(service);
    assert!(stack.master_log().is_empty());
    // `rotate-logs now` (what the e2e test sends): rotated, USR1 to Apache's parent.
    let out = stack.send_args(&["rotate-logs", "now"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(stack.path("log/access.log.1"))
            .unwrap()
            .len(),
        5000
    );
    wait_for(Duration::from_secs(5), "apache got USR1", || {
        !stack.master_log().is_empty()
    });
    stack.assert_up(service);
    assert_eq!(stack.master_log(), ["USR1"]);
    assert!(workers.iter().all(|w| alive(*w)));
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn stack_mysql_callbacks_rotate_then_flush_logs_without_a_signal() {
    // mariadb-admin, standing in: records that it was asked to flush the logs.
    let bin = TempDir::new("legacy-mysql-bin");
    let admin = bin.write(
        "mariadb-admin",
        "#!/bin/sh\necho \"$*\" >>\"$WORK/mariadb-admin.log\"\n",
    );
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stack = Stack::start_with(
        "mysql",
        Service::Redis,
        &stack_file("service/mysql/bin/docker-callbacks.sh"),
        Some(stack_file("service/mysql/conf/logrotate.conf")),
        &[],
        &[("PATH", std::ffi::OsStr::new(&path))],
    );
    let service = stack.service_pid();
    write_log(&stack.path("log/error.log"), 5000);
    let out = stack.send_args(&["rotate-logs", "now"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stack.path("log/error.log.1").exists());
    assert_eq!(
        std::fs::read_to_string(stack.path("mariadb-admin.log")).unwrap(),
        "flush-logs\n"
    );
    // No signal: this service has no USR1 handler and is alive.
    stack.assert_up(service);
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn stack_mysql_backup_that_fails_leaves_no_partial_dump_under_nounset() {
    // mariadb lists one database; mariadb-dump writes half a dump and fails (status 3).
    let bin = TempDir::new("legacy-mysql-fail-bin");
    for (name, script) in [
        ("mariadb", "#!/bin/sh\necho forum\n"),
        ("mariadb-dump", "#!/bin/sh\necho 'half a dump'\nexit 3\n"),
    ] {
        let path = bin.write(name, script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let backups = TempDir::new("legacy-mysql-backups");
    let stack = Stack::start_with(
        "mysql-fail",
        Service::Redis,
        &stack_file("service/mysql/bin/docker-callbacks.sh"),
        None,
        &[],
        &[
            ("PATH", std::ffi::OsStr::new(&path)),
            ("BACKUP_DIR", backups.path().as_os_str()),
        ],
    );
    let out = stack.send("nightly-backup");
    // pipefail: the dump's status, not xz's 0; and the EXIT trap cleaned up.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("unbound variable"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(backups.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(stack.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 4, 5. The callback environment: logError exits, set -Eeuo pipefail, ERR report,
// WORKDIR, $DTS.

#[test]
fn log_error_ends_the_callback_before_the_destructive_command() {
    let stack = Stack::start("logerror", Service::Redis, None, &[]);
    std::fs::create_dir_all(stack.path("cache")).unwrap();
    std::fs::write(stack.path("cache/precious"), "data").unwrap();
    let out = stack.send("clean-cache");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no .keep: refusing to clean it"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("cleaned"));
    assert!(stack.path("cache/precious").exists(), "the rm ran");
    // With the .keep, the same callback does clean.
    std::fs::write(stack.path("cache/.keep"), "").unwrap();
    let out = stack.send("clean-cache");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stack.path("cache/precious").exists());
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn unset_variable_aborts_with_unbound_variable() {
    let stack = Stack::start("nounset", Service::Redis, None, &[]);
    let out = stack.send("vhost-check");
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("VHOST: unbound variable"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("vhost ok"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("checking vhost"), "{}", stdout(&out));
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn failing_pipe_fails_and_the_err_trap_names_file_line_and_command() {
    let stack = Stack::start("pipefail", Service::Redis, None, &[]);
    let out = stack.send("pipe-check");
    // grep's status 2 (no such file), through pipefail; `sort` alone would say 0.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stdout(&out).contains("after the pipe"));
    let text = std::fs::read_to_string(fixture("docker-callbacks.sh")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("no-such-file"))
        .unwrap()
        + 1;
    let report = format!(
        "{}:{line}: CB_pipe_check: 'sort' failed with status 2",
        fixture("docker-callbacks.sh").display()
    );
    assert!(
        stderr(&out).contains(&report),
        "want {report:?} in:\n{}",
        stderr(&out)
    );
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn callbacks_run_in_the_workdir_with_dts_set() {
    let stack = Stack::start("env", Service::Redis, None, &[]);
    let out = stack.send("show-env");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let workdir = stack.path("workdir");
    assert!(
        text.contains(&format!("cwd={}\n", workdir.display())),
        "{text}"
    );
    let dts = text
        .lines()
        .find_map(|l| l.strip_prefix("dts="))
        .unwrap_or_default();
    let shape: String = dts
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99999999-999999", "DTS={dts:?}");
    assert_eq!(stack.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 6. `_` in the action is the same action as `-`.

#[test]
fn underscore_action_is_the_dashed_action() {
    let stack = Stack::start("underscore", Service::Redis, Some("redis"), &[]);
    // The legacy scheduler's exact bytes: `user action`, no newline.
    let reply = stack.legacy_send("forum rotate_logs");
    assert!(
        reply.lines().next().is_some_and(
            |l| l.contains(r#""event":"started""#) && l.contains(r#""action":"rotate-logs""#)
        ),
        "{reply}"
    );
    assert!(reply.contains(r#""event":"exit","code":0"#), "{reply}");
    assert!(reply.contains("rotate-logs for forum"), "{reply}");
    // supctl too; and the two spellings are one action: busy while the other runs.
    let mut first = Guarded::spawn(
        stack
            .ctl()
            .args(["send", &stack.service, "slow_task"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_for(Duration::from_secs(10), "slow task started", || {
        stack.path("slow.started").exists()
    });
    let out = stack.send("slow-task");
    assert_eq!(out.status.code(), Some(75), "busy: {}", stderr(&out));
    std::fs::write(stack.path("slow.go"), "").unwrap();
    let mut text = String::new();
    first
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert!(text.contains("slow task done for root"), "{text}");
    assert_eq!(stack.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 7. A non-root scheduler, with the socket setup the migration guide documents.

/// `setpriv ... supd ctl send SERVICE reopen-logs`: exit code and stderr.
fn send_as(stack: &Stack, setpriv: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("setpriv")
        .args(setpriv)
        .arg(supd_bin())
        .arg("ctl")
        .arg("--socket-dir")
        .arg(stack.path("run"))
        .args(["send", &stack.service, "show-env"])
        .env_remove("SUPD_SOCKET_DIR")
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];
/// A uid of its own whose only tie to the socket is the supplementary group 65534.
const SUPPLEMENTARY: [&str; 3] = ["--reuid=65533", "--regid=65533", "--groups=65534"];

#[test]
fn non_root_scheduler_is_refused_by_the_secure_default() {
    let stack = Stack::start("nonroot-default", Service::Redis, None, &[]);
    let meta = std::fs::metadata(stack.socket()).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o660, 0, 0)
    );
    let (code, err) = send_as(&stack, &NOBODY);
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn non_root_scheduler_with_socket_group_gets_through() {
    // Guide, option 1: `--socket-group GID` (SUPD_SOCKET_GROUP) on the service, the same
    // gid as the scheduler's primary or supplementary group.
    let stack = Stack::start(
        "nonroot-group",
        Service::Redis,
        None,
        &["--socket-group", "65534"],
    );
    let meta = std::fs::metadata(stack.socket()).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o660, 65534));
    for setpriv in [&NOBODY, &SUPPLEMENTARY] {
        let (code, err) = send_as(&stack, setpriv);
        assert_eq!(code, Some(0), "{setpriv:?}: {err}");
    }
    // Any other uid without the group still cannot connect.
    let (code, err) = send_as(
        &stack,
        &["--reuid=65533", "--regid=65533", "--clear-groups"],
    );
    assert_eq!(code, Some(69), "{err}");
    assert!(stack.log().contains("peer_uid=65534"), "{}", stack.log());
    assert_eq!(stack.stop(), Some(0));
}

#[test]
fn non_root_scheduler_with_allow_uid_gets_through_others_are_denied() {
    // Guide, option 2: `--socket-mode 0666 --allow-uid UID`: anyone may connect, only
    // UID (and root) may send; the check is the peer's SO_PEERCRED uid.
    let stack = Stack::start(
        "nonroot-uid",
        Service::Redis,
        None,
        &["--socket-mode", "0666", "--allow-uid", "65534"],
    );
    let (code, err) = send_as(&stack, &NOBODY);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = send_as(
        &stack,
        &["--reuid=65533", "--regid=65533", "--clear-groups"],
    );
    assert_eq!(code, Some(77), "{err}");
    assert!(err.contains("denied"), "{err}");
    assert_eq!(stack.stop(), Some(0));
}
