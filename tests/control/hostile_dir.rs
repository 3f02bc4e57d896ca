//! A socket directory others may write to (a Kubernetes emptyDir is 0777; 1777 is the
//! sticky variant), attacked by uid 65534 (`setpriv --reuid=65534 --regid=65534
//! --clear-groups`): the symlink swap after bind, a FIFO or a symlink at the lock path,
//! an impostor squatting on the socket's name before supd starts, and one that renames
//! supd's socket away and binds its own. No file outside supd's own changes mode or
//! owner, supd never blocks, and clients (supctl, exit 76, and the scheduler) refuse the
//! impostor.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{fixture, lazy, stderr, stdout, supd, wait_for, Guarded, TempDir};

/// Both kinds of world-writable socket directory.
const DIR_MODES: [u32; 2] = [0o777, 0o1777];

/// The attacker's tools, in perl (core modules only), run as uid 65534.
const ATTACKER: &str = r#"
use strict; use warnings; use Socket; use IO::Socket::UNIX; use IO::Handle; use POSIX ();
my ($what, $path, $arg) = @ARGV;
STDOUT->autoflush(1); $SIG{PIPE} = "IGNORE";
if ($what eq 'swap') {
    # The moment a socket appears at $path, replace it with a symlink to $arg; take
    # the symlink away again a little later (so that the next start finds no file).
    my $tmp = "$path.swap$$";
    while (1) {
        symlink($arg, $tmp) unless lstat($tmp);
        if (lstat($path) && -S _) {
            rename($tmp, $path);
            select(undef, undef, undef, 0.05);
            unlink($path) if lstat($path) && -l _;
        }
    }
} elsif ($what eq 'fifo') {
    POSIX::mkfifo($path, 0666) or die "mkfifo: $!";
    print "ready\n"; sleep 1000;
} elsif ($what eq 'symlink') {
    symlink($arg, $path) or die "symlink: $!";
    print "ready\n"; sleep 1000;
} elsif ($what eq 'squat' || $what eq 'hijack') {
    if ($what eq 'hijack') {
        if (!rename($path, "$path.moved")) { print "rename failed: $!\n"; sleep 1000; }
    }
    my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 64)
        or do { print "bind failed: $!\n"; sleep 1000; exit 1 };
    chmod 0666, $path;
    print "ready\n";
    while (my $client = $server->accept) {
        my $line = <$client>;
        if (defined $line) { open(my $seen, '>>', "$path.seen"); print $seen $line; close $seen; }
        print $client qq({"event":"started","v":1,"action":"nightly-backup","id":1}\n);
        print $client qq({"event":"stdout","line":"backup OK"}\n);
        print $client qq({"event":"exit","code":0,"duration_ms":1}\n);
        close $client;
    }
}
"#;

/// A temp dir holding `run/` (mode `mode`, the socket dir) and, outside it, root's own
/// files (the attacker's targets).
struct Hostile {
    top: TempDir,
    service: String,
}

impl Hostile {
    fn new(tag: &str, mode: u32) -> Hostile {
        let top = TempDir::new(&format!("hostile-{tag}-{mode:o}"));
        std::fs::create_dir(top.file("run")).unwrap();
        std::fs::set_permissions(top.file("run"), std::fs::Permissions::from_mode(mode)).unwrap();
        Hostile {
            top,
            service: format!("svc-{tag}"),
        }
    }

    fn run(&self) -> PathBuf {
        self.top.file("run")
    }

    fn socket(&self) -> PathBuf {
        self.run().join(format!("{}-request.sock", self.service))
    }

    fn lock(&self) -> PathBuf {
        self.run()
            .join(format!("{}-request.sock.lock", self.service))
    }

    /// Start the attacker as uid 65534; with `wait_ready`, until it says "ready".
    fn attack(&self, args: &[&Path], wait_ready: bool) -> (Guarded, String) {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "perl",
                "-e",
            ])
            .arg(ATTACKER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = Guarded::spawn(&mut command);
        let mut line = String::new();
        if wait_ready {
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
        }
        (child, line)
    }

    /// Start supd for the service (the log goes to `log`, outside the socket dir).
    fn supd(&self, log: &Path, extra: &[&str]) -> Guarded {
        let mut command = supd();
        command
            .args(["-v", "--service", &self.service, "--socket-dir"])
            .arg(self.run())
            .arg("--callbacks")
            .arg(fixture("control/callbacks.sh"))
            .arg("--callback-lib")
            .arg(fixture("control/lib.sh"))
            .args(extra)
            .args(["--", "sleep", "1000"])
            .env("MARKS", self.top.path())
            .env_remove("SUPD_SOCKET_DIR")
            .env_remove("SUPD_SERVER_UID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Guarded::spawn(&mut command)
    }

    /// `supd ctl --socket-dir RUN ARGS...` as root.
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        supd()
            .arg("ctl")
            .arg("--socket-dir")
            .arg(self.run())
            .args(args)
            .env_remove("SUPD_SERVER_UID")
            .output()
            .unwrap()
    }

    /// Wait until supd (pid `pid`) answers a ping on the socket.
    fn wait_serving(&self, pid: u32, log: &Path) {
        let socket = self.socket();
        wait_for(
            Duration::from_secs(10),
            lazy(|| format!("supd {pid} to serve; log:\n{}", read(log))),
            || ping_pid(&socket) == Some(pid),
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The supd pid a raw ping on `socket` gets back, if any.
fn ping_pid(socket: &Path) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"root ping\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let line = reply.lines().next()?;
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    event["supd_pid"].as_u64().map(|p| p as u32)
}

/// (mode, uid, gid) of a file.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

#[test]
fn symlink_swap_after_bind_never_changes_another_file() {
    for mode in DIR_MODES {
        let hostile = Hostile::new("swap", mode);
        // A root-owned 0600 file outside the socket dir: what the attacker wants opened up.
        let target = hostile.top.write("secret", "root only\n");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = owner_and_mode(&target);
        assert_eq!(before, (0o600, 0, 0));
        let socket = hostile.socket();
        // Two loops replacing the socket with a symlink to the target.
        let _a = hostile.attack(&[Path::new("swap"), &socket, &target], false);
        let _b = hostile.attack(&[Path::new("swap"), &socket, &target], false);
        for start in 0..40 {
            let log = hostile.top.file(&format!("supd-{start}.log"));
            let mut supd =
                hostile.supd(&log, &["--socket-mode", "0666", "--socket-group", "65534"]);
            wait_for(
                Duration::from_secs(10),
                lazy(|| format!("supd to try the socket; log:\n{}", read(&log))),
                || {
                    let text = read(&log);
                    text.contains("serving requests")
                        || text.contains("not available yet")
                        || text.contains("unavailable")
                },
            );
            // Give the setup that follows bind its chance to go wrong.
            std::thread::sleep(Duration::from_millis(20));
            supd.terminate(Duration::from_secs(10), "supd to stop");
            assert_eq!(
                owner_and_mode(&target),
                before,
                "dir {mode:o}, start {start}: the symlink's target changed; log:\n{}",
                read(&log)
            );
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root only\n");
    }
}

#[test]
fn a_fifo_at_the_lock_path_never_blocks_supd() {
    for mode in DIR_MODES {
        let hostile = Hostile::new("fifo", mode);
        let lock = hostile.lock();
        let (_attacker, ready) = hostile.attack(&[Path::new("fifo"), &lock], true);
        assert_eq!(ready, "ready\n");
        assert!(std::fs::symlink_metadata(&lock)
            .unwrap()
            .file_type()
            .is_fifo());
        let log = hostile.top.file("supd.log");
        let mut supd = hostile.supd(&log, &[]);
        // supd neither blocks in open() nor gives up: it replaces the FIFO and serves.
        hostile.wait_serving(supd.id(), &log);
        assert!(
            read(&log).contains("refusing the lock file"),
            "{}",
            read(&log)
        );
        let meta = std::fs::symlink_metadata(&lock).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
        // And TERM is handled at once.
        let start = Instant::now();
        let status = supd.terminate(Duration::from_secs(10), "supd to stop");
        // The service (sleep) dies of the forwarded TERM: 128+15.
        assert_eq!(status.code(), Some(143), "{}", read(&log));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn a_symlink_at_the_lock_path_creates_nothing_at_its_target() {
    for mode in DIR_MODES {
        let hostile = Hostile::new("locklink", mode);
        // A root-only directory: the attacker wants root to create a file in it.
        let private = hostile.top.file("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = private.join("created-by-root");
        let lock = hostile.lock();
        let (_attacker, ready) = hostile.attack(&[Path::new("symlink"), &lock, &target], true);
        assert_eq!(ready, "ready\n");
        let log = hostile.top.file("supd.log");
        let mut supd = hostile.supd(&log, &[]);
        hostile.wait_serving(supd.id(), &log);
        assert!(
            !target.exists(),
            "supd created {} through the symlink",
            target.display()
        );
        let meta = std::fs::symlink_metadata(&lock).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        supd.terminate(Duration::from_secs(10), "supd to stop");
        assert!(!target.exists());
    }
}

#[test]
fn a_squatter_is_refused_by_supctl_and_replaced_by_supd() {
    for mode in DIR_MODES {
        let hostile = Hostile::new("squat", mode);
        let socket = hostile.socket();
        let (mut squatter, ready) = hostile.attack(&[Path::new("squat"), &socket], true);
        assert_eq!(ready, "ready\n");
        // Before supd runs: root's supctl must not believe the fake server.
        let out = hostile.ctl(&["send", &hostile.service, "nightly-backup"]);
        assert_eq!(
            out.status.code(),
            Some(76),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stdout(&out).contains("backup OK"), "{}", stdout(&out));
        assert!(stderr(&out).contains("uid 65534"), "{}", stderr(&out));
        // `supctl services` says so too.
        let out = hostile.ctl(&["services"]);
        assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));
        // Told to expect uid 65534 (flag or env), supctl believes it.
        let out = hostile.ctl(&["--server-uid", "65534", "send", &hostile.service, "x"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("backup OK"));
        let out = supd()
            .arg("ctl")
            .arg("--socket-dir")
            .arg(hostile.run())
            .args(["send", &hostile.service, "x"])
            .env("SUPD_SERVER_UID", "65534")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // A client that is uid 65534 itself believes its own uid.
        let out = supd()
            .arg("ctl")
            .arg("--socket-dir")
            .arg(hostile.run())
            .args(["send", &hostile.service, "x"])
            .env_remove("SUPD_SERVER_UID")
            .uid_gid(65534)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

        // supd holds the lock, so the live socket of another uid is an impostor: it
        // is replaced, and supd serves.
        let log = hostile.top.file("supd.log");
        let mut supd = hostile.supd(&log, &[]);
        hostile.wait_serving(supd.id(), &log);
        assert!(read(&log).contains("impostor"), "{}", read(&log));
        let out = hostile.ctl(&["send", &hostile.service, "nightly-backup"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("backup for root"), "{}", stdout(&out));
        assert!(!stdout(&out).contains("backup OK"));
        supd.terminate(Duration::from_secs(10), "supd to stop");
        squatter.terminate(Duration::from_secs(10), "the squatter to stop");
    }
}

#[test]
fn a_renamed_socket_and_a_hijacker_bound_in_its_place_are_refused() {
    for mode in DIR_MODES {
        let hostile = Hostile::new("hijack", mode);
        let log = hostile.top.file("supd.log");
        let mut supd = hostile.supd(&log, &["--socket-mode", "0666"]);
        hostile.wait_serving(supd.id(), &log);
        let socket = hostile.socket();
        let (_hijacker, said) = hostile.attack(&[Path::new("hijack"), &socket], true);
        let out = hostile.ctl(&["send", &hostile.service, "nightly-backup"]);
        assert!(!stdout(&out).contains("backup OK"), "{}", stdout(&out));
        if mode & 0o1000 == 0 {
            // 0777: anyone may rename root's socket away and bind its own.
            assert_eq!(said, "ready\n");
            assert_eq!(
                out.status.code(),
                Some(76),
                "{}{}",
                stdout(&out),
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("refusing the server"),
                "{}",
                stderr(&out)
            );
        } else {
            // 1777: the sticky bit keeps root's socket where it is; the real supd answers.
            assert!(said.starts_with("rename failed"), "{said}");
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert!(stdout(&out).contains("backup for root"));
        }
        supd.terminate(Duration::from_secs(10), "supd to stop");
    }
}

/// `Command::uid` and `gid` together.
trait UidGid {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}

impl UidGid for Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.gid(id).uid(id)
    }
}

#[test]
fn the_scheduler_sends_nothing_to_a_squatter_unless_told_its_uid() {
    let hostile = Hostile::new("sched", 0o777);
    let socket = hostile.socket();
    let (_squatter, ready) = hostile.attack(&[Path::new("squat"), &socket], true);
    assert_eq!(ready, "ready\n");
    let file = hostile.top.write(
        "schedule.cron",
        &format!("* * * * * forum {} nightly-backup\n", hostile.service),
    );
    let scheduler = |log: &Path, extra: &[&str]| {
        let mut command = supd();
        command
            .arg("scheduler")
            .arg("--file")
            .arg(&file)
            .arg("--socket-dir")
            .arg(hostile.run())
            .args(["--retry-for", "5s"])
            .args(extra)
            .env_remove("SUPD_SERVER_UID")
            .env_remove("SUPD_VERBOSE")
            .env_remove("SUPD_QUIET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Guarded::spawn(&mut command)
    };
    // The same job in two schedulers, due at the same minute: one refuses the squatter,
    // the other was told to expect uid 65534.
    let refusing_log = hostile.top.file("refusing.log");
    let trusting_log = hostile.top.file("trusting.log");
    let mut refusing = scheduler(&refusing_log, &[]);
    let mut trusting = scheduler(&trusting_log, &["--server-uid", "65534"]);
    // The job is due within a minute; the refusing one retries for 5 s, then loses it.
    wait_for(
        Duration::from_secs(80),
        lazy(|| format!("the refusing scheduler's run:\n{}", read(&refusing_log))),
        || {
            let log = read(&refusing_log);
            log.contains("job lost") || log.contains("job ran")
        },
    );
    let refused = read(&refusing_log);
    assert!(!refused.contains("job ran"), "{refused}");
    assert!(refused.contains("job lost"), "{refused}");
    assert!(refused.contains("refusing the server"), "{refused}");
    assert!(refused.contains("uid 65534"), "{refused}");
    wait_for(
        Duration::from_secs(10),
        lazy(|| {
            format!(
                "the trusting scheduler to run the job:\n{}",
                read(&trusting_log)
            )
        }),
        || read(&trusting_log).contains("job ran"),
    );
    // Only the trusting scheduler's request reached the squatter.
    let seen = read(
        &hostile
            .run()
            .join(format!("{}-request.sock.seen", hostile.service)),
    );
    assert_eq!(seen.lines().count(), 1, "{seen:?}");
    refusing.terminate(Duration::from_secs(10), "the scheduler to stop");
    trusting.terminate(Duration::from_secs(10), "the scheduler to stop");
}
