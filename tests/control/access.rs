//! The allowlist (`--allow-uid`, `--allow-gid`) against other uids: a denied uid's flood
//! of connections is closed at accept and costs allowed clients nothing, and
//! supplementary groups count for `--allow-gid`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Server;
use crate::util::{lazy, stderr, supd_bin, wait_for, Guarded, TempDir};

/// setpriv's arguments for uid/gid 65534 with no supplementary groups.
const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// A server in a 0777 directory with a 0666 socket: anyone can connect, only the
/// allowlist decides.
fn open_server(tag: &str, allow: &[&str]) -> Server {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut extra = vec!["--socket-mode", "0666"];
    extra.extend_from_slice(allow);
    Server::start_in(dir, &format!("svc-{tag}"), &extra)
}

/// perl: connects COUNT times to PATH (non-blocking: a full backlog counts as a
/// failure), holds every connection, writes `held OK FAILED` to OUT, then sleeps.
const FLOOD: &str = r#"
use Socket;
use Fcntl;
my ($path, $count, $out) = @ARGV;
my (@held, $failed);
for (1 .. $count) {
    socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
    fcntl($s, F_SETFL, O_NONBLOCK) or die "fcntl: $!";
    if (connect($s, pack_sockaddr_un($path))) { push @held, $s } else { $failed++ }
}
open(my $f, '>', "$out.tmp") or die "$out: $!";
print $f "held ", scalar(@held), " ", $failed + 0, "\n";
close $f;
rename("$out.tmp", $out) or die "rename: $!";
sleep 300;
"#;

#[test]
fn a_denied_uids_connection_flood_does_not_slow_allowed_pings() {
    // Before the check at accept: the denied peers' connections each took a read slot
    // (64, evicted after 200 ms each), so allowed pings waited seconds behind them, or
    // found the backlog full.
    let supd = open_server("denyflood", &["--allow-uid", "1000"]);
    let report = supd.marks().join("flood.out");
    let mut flood = Command::new("setpriv");
    flood
        .args(NOBODY)
        .args(["perl", "-e", FLOOD])
        .arg(supd.socket())
        .arg("3000")
        .arg(&report);
    let _flood = Guarded::spawn(&mut flood);
    let line = wait_for(
        Duration::from_secs(60),
        lazy(|| format!("the flood helper; log:\n{}", supd.log())),
        || std::fs::read_to_string(&report).ok(),
    );
    assert!(line.starts_with("held "), "flood helper said {line:?}");
    eprintln!("flood: {}", line.trim());
    for _ in 0..3 {
        let start = Instant::now();
        let out = supd.ctl_output(&["ping", &supd.service]);
        let took = start.elapsed();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(took < Duration::from_secs(1), "ping took {took:?}");
    }
    // The flood was refused (logged at most once a second), never read.
    assert!(supd.log().contains("request denied"), "{}", supd.log());
    assert!(
        !supd.log().contains("too many idle connections"),
        "{}",
        supd.log()
    );
}

#[test]
fn allow_gid_honours_supplementary_groups() {
    // uid/gid 65533 whose only tie to the allowlist is the supplementary group 65534.
    // Before: only the primary gid counted, and this was denied (77).
    let supd = open_server("suppl", &["--allow-gid", "65534"]);
    let send = |setpriv: &[&str]| {
        Command::new("setpriv")
            .args(setpriv)
            .arg(supd_bin())
            .args(["ctl", "--socket-dir"])
            .arg(supd.marks())
            .args(["send", &supd.service, "exit", "0"])
            .output()
            .unwrap()
    };
    let out = send(&["--reuid=65533", "--regid=65533", "--groups=65534"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = send(&NOBODY[..]);
    assert_eq!(out.status.code(), Some(0), "primary gid: {}", stderr(&out));
    let out = send(&["--reuid=65533", "--regid=65533", "--groups=65532"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("denied"), "{}", stderr(&out));
    wait_for(
        Duration::from_secs(5),
        lazy(|| format!("the denial in the log:\n{}", supd.log())),
        || supd.log().contains("request denied"),
    );
}
