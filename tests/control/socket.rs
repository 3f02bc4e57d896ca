//! The socket file: its mode, group and peer-credential checks, a stale socket
//! replaced, a live one (even with a full backlog) kept, and the lock that decides
//! between two starting supds.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use super::{events, Server};
use crate::util::{fixture, lazy, stderr, wait_for, Guarded, TempDir};

#[test]
fn peer_credentials_socket_mode_and_ownership() {
    // Default mode 0660; --socket-group sets the group.
    let supd = Server::start("mode", &["--socket-group", "65534"]);
    let meta = std::fs::metadata(supd.socket()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), 65534);
    drop(supd);

    // --allow-uid: uid 65534 is refused (77); root always passes.
    let supd = Server::start("creds", &["--allow-uid", "1000", "--socket-mode", "0666"]);
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
    let mut first = Server::start_in(dir, service, &[]);
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
    let mut second = Server::spawn(first.dir.path(), service, &[]);
    wait_for(
        Duration::from_secs(10),
        lazy(|| {
            format!(
                "the second supd to find the socket live; log:\n{}",
                first.log()
            )
        }),
        || first.log().contains("is live"),
    );
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    assert_eq!(
        events(&first.raw(b"root ping\n", false))[0]["supd_pid"],
        first.pid()
    );
    second.terminate(Duration::from_secs(10), "the second supd to stop");
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
    let mut supd = Server::start_in(dir, service, &[]);
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("supd to find the socket live; log:\n{}", supd.log())),
        || supd.log().contains("is live"),
    );
    let start = Instant::now();
    let status = supd.stop();
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
    let mut supd = Guarded::spawn(
        crate::util::supd()
            .args(["-v", "--service", service, "--socket-dir"])
            .arg(dir.path())
            .arg("--callbacks")
            .arg(fixture("control/callbacks.sh"))
            .args(["--", "sleep", "1000"])
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("supd to leave the locked socket alone; log:\n{}", logged())),
        || logged().contains("is live"),
    );
    supd.terminate(Duration::from_secs(10), "supd to stop");
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "stale socket was taken"
    );
    drop(held);
    // Lock released: the next supd replaces the stale socket and serves.
    let supd = Server::start_in(dir, service, &[]);
    // (Not the inode: tmpfs may hand the new socket the old one's number.)
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the new socket to accept; log:\n{}", supd.log())),
        || UnixStream::connect(&path).is_ok(),
    );
    assert_eq!(
        events(&supd.raw(b"root ping\n", false))[0]["supd_pid"],
        supd.pid()
    );
}
