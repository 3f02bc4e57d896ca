//! The request socket server, inside supd's event loop (no extra threads).
//!
//! [`start`] binds `<socket-dir>/<service>-request.sock` synchronously (init calls it
//! right after spawning the service, which then runs without the socket when the
//! directory is bad or another supd serves it) and spawns the accept loop on the current
//! `LocalSet`. Each connection is a small task: read one request line (at most 4 KiB,
//! 5 s), check the peer, answer built-ins directly or spawn the callback as its own task
//! (see `callbacks`), then relay its events.
//!
//! The server signals no callback at shutdown: callbacks are below supd, and init's one
//! walk of everything below supd reaches them when the service has exited (a second
//! TERM from here would run a callback's TERM trap twice).
//!
//! - `socket`: the socket file's lifecycle (lock, stale check, bind, mode, unlink);
//! - `connection`: the accept loop, eviction, one connection, starting a callback;
//! - `registry`: the callbacks that run and the last results (busy checks, `status`);
//! - `relay`: a callback's events from its outbox to the client.

//!
//! Limits that keep a hostile or broken client from hurting the service or other
//! clients: the request size and idle time; at most [`MAX_READING`] connections still
//! sending their request (a new one evicts the oldest once that one had its chance, so a
//! flood of idle connections cannot lock out a real request); at most
//! [`MAX_CONNECTIONS`] in all (beyond: accepted and closed at once); a bounded outbox per
//! client.
//!
//! Access: the socket file's mode and group are the first gate. When `--allow-uid` or
//! `--allow-gid` is given, the peer's SO_PEERCRED uid or gid, or one of its
//! supplementary groups (SO_PEERGROUPS), must match one of them; uid 0 and supd's own
//! uid are always allowed (they own the socket file anyway). The check is made at
//! accept: a denied peer gets its `denied` event and is closed before anything is read.

mod connection;
mod registry;
mod relay;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::task::AbortHandle;

use crate::control::callbacks::{self, Settings};
use crate::control::protocol::{self, Status, VERSION};
use crate::sys::reaper::Reaper;

use connection::accept_loop;
use registry::Registry;
use socket::SocketFile;

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
/// Denied connections kept open (supd's side shut) so that their client can still write
/// its request and read the `denied` event: at most this many, this long.
pub const MAX_REFUSED: usize = 64;
pub const REFUSED_LINGER: Duration = Duration::from_millis(500);
/// Denied connections are logged at most once in this long (a flood would fill the log).
const DENIED_LOG_EVERY: Duration = Duration::from_secs(1);
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
    /// Stop accepting and unlink the socket file (only if it is still ours). Callbacks
    /// that run go on; no new one starts.
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
        self.state.socket.remove();
    }

    /// Resolves when no client connection is left: after [`close`](Self::close) and the
    /// last callback's exit, the final events have then reached their clients. Callers
    /// bound the wait (a client may be too slow to read).
    pub async fn drained(&self) {
        while self.state.connections.get() > 0 {
            self.state.no_connections.notified().await;
        }
    }
}

struct State {
    settings: Settings,
    reaper: Rc<Reaper>,
    socket: SocketFile,
    service_pid: u32,
    supd_pid: u32,
    started: Instant,
    allow_uid: Vec<u32>,
    allow_gid: Vec<u32>,
    registry: RefCell<Registry>,
    connections: Cell<usize>,
    /// Connections still reading their request, oldest first (for eviction).
    reading: RefCell<BTreeMap<u64, (Instant, AbortHandle)>>,
    closed: Cell<bool>,
    /// A `list` is running its bash: at most one at a time (it is not a callback, so
    /// `--max-callbacks` does not bound it, and every request would start a bash).
    listing: Cell<bool>,
    /// When a denied connection was last logged, and how many were denied since.
    denied: Cell<(Option<Instant>, u64)>,
    /// Signalled when the last connection ends (for [`ServerHandle::drained`]).
    no_connections: tokio::sync::Notify,
}

impl State {
    fn status(&self) -> Status {
        let registry = self.registry.borrow();
        Status {
            v: VERSION,
            service: self.settings.service.clone(),
            service_pid: self.service_pid,
            supd_pid: self.supd_pid,
            uptime_s: self.started.elapsed().as_secs(),
            running: registry.running(),
            last: registry.last(),
        }
    }
}

/// Bind the socket and spawn the accept loop on the current `LocalSet`. Must be called
/// inside the runtime and a `LocalSet`. An error (a bad directory, a live socket or lock
/// of another supd) leaves nothing behind to clean up.
pub fn start(context: ServerContext) -> io::Result<ServerHandle> {
    let args = &context.config;
    let service = args.service.clone();
    let path = protocol::socket_path(&args.socket_dir, &service);
    let (socket, listener) =
        SocketFile::bind(path, args.socket_mode, args.socket_group.as_deref())?;
    let listener = UnixListener::from_std(listener)?;
    crate::info!(
        "serving requests",
        socket = socket.path().display(),
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
        socket,
        service_pid: context.service_pid,
        supd_pid: context.supd_pid,
        started: Instant::now(),
        allow_uid: args.allow_uid.clone(),
        allow_gid: args.allow_gid.clone(),
        registry: RefCell::new(Registry::new(args.max_callbacks as usize)),
        connections: Cell::new(0),
        reading: RefCell::default(),
        closed: Cell::new(false),
        listing: Cell::new(false),
        denied: Cell::new((None, 0)),
        no_connections: tokio::sync::Notify::new(),
    });
    let accept = tokio::task::spawn_local(accept_loop(state.clone(), listener)).abort_handle();
    Ok(ServerHandle { state, accept })
}
