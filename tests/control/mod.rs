//! The request socket and supctl, against the real `supd` binary: real sockets, real
//! bash callbacks (tests/fixtures/control/callbacks.sh), and as the service the signal
//! recorder (tests/fixtures/record-signals.pl), which logs every signal it receives.

mod access;
mod clean_slate;
mod clients;
mod hardening;
mod hostile_dir;
mod limits;
mod requests;
mod rolling_update;
mod shutdown;
mod socket;
mod stalled_log;
mod supctl;
mod term_once;
mod volume;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::{fixture, lazy, supd, wait_for, Guarded, TempDir};

/// A running supd serving service `service` in its own temp dir, with the fixtures.
struct Server {
    /// Declared first: dropped (killed with its tree) before the directory goes.
    child: Guarded,
    dir: TempDir,
    service: String,
}

impl Server {
    fn start(tag: &str, extra: &[&str]) -> Server {
        let dir = TempDir::new(&format!("ctl-{tag}"));
        let service = format!("svc-{tag}");
        Server::start_in(dir, &service, extra)
    }

    fn start_in(dir: TempDir, service: &str, extra: &[&str]) -> Server {
        Server::start_configured(dir, service, extra, |_| {})
    }

    /// [`start_in`](Server::start_in), with whatever `configure` adds to supd's command.
    fn start_configured(
        dir: TempDir,
        service: &str,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = Server::command(dir.path(), service, extra);
        configure(&mut command);
        let server = Server {
            child: Guarded::spawn(&mut command),
            dir,
            service: service.to_string(),
        };
        let ready = server.dir.file("service.ready");
        wait_for(
            Duration::from_secs(10),
            lazy(|| format!("supd to come up; log:\n{}", server.log())),
            || ready.exists() && server.socket().exists(),
        );
        server
    }

    /// Start supd for `service` in `dir` without waiting for it; its log goes to a
    /// `supd-N.log` of its own there.
    fn spawn(dir: &Path, service: &str, extra: &[&str]) -> Guarded {
        Guarded::spawn(&mut Server::command(dir, service, extra))
    }

    /// The command line of [`spawn`](Server::spawn).
    fn command(dir: &Path, service: &str, extra: &[&str]) -> Command {
        let log = std::fs::File::create(dir.join(format!("supd-{}.log", unique()))).unwrap();
        let mut command = supd();
        if !extra.contains(&"--callbacks") {
            command
                .arg("--callbacks")
                .arg(fixture("control/callbacks.sh"));
        }
        command
            .arg("-v")
            .args(["--service", service])
            .arg("--socket-dir")
            .arg(dir)
            .arg("--callback-lib")
            .arg(fixture("control/lib.sh"))
            .args(extra)
            .args(["--", "perl"])
            .arg(fixture("record-signals.pl"))
            .arg(dir)
            .args(["service", "TERM"])
            .env("MARKS", dir)
            .env_remove("SUPD_SOCKET_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn socket(&self) -> PathBuf {
        self.dir.file(&format!("{}-request.sock", self.service))
    }

    fn marks(&self) -> &Path {
        self.dir.path()
    }

    /// Everything every supd in this dir logged.
    fn log(&self) -> String {
        log_in(self.dir.path())
    }

    /// Signals the service received, one name a line.
    fn service_signals(&self) -> String {
        std::fs::read_to_string(self.dir.file("service.log")).unwrap_or_default()
    }

    fn service_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.dir.file("service.ready")).unwrap();
        text.trim().parse().unwrap()
    }

    /// `supd ctl --socket-dir DIR ARGS...`.
    fn ctl(&self) -> Command {
        let mut command = supd();
        command.arg("ctl").arg("--socket-dir").arg(self.dir.path());
        command
    }

    /// Start `supd ctl ... ARGS` and read the first line it prints; (the client, the
    /// line). The rest of its output is not read: its stdout is closed.
    fn ctl_first_line(&self, args: &[&str]) -> (Child, String) {
        let mut client = self
            .ctl()
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(client.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (client, line)
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

    /// SIGTERM and wait for the exit (the test fails after 10 s).
    fn stop(&mut self) -> ExitStatus {
        let dir = self.dir.path();
        self.child.terminate(
            Duration::from_secs(10),
            lazy(|| format!("supd to stop; log:\n{}", log_in(dir))),
        )
    }
}

/// Everything every supd logged in `dir` (their `supd-N.log` files).
fn log_in(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("supd-") && name.ends_with(".log") {
            all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    all
}

fn unique() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A reply's events, one JSON object a line.
fn events(reply: &str) -> Vec<serde_json::Value> {
    reply
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}
