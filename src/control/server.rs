//! The request socket server, inside supd's event loop (no extra threads).
//!
//! [`start`] binds `<socket-dir>/<service>-request.sock` synchronously (so init learns
//! about a bad directory or a live competitor before the service runs) and spawns the
//! accept loop on the current `LocalSet`. Each connection is a small task: read one
//! request line (at most 4 KiB, 5 s), check the peer, answer built-ins directly or
//! spawn the callback as its own task (see `callbacks`), then relay its events.
//!
//! Limits that keep a hostile or broken client from hurting the service or other
//! clients: the request size and idle time; at most [`MAX_READING`] connections still
//! sending their request (a new one evicts the oldest once that one had its chance, so a
//! flood of idle connections cannot lock out a real request); at most [`MAX_CONNECTIONS`] in all (beyond: accepted
//! and closed at once); a bounded outbox per client.
//!
//! Access: the socket file's mode and group are the first gate. When `--allow-uid` or
//! `--allow-gid` is given, the peer's SO_PEERCRED must match one of them; uid 0 and
//! supd's own uid are always allowed (they own the socket file anyway).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;

use crate::control::callbacks::{self, Ending, Outbox, Settings, Take};
use crate::control::protocol::{
    self, ErrorKind, Event, LastResult, Request, Running, Status, MAX_REQUEST, VERSION,
};
use crate::sys::reaper::Reaper;

/// Connections still sending their request line.
pub const MAX_READING: usize = 64;
/// All connections (reading, waiting for a callback, streaming).
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection may stay silent before a newer one may evict it.
pub const EVICT_AFTER: Duration = Duration::from_millis(200);
/// How long a client may take to send its request line.
pub const REQUEST_IDLE: Duration = Duration::from_secs(5);
/// Most actions whose last result `status` keeps (only a broken callbacks file lets
/// arbitrary action names end as results; beyond this the oldest result is forgotten).
pub const MAX_LAST_RESULTS: usize = 256;
/// How long a one-shot reply (error, built-in) may take to write.
const REPLY_WRITE: Duration = Duration::from_secs(5);

/// The request socket's settings, as the command line gave them (built by `cli`).
#[derive(Clone, Debug)]
pub struct Config {
    /// Names the socket `<socket_dir>/<service>-request.sock`; already validated.
    pub service: String,
    pub socket_dir: PathBuf,
    /// The service's callbacks file, defining bash functions `CB_<action>`.
    pub callbacks: PathBuf,
    /// Helper library sourced before the callbacks file (skipped when absent).
    pub callback_lib: PathBuf,
    /// How many different actions may run at once.
    pub max_callbacks: u32,
    /// A callback running longer has its process group killed.
    pub callback_timeout: Duration,
    pub socket_mode: u32,
    /// Group owning the socket file (name or number).
    pub socket_group: Option<String>,
    /// Only these peer uids may send requests (empty: anyone who can open the socket).
    pub allow_uid: Vec<u32>,
    /// Only peers with these gids may send requests.
    pub allow_gid: Vec<u32>,
}

/// What the server needs from the init side.
pub struct ServerContext {
    pub config: Config,
    pub reaper: Rc<Reaper>,
    /// The service's (main child's) pid, for `status`.
    pub service_pid: u32,
    /// supd's own pid, passed to callbacks as $SUPD_PID (so `kill -USR1 $SUPD_PID` works
    /// when supd is not PID 1 too).
    pub supd_pid: u32,
}

/// Handle to a running server, owned by init.
pub struct ServerHandle {
    state: Rc<State>,
    accept: AbortHandle,
}

impl ServerHandle {
    /// Send `signal` to the process group of every running callback (shutdown: TERM
    /// first, then KILL at the end of the grace period).
    pub fn signal_callbacks(&self, signal: i32) {
        for (action, run) in self.state.running.borrow().iter() {
            crate::info!(
                "signalling callback",
                action = action,
                pgid = run.pid,
                signal = signal
            );
            // SAFETY: plain syscall; the group is the callback's own (setpgid in spawn).
            unsafe { libc::kill(-(run.pid as i32), signal) };
        }
    }

    /// How many callbacks are still running.
    pub fn running_callbacks(&self) -> usize {
        self.state.running.borrow().len()
    }

    /// Stop accepting and unlink the socket file (only if it is still ours).
    pub fn close(&self) {
        self.accept.abort();
        if self.state.closed.replace(true) {
            return;
        }
        // Connections still sending their request will get no callback now.
        let readers: Vec<AbortHandle> = self
            .state
            .reading
            .borrow_mut()
            .values()
            .map(|(_, handle)| handle.clone())
            .collect();
        for handle in readers {
            handle.abort();
        }
        let path = &self.state.path;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.state.inode => {
                if let Err(e) = std::fs::remove_file(path) {
                    crate::warn!("cannot remove the socket", path = path.display(), error = e);
                }
            }
            Ok(_) => crate::info!(
                "socket file was replaced by someone else; leaving it",
                path = path.display()
            ),
            Err(_) => {}
        }
    }
}

impl ServerHandle {
    /// Resolves when no client connection is left: after [`close`](Self::close) and the
    /// last callback's exit, the final events have then reached their clients. Callers
    /// bound the wait (a client may be too slow to read).
    pub async fn drained(&self) {
        while self.state.connections.get() > 0 {
            self.state.no_connections.notified().await;
        }
    }
}

/// A running callback, for busy checks, `status` and shutdown.
struct RunInfo {
    id: u64,
    pid: u32,
    user: String,
    started: Instant,
}

struct State {
    settings: Settings,
    reaper: Rc<Reaper>,
    path: PathBuf,
    /// (dev, ino) of the socket file we bound: unlink only that one.
    inode: (u64, u64),
    service_pid: u32,
    supd_pid: u32,
    started: Instant,
    max_callbacks: usize,
    allow_uid: Vec<u32>,
    allow_gid: Vec<u32>,
    running: RefCell<HashMap<String, RunInfo>>,
    last: RefCell<BTreeMap<String, LastResult>>,
    next_id: Cell<u64>,
    connections: Cell<usize>,
    /// Connections still reading their request, oldest first (for eviction).
    reading: RefCell<BTreeMap<u64, (Instant, AbortHandle)>>,
    closed: Cell<bool>,
    /// A `list` is running its bash: at most one at a time (it is not a callback, so
    /// `--max-callbacks` does not bound it, and every request would start a bash).
    listing: Cell<bool>,
    /// Held for supd's lifetime: one supd per service at a time (see [`lock_service`]).
    _lock: Flock<std::fs::File>,
    /// Signalled when the last connection ends (for [`ServerHandle::drained`]).
    no_connections: tokio::sync::Notify,
}

/// Bind the socket (synchronously, so errors are known before the service runs) and spawn
/// the accept loop on the current `LocalSet`. Must be called inside the runtime and a
/// `LocalSet`.
pub fn start(context: ServerContext) -> io::Result<ServerHandle> {
    let args = &context.config;
    let service = args.service.clone();
    let path = protocol::socket_path(&args.socket_dir, &service);
    let lock = lock_service(&path)?;
    let listener = bind(&path, args.socket_mode, args.socket_group.as_deref())?;
    let meta = std::fs::symlink_metadata(&path)?;
    let listener = UnixListener::from_std(listener)?;
    crate::info!(
        "serving requests",
        socket = path.display(),
        mode = format!("{:04o}", args.socket_mode),
        callbacks = args.callbacks.display()
    );
    let state = Rc::new(State {
        settings: Settings {
            bash: callbacks::find_bash(),
            service,
            callbacks: args.callbacks.clone(),
            callback_lib: args.callback_lib.clone(),
            timeout: args.callback_timeout,
            supd_pid: context.supd_pid,
        },
        reaper: context.reaper,
        path,
        inode: (meta.dev(), meta.ino()),
        service_pid: context.service_pid,
        supd_pid: context.supd_pid,
        started: Instant::now(),
        max_callbacks: args.max_callbacks as usize,
        allow_uid: args.allow_uid.clone(),
        allow_gid: args.allow_gid.clone(),
        running: RefCell::default(),
        last: RefCell::default(),
        next_id: Cell::new(1),
        connections: Cell::new(0),
        reading: RefCell::default(),
        closed: Cell::new(false),
        listing: Cell::new(false),
        _lock: lock,
        no_connections: tokio::sync::Notify::new(),
    });
    let accept = tokio::task::spawn_local(accept_loop(state.clone(), listener)).abort_handle();
    Ok(ServerHandle { state, accept })
}

/// Take `<socket>.lock` (flock, non-blocking) before touching the socket file. Without
/// it, two supds starting together could both find the socket stale, and the second's
/// unlink would remove the first's fresh socket, leaving it serving an unlinked file.
/// The kernel drops the lock when its holder dies, so a crashed supd never blocks the
/// next one. The small lock file stays (it is not a socket: `supctl services` skips it).
fn lock_service(socket: &Path) -> io::Result<Flock<std::fs::File>> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is live: another supd holds {}; not taking it over",
                    socket.display(),
                    path.display()
                ),
            )
        } else {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("cannot lock {}: {errno}", path.display()),
            )
        }
    })
}

/// Replace a stale socket, never a live one; bind with the final mode before accepting.
fn bind(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match answers(path) {
            Ok(true) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is live: another supd serves this service; not taking it over",
                        path.display()
                    ),
                ))
            }
            Ok(false) => {
                crate::info!("replacing stale socket", path = path.display());
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot check existing socket {}: {e}", path.display()),
                ))
            }
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind with a umask that leaves the socket owner-only, then open it up: nobody else
    // can connect before mode and group are final. (The runtime is single-threaded, so
    // the process-wide umask change races nothing.)
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    let setup = || -> io::Result<()> {
        if let Some(group) = group {
            let gid = resolve_group(group)?;
            nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::from)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)
    };
    if let Err(e) = setup() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// Whether someone listens on the socket file at `path`. The connect is non-blocking: a
/// blocking one waits for as long as a live listener's backlog stays full (a stopped or
/// flooded supd), and this runs in supd's only thread, before it serves its own service.
fn answers(path: &Path) -> io::Result<bool> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &address) {
        // Accepted, or queued / backlog full: a listener exists.
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(true),
        // Nobody listens (ECONNREFUSED), or the file just went away.
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn resolve_group(group: &str) -> io::Result<nix::unistd::Gid> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown socket group {group:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn accept_loop(state: Rc<State>, listener: UnixListener) {
    let mut conn_id: u64 = 0;
    loop {
        make_room(&state).await;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: pause instead of spinning on the pending connection.
                crate::warn!("accept failed; pausing 100ms", error = e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if state.connections.get() >= MAX_CONNECTIONS {
            crate::warn!(
                "too many connections; closing a new one",
                limit = MAX_CONNECTIONS
            );
            drop(stream);
            continue;
        }
        conn_id += 1;
        state.connections.set(state.connections.get() + 1);
        let task = tokio::task::spawn_local(connection(state.clone(), stream, conn_id));
        state
            .reading
            .borrow_mut()
            .insert(conn_id, (Instant::now(), task.abort_handle()));
    }
}

/// Before accepting, make sure fewer than [`MAX_READING`] connections are still sending
/// their request: evict the oldest one once it has had [`EVICT_AFTER`] to send it, and
/// until then leave new connections waiting in the kernel's backlog. A flood of idle
/// connections then costs the flooder (its connections get closed), not the next real
/// request, and a burst of real clients is never evicted before it could speak.
async fn make_room(state: &State) {
    loop {
        let oldest = {
            let reading = state.reading.borrow();
            if reading.len() < MAX_READING {
                return;
            }
            reading
                .first_key_value()
                .map(|(id, (since, _))| (*id, *since))
        };
        let Some((id, since)) = oldest else { return };
        let age = since.elapsed();
        if age < EVICT_AFTER {
            tokio::time::sleep(EVICT_AFTER - age).await;
            continue;
        }
        let entry = state.reading.borrow_mut().remove(&id);
        if let Some((_, handle)) = entry {
            crate::debug!("too many idle connections; closing the oldest", conn = id);
            handle.abort();
        }
    }
}

/// Decrements the connection count however the task ends (abort included).
struct ConnectionGuard {
    state: Rc<State>,
    id: u64,
}

impl ConnectionGuard {
    fn done_reading(&self) {
        self.state.reading.borrow_mut().remove(&self.id);
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let left = self.state.connections.get().saturating_sub(1);
        self.state.connections.set(left);
        if left == 0 {
            // `notify_one` keeps a permit if nobody waits yet: no lost wake-up.
            self.state.no_connections.notify_one();
        }
        if let Ok(mut reading) = self.state.reading.try_borrow_mut() {
            reading.remove(&self.id);
        }
    }
}

/// Peer credentials from SO_PEERCRED.
#[derive(Clone, Copy)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
}

async fn connection(state: Rc<State>, mut stream: UnixStream, id: u64) {
    let guard = ConnectionGuard {
        state: state.clone(),
        id,
    };
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid().unwrap_or(0),
        },
        Err(e) => {
            crate::warn!("no peer credentials; closing", error = e);
            return;
        }
    };
    let line = tokio::time::timeout(REQUEST_IDLE, read_request(&mut stream)).await;
    guard.done_reading();
    let line = match line {
        Ok(Ok(line)) => line,
        Ok(Err(ReadError::TooLong)) => {
            crate::info!("request too long", peer_uid = peer.uid, peer_pid = peer.pid);
            let message = format!("request longer than {MAX_REQUEST} bytes");
            reply(&mut stream, &Event::error(ErrorKind::BadRequest, message)).await;
            return;
        }
        Ok(Err(ReadError::Io(e))) => {
            crate::debug!("request read failed", error = e, peer_pid = peer.pid);
            return;
        }
        Err(_) => {
            crate::debug!(
                "no request within 5s; closing",
                peer_uid = peer.uid,
                peer_pid = peer.pid
            );
            let message = "no request within 5s";
            reply(&mut stream, &Event::error(ErrorKind::BadRequest, message)).await;
            return;
        }
    };
    let request = match protocol::parse_request(&line) {
        Ok(request) => request,
        Err(e) => {
            crate::info!(
                "bad request",
                error = e,
                peer_uid = peer.uid,
                peer_pid = peer.pid
            );
            reply(&mut stream, &Event::error(ErrorKind::BadRequest, e.0)).await;
            return;
        }
    };
    crate::info!(
        "request",
        user = request.user,
        action = request.action,
        args = request.args.len(),
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid
    );
    if !state.allowed(peer) {
        crate::warn!(
            "request denied",
            action = request.action,
            peer_uid = peer.uid,
            peer_gid = peer.gid,
            peer_pid = peer.pid
        );
        let message = format!("uid {} gid {} may not send requests", peer.uid, peer.gid);
        reply(&mut stream, &Event::error(ErrorKind::Denied, message)).await;
        return;
    }
    match request.action.as_str() {
        "ping" => {
            let event = Event::Pong {
                v: VERSION,
                service: state.settings.service.clone(),
                supd_pid: state.supd_pid,
            };
            reply(&mut stream, &event).await;
        }
        "status" => reply(&mut stream, &Event::Status(state.status())).await,
        "list" => {
            let event = if state.listing.replace(true) {
                Event::error(ErrorKind::Busy, "list is already running")
            } else {
                // Reset even if this task is dropped mid-way.
                struct Listing<'a>(&'a Cell<bool>);
                impl Drop for Listing<'_> {
                    fn drop(&mut self) {
                        self.0.set(false);
                    }
                }
                let _listing = Listing(&state.listing);
                match callbacks::discover(&state.settings, &state.reaper).await {
                    Ok(actions) => Event::Actions {
                        v: VERSION,
                        actions,
                    },
                    Err(message) => Event::error(ErrorKind::Internal, message),
                }
            };
            reply(&mut stream, &event).await;
        }
        _ => run_callback(&state, stream, &request).await,
    }
    drop(guard);
}

enum ReadError {
    TooLong,
    Io(io::Error),
}

/// Read up to the first newline, or to the half-close; at most [`MAX_REQUEST`] bytes.
async fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(line);
        }
        let chunk = chunk.get(..n).unwrap_or_default();
        if let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(chunk.get(..=pos).unwrap_or_default());
            return if line.len() > MAX_REQUEST {
                Err(ReadError::TooLong)
            } else {
                Ok(line)
            };
        }
        line.extend_from_slice(chunk);
        if line.len() > MAX_REQUEST {
            return Err(ReadError::TooLong);
        }
    }
}

/// Write one final event and close; a client that does not read gets dropped.
async fn reply(stream: &mut UnixStream, event: &Event) {
    let line = event.to_line();
    let _ = tokio::time::timeout(REPLY_WRITE, stream.write_all(line.as_bytes())).await;
}

impl State {
    fn allowed(&self, peer: Peer) -> bool {
        if self.allow_uid.is_empty() && self.allow_gid.is_empty() {
            return true;
        }
        peer.uid == 0
            || peer.uid == nix::unistd::getuid().as_raw()
            || self.allow_uid.contains(&peer.uid)
            || self.allow_gid.contains(&peer.gid)
    }

    fn status(&self) -> Status {
        let mut running: Vec<Running> = self
            .running
            .borrow()
            .iter()
            .map(|(action, run)| Running {
                action: action.clone(),
                id: run.id,
                pid: run.pid,
                user: run.user.clone(),
                elapsed_ms: protocol::millis(run.started.elapsed()),
            })
            .collect();
        running.sort_by_key(|r| r.id);
        Status {
            v: VERSION,
            service: self.settings.service.clone(),
            service_pid: self.service_pid,
            supd_pid: self.supd_pid,
            uptime_s: self.started.elapsed().as_secs(),
            running,
            last: self.last.borrow().values().cloned().collect(),
        }
    }

    fn busy(&self, action: &str) -> Option<String> {
        let running = self.running.borrow();
        if let Some(run) = running.get(action) {
            return Some(format!(
                "{action} is already running (id {}, for {}s)",
                run.id,
                run.started.elapsed().as_secs()
            ));
        }
        if running.len() >= self.max_callbacks {
            return Some(format!(
                "{} callbacks are running (--max-callbacks {}); try again later",
                running.len(),
                self.max_callbacks
            ));
        }
        None
    }
}

/// Start the callback, then relay its events to this client for as long as it listens.
async fn run_callback(state: &Rc<State>, mut stream: UnixStream, request: &Request) {
    if state.closed.get() {
        // Shutting down: a request accepted just before close() must not start a
        // callback after init has already signalled everything below it.
        let message = "supd is shutting down";
        reply(&mut stream, &Event::error(ErrorKind::Internal, message)).await;
        return;
    }
    if let Some(message) = state.busy(&request.action) {
        crate::info!("busy", action = request.action, reason = message);
        reply(&mut stream, &Event::error(ErrorKind::Busy, message)).await;
        return;
    }
    if !state.settings.callbacks.is_file() {
        let message = format!(
            "no callbacks file {} (so no action {})",
            state.settings.callbacks.display(),
            request.action
        );
        reply(
            &mut stream,
            &Event::error(ErrorKind::UnknownAction, message),
        )
        .await;
        return;
    }
    let id = state.next_id.get();
    state.next_id.set(id + 1);
    // No .await between the busy check, the spawn and the registration.
    let run = match callbacks::spawn(&state.settings, &state.reaper, request, id) {
        Ok(run) => run,
        Err(e) => {
            crate::error!("cannot start callback", action = request.action, error = e);
            let message = format!("cannot start bash: {e}");
            reply(&mut stream, &Event::error(ErrorKind::Internal, message)).await;
            return;
        }
    };
    crate::info!(
        "callback started",
        action = request.action,
        id = id,
        pid = run.pid
    );
    state.running.borrow_mut().insert(
        request.action.clone(),
        RunInfo {
            id,
            pid: run.pid,
            user: request.user.clone(),
            started: Instant::now(),
        },
    );
    let outbox = Rc::new(Outbox::default());
    let action = request.action.clone();
    let run_state = state.clone();
    let run_outbox = outbox.clone();
    // The run is its own task: it finishes even when this connection goes away.
    tokio::task::spawn_local(async move {
        let (ending, duration) = run.drive(Some(run_outbox)).await;
        run_state.finish(&action, id, &ending, duration);
    });
    relay(&mut stream, &outbox, request.wait).await;
    outbox.close();
}

impl State {
    fn finish(&self, action: &str, id: u64, ending: &Ending, duration: Duration) {
        self.running.borrow_mut().remove(action);
        let (code, error) = match ending {
            Ending::Exited(exit) => (Some(exit.status()), None),
            Ending::UnknownAction => (None, Some(ErrorKind::UnknownAction)),
            Ending::TimedOut(_) => (None, Some(ErrorKind::Timeout)),
            Ending::Failed(_) => (None, Some(ErrorKind::Internal)),
        };
        crate::info!(
            "callback finished",
            action = action,
            id = id,
            result = match (code, error) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(kind)) => kind.to_string(),
                (None, None) => String::new(),
            },
            duration_ms = duration.as_millis()
        );
        if matches!(ending, Ending::UnknownAction) {
            return;
        }
        let ended = jiff::Timestamp::now().as_second();
        let mut last = self.last.borrow_mut();
        if last.len() >= MAX_LAST_RESULTS && !last.contains_key(action) {
            let oldest = last
                .values()
                .min_by_key(|result| result.id)
                .map(|result| result.action.clone());
            if let Some(oldest) = oldest {
                last.remove(&oldest);
            }
        }
        last.insert(
            action.to_string(),
            LastResult {
                action: action.to_string(),
                id,
                ended,
                duration_ms: protocol::millis(duration),
                code,
                error,
            },
        );
    }
}

/// Resolves once the client has closed its connection completely, so that a client
/// killed during a long silent callback does not keep its connection (fd, outbox) until
/// the callback ends. Bytes it sends after its request are read and dropped. A client
/// that only half-closed (the legacy form) still reads: then this never resolves (a later
/// full close cannot be waited for without polling), and the next write notices it.
async fn client_gone(stream: &UnixStream) {
    let mut sink = [0u8; 512];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) if hung_up(stream) => return,
            Ok(0) => return std::future::pending().await,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// POLLHUP: the peer shut both directions (closed or exited), not just its writing side.
/// (tokio masks the write-closed bit out of read readiness, hence a direct poll.)
fn hung_up(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & libc::POLLHUP != 0
}

/// Copy the outbox to the client until the final event, an overflow, or a dead client.
/// With `wait == false`, stop after `started` (or the error that replaces it).
async fn relay(stream: &mut UnixStream, outbox: &Outbox, wait: bool) {
    loop {
        let mut data = match outbox.take() {
            Take::Data(data) => data,
            Take::Finished => return,
            Take::Overflowed => {
                crate::debug!("closing the connection of a client too slow to read");
                return;
            }
            Take::Wait => {
                tokio::select! {
                    () = outbox.changed.notified() => {}
                    () = client_gone(stream) => {
                        crate::debug!("client went away; the callback runs on");
                        return;
                    }
                }
                continue;
            }
        };
        if !wait {
            // Only the first event matters: `started` or the error that replaces it.
            if let Some(end) = data.iter().position(|b| *b == b'\n') {
                data.truncate(end + 1);
            }
            let _ = tokio::time::timeout(REPLY_WRITE, stream.write_all(&data)).await;
            return;
        }
        let mut written = 0;
        while written < data.len() {
            let rest = data.get(written..).unwrap_or_default();
            tokio::select! {
                result = stream.write(rest) => match result {
                    Ok(0) | Err(_) => return, // the client went away; the callback runs on
                    Ok(n) => written += n,
                },
                () = outbox.dropped.notified() => {
                    crate::debug!("closing the connection of a client too slow to read");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            settings: Settings {
                bash: PathBuf::from("bash"),
                service: "svc".into(),
                callbacks: PathBuf::from("/nonexistent"),
                callback_lib: PathBuf::from("/nonexistent"),
                timeout: Duration::from_secs(1),
                supd_pid: 1,
            },
            reaper: Rc::new(Reaper::new()),
            path: PathBuf::from("/nonexistent"),
            inode: (0, 0),
            service_pid: 2,
            supd_pid: 1,
            started: Instant::now(),
            max_callbacks: 4,
            allow_uid: Vec::new(),
            allow_gid: Vec::new(),
            running: RefCell::default(),
            last: RefCell::default(),
            next_id: Cell::new(1),
            connections: Cell::new(0),
            reading: RefCell::default(),
            closed: Cell::new(false),
            listing: Cell::new(false),
            _lock: {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("supd-unit-{}-{n}.sock", std::process::id()));
                let lock = lock_service(&path).unwrap();
                let _ = std::fs::remove_file(path.with_extension("sock.lock"));
                lock
            },
            no_connections: tokio::sync::Notify::new(),
        }
    }

    #[test]
    fn last_results_are_bounded_oldest_forgotten() {
        let state = state();
        let failed = Ending::Failed("broken".into());
        let total = MAX_LAST_RESULTS as u64 + 50;
        for id in 1..=total {
            state.finish(&format!("a{id}"), id, &failed, Duration::ZERO);
        }
        // A known action is updated in place, not counted twice.
        state.finish("a300", total + 1, &failed, Duration::ZERO);
        let last = state.last.borrow();
        assert_eq!(last.len(), MAX_LAST_RESULTS);
        assert!(!last.contains_key("a1") && !last.contains_key("a50"));
        assert!(last.contains_key("a51") && last.contains_key(&format!("a{total}")));
        assert_eq!(last.get("a300").map(|r| r.id), Some(total + 1));
        // Unknown actions never enter.
        drop(last);
        state.finish("nope", total + 2, &Ending::UnknownAction, Duration::ZERO);
        assert!(!state.last.borrow().contains_key("nope"));
    }
}
