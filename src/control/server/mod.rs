//! The request socket server, in the event loop of its own thread (`init::companion`
//! starts it; the init's thread only shares [`Shared`] and the reaper with it).
//!
//! [`start`] tries `<socket-dir>/<service>-request.sock` synchronously (init calls it
//! right after spawning the service, which then runs without the socket when the
//! directory is bad) and spawns a task on the current `LocalSet` that serves it: at
//! once, or, while another supd holds the lock (a rolling update), after trying again
//! every 250 ms until that one has gone (see [`serve`]). Each connection is a small task: read one request line (at most 4 KiB,
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
mod verdict;

pub use verdict::{lock_verdict, socket_verdict, trusted_owner, LockVerdict, Probe, SocketVerdict};

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::task::AbortHandle;

use crate::control::callbacks::{self, Ending, Outbox, Settings, Take};
use crate::control::client::Outcome;
use crate::control::protocol::{self, ErrorKind, Event, LastResult, Request, Status, VERSION};
use crate::sys::reaper::Reaper;

use connection::accept_loop;
use registry::Registry;
use socket::{Attempt, SocketFile};

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

/// What the init's thread may see and do of a server running on another thread: its
/// number of client connections and of callbacks whose end it has not recorded yet,
/// and the unlink of its socket file (at once, at a terminating signal or the service's
/// exit, without waiting for the server's thread to wake up).
#[derive(Default)]
pub struct Shared {
    socket: Mutex<SocketSlot>,
    /// Written by the server's thread only.
    connections: AtomicUsize,
    /// Written by the server's thread only.
    runs: AtomicUsize,
}

#[derive(Default)]
struct SocketSlot {
    file: Option<Arc<SocketFile>>,
    /// [`Shared::remove_socket`] was called: no socket is bound any more.
    removed: bool,
    /// The server's thread is binding the socket ([`Shared::try_bind`]): the init must
    /// wait for it before leaving, or the socket it is creating would outlive supd.
    binding: bool,
}

impl Shared {
    /// How many client connections are open.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    fn set_connections(&self, count: usize) {
        self.connections.store(count, Ordering::Release);
    }

    /// How many callbacks run, or have ended without their end recorded yet (its log
    /// line, `status`'s last result).
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::Acquire)
    }

    /// Unlink the socket file (only if it is still the one bound) and release the
    /// service's lock, now and for good: a socket bound after this is removed as soon
    /// as it is published. Idempotent; callable from any thread.
    pub fn remove_socket(&self) {
        let file = {
            let mut slot = self.slot();
            slot.removed = true;
            slot.file.take()
        };
        if let Some(file) = file {
            file.remove();
        }
    }

    /// Whether the server's thread is binding the socket right now.
    pub fn binding(&self) -> bool {
        self.slot().binding
    }

    /// [`SocketFile::try_bind`], published for [`remove_socket`](Self::remove_socket);
    /// `None` once the socket was removed for good (a socket bound meanwhile is
    /// removed again at once).
    fn try_bind(&self, path: &Path, mode: u32, group: Option<&str>) -> io::Result<Option<Attempt>> {
        {
            let mut slot = self.slot();
            if slot.removed {
                return Ok(None);
            }
            slot.binding = true;
        }
        let attempt = SocketFile::try_bind(path, mode, group);
        let mut slot = self.slot();
        slot.binding = false;
        match attempt {
            Ok(Attempt::Bound(file, _)) if slot.removed => {
                drop(slot);
                file.remove();
                Ok(None)
            }
            Ok(Attempt::Bound(file, listener)) => {
                slot.file = Some(Arc::clone(&file));
                Ok(Some(Attempt::Bound(file, listener)))
            }
            other => other.map(Some),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, SocketSlot> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the server needs from the init side.
pub struct ServerContext {
    pub config: Config,
    /// What the init's thread shares with the server.
    pub shared: Arc<Shared>,
    pub reaper: Arc<Reaper>,
    /// The service's (main child's) pid, for `status`.
    pub service_pid: u32,
    /// supd's own pid, passed to callbacks as $SUPD_PID (so `kill -USR1 $SUPD_PID` works
    /// when supd is not PID 1 too).
    pub supd_pid: u32,
}

/// Handle to a running server, owned by the server's thread (`init::companion`).
pub struct ServerHandle {
    state: Rc<State>,
    /// None: no socket (an executor for the in-process schedule only).
    accept: Option<AbortHandle>,
}

impl ServerHandle {
    /// Stop accepting and unlink the socket file (only if it is still ours). Callbacks
    /// that run go on; no new one starts.
    pub fn close(&self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        if self.state.closed.replace(true) {
            return;
        }
        self.state.on_close.notify_waiters();
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
        self.state.shared.remove_socket();
    }

    /// The executor that runs callbacks for this server (same registry: busy, full,
    /// `--max-callbacks`, `status`), for runs that do not come through the socket.
    pub fn executor(&self) -> Executor {
        Executor(Rc::clone(&self.state))
    }

    /// Resolves when nothing is left to serve after [`close`](Self::close): no client
    /// connection (their final events have reached them) and no callback whose end is
    /// not recorded (a `--no-wait` run has no client, but its output still goes to the
    /// log and its result to the registry). Callers bound the wait (a client may be too
    /// slow to read).
    pub async fn idle(&self) {
        loop {
            let shared = &self.state.shared;
            if shared.runs() == 0 && shared.connections() == 0 {
                return;
            }
            tokio::select! {
                () = self.state.run_ended.notified() => {}
                () = self.state.no_connections.notified() => {}
            }
        }
    }
}

struct State {
    settings: Settings,
    reaper: Arc<Reaper>,
    /// The socket file, once this supd holds it, and the connection count.
    shared: Arc<Shared>,
    service_pid: u32,
    supd_pid: u32,
    started: Instant,
    allow_uid: Vec<u32>,
    allow_gid: Vec<u32>,
    registry: RefCell<Registry>,
    /// Connections still reading their request, oldest first (for eviction).
    reading: RefCell<BTreeMap<u64, (Instant, AbortHandle)>>,
    closed: Cell<bool>,
    /// Woken by [`ServerHandle::close`].
    on_close: tokio::sync::Notify,
    /// A `list` is running its bash: at most one at a time (it is not a callback, so
    /// `--max-callbacks` does not bound it, and every request would start a bash).
    listing: Cell<bool>,
    /// When a denied connection was last logged, and how many were denied since.
    denied: Cell<(Option<Instant>, u64)>,
    /// Signalled when the last connection ends (for [`ServerHandle::idle`]).
    no_connections: tokio::sync::Notify,
    /// Signalled when a callback's run ends (for [`ServerHandle::idle`]).
    run_ended: tokio::sync::Notify,
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

/// Take the socket (or find out it must wait for it) and spawn the task that serves it
/// on the current `LocalSet`. Must be called inside the runtime and a `LocalSet`. An
/// error (a bad directory, a group that does not exist, a directory at the socket's
/// name) leaves nothing behind to clean up; another supd holding the lock or serving
/// the socket is not an error: the task waits for it to leave.
pub fn start(context: ServerContext) -> io::Result<ServerHandle> {
    let args = &context.config;
    let service = args.service.clone();
    let path = protocol::socket_path(&args.socket_dir, &service);
    let group = args.socket_group.as_deref();
    let Some(first) = context.shared.try_bind(&path, args.socket_mode, group)? else {
        // The service has exited already: nothing to serve.
        return Ok(start_without_socket(context));
    };
    let config = context.config.clone();
    let state = new_state(context);
    let task = serve(state.clone(), config, path, first);
    let accept = tokio::task::spawn_local(task).abort_handle();
    Ok(ServerHandle {
        state,
        accept: Some(accept),
    })
}

/// A server without a socket: only its [`Executor`] runs callbacks (`--no-socket`, or a
/// socket that could not be bound, with an in-process schedule).
pub fn start_without_socket(context: ServerContext) -> ServerHandle {
    ServerHandle {
        state: new_state(context),
        accept: None,
    }
}

fn new_state(context: ServerContext) -> Rc<State> {
    let args = &context.config;
    let service = args.service.clone();
    Rc::new(State {
        settings: Settings {
            bash: callbacks::find_bash(),
            service,
            callbacks: args.callbacks.clone(),
            callback_lib: args.callback_lib.clone(),
            timeout: args.callback_timeout,
            supd_pid: context.supd_pid,
        },
        reaper: context.reaper,
        shared: context.shared,
        service_pid: context.service_pid,
        supd_pid: context.supd_pid,
        started: Instant::now(),
        allow_uid: args.allow_uid.clone(),
        allow_gid: args.allow_gid.clone(),
        registry: RefCell::new(Registry::new(args.max_callbacks as usize)),
        reading: RefCell::default(),
        closed: Cell::new(false),
        on_close: tokio::sync::Notify::new(),
        listing: Cell::new(false),
        denied: Cell::new((None, 0)),
        no_connections: tokio::sync::Notify::new(),
        run_ended: tokio::sync::Notify::new(),
    })
}

/// Runs callbacks for requests that do not come through the socket (the in-process
/// schedule), under the same rules: one run per action (`busy`), `--max-callbacks` in
/// all (`full`), the timeout, and `status`'s last results.
#[derive(Clone)]
pub struct Executor(Rc<State>);

impl Executor {
    /// The service these callbacks belong to.
    pub fn service(&self) -> &str {
        &self.0.settings.service
    }

    /// The one reaper (for other children, such as a hook, started next to callbacks).
    pub fn reaper(&self) -> Arc<Reaper> {
        Arc::clone(&self.0.reaper)
    }

    /// Whether the server was closed (supd is shutting down): no new run starts.
    pub fn is_closed(&self) -> bool {
        self.0.closed.get()
    }

    /// Resolves once the server is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.0.on_close.notified();
            if self.0.closed.get() {
                return;
            }
            notified.await;
        }
    }

    /// Make `result` the action's last result in `status`.
    pub fn record(&self, result: LastResult) {
        self.0.registry.borrow_mut().record(result);
    }

    /// Run `request`'s callback like a socket request with `wait: true`: `on_event` sees
    /// `started` and every output line; the result is what a client would get. The
    /// callback itself is its own task: dropping this future does not stop it.
    pub async fn request(&self, request: &Request, mut on_event: impl FnMut(&Event)) -> Outcome {
        let state = &self.0;
        let refused = |kind, message: String| Outcome::Refused { kind, message };
        if state.closed.get() {
            return refused(ErrorKind::Internal, "supd is shutting down".into());
        }
        let busy = state.registry.borrow().busy(&request.action);
        if let Some((kind, message)) = busy {
            crate::info!(kind.as_str(), action = request.action, reason = message);
            return refused(kind, message);
        }
        if !state.settings.callbacks.is_file() {
            let message = format!(
                "no callbacks file {} (so no action {})",
                state.settings.callbacks.display(),
                request.action
            );
            return refused(ErrorKind::UnknownAction, message);
        }
        let Launched {
            id,
            outbox,
            mut ended,
        } = match launch(state, request) {
            Ok(launched) => launched,
            Err(message) => return refused(ErrorKind::Internal, message),
        };
        let mut relay = |outbox: &Outbox| {
            if let Take::Data(bytes) = outbox.take() {
                for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(event) = serde_json::from_slice::<Event>(line) {
                        if !event.is_final() {
                            on_event(&event);
                        }
                    }
                }
            }
        };
        let result = loop {
            tokio::select! {
                biased;
                () = outbox.changed.notified() => relay(&outbox),
                result = &mut ended => break result,
            }
        };
        relay(&outbox);
        outbox.close();
        match result {
            Ok((ending, duration)) => ending_outcome(id, &request.action, ending, duration),
            Err(_) => refused(ErrorKind::Internal, "the callback's run was lost".into()),
        }
    }
}

/// A callback started by [`launch`].
struct Launched {
    id: u64,
    /// Its events, for the relay to a client (or to the executor's caller).
    outbox: Rc<Outbox>,
    /// Its ending, once it has ended and its result is recorded.
    ended: tokio::sync::oneshot::Receiver<(Ending, Duration)>,
}

/// Start `request`'s callback and register it: the one way a run begins, for socket
/// requests and the executor alike. The caller has checked `busy`/`full`; there is no
/// .await between that check, the spawn and the registration. The run is its own task:
/// it finishes (and records its result) even when whoever waits for it goes away. Err:
/// the message for an `internal` error (bash could not be started).
fn launch(state: &Rc<State>, request: &Request) -> Result<Launched, String> {
    let id = state.registry.borrow_mut().next_id();
    let run = match callbacks::spawn(&state.settings, &state.reaper, request, id) {
        Ok(run) => run,
        Err(_) if state.reaper.refusing() => {
            crate::info!("no new callback: shutting down", action = request.action);
            return Err("supd is shutting down: no new callback starts".into());
        }
        Err(e) => {
            crate::error!("cannot start callback", action = request.action, error = e);
            return Err(format!("cannot start bash: {e}"));
        }
    };
    crate::info!(
        "callback started",
        action = request.action,
        id = id,
        pid = run.pid
    );
    state
        .registry
        .borrow_mut()
        .started(&request.action, id, run.pid, &request.user);
    state.shared.runs.fetch_add(1, Ordering::AcqRel);
    let outbox = Rc::new(Outbox::default());
    let (done, ended) = tokio::sync::oneshot::channel();
    let action = request.action.clone();
    let run_state = Rc::clone(state);
    let run_outbox = Rc::clone(&outbox);
    tokio::task::spawn_local(async move {
        let (ending, duration) = run.drive(Some(run_outbox)).await;
        run_state
            .registry
            .borrow_mut()
            .finished(&action, id, &ending, duration);
        run_state.shared.runs.fetch_sub(1, Ordering::AcqRel);
        run_state.run_ended.notify_one();
        let _ = done.send((ending, duration));
    });
    Ok(Launched { id, outbox, ended })
}

/// What a client would have been told about a run that ended this way.
fn ending_outcome(id: u64, action: &str, ending: Ending, duration: Duration) -> Outcome {
    match ending {
        Ending::Exited(exit) => Outcome::Exited {
            id,
            code: exit.status(),
            duration_ms: protocol::millis(duration),
        },
        Ending::UnknownAction => Outcome::Refused {
            kind: ErrorKind::UnknownAction,
            message: format!("no callback for action {action}"),
        },
        Ending::TimedOut(_) => Outcome::Refused {
            kind: ErrorKind::Timeout,
            message: format!(
                "{action} ran past the callback timeout; its process group was killed"
            ),
        },
        Ending::Failed(message) => Outcome::Refused {
            kind: ErrorKind::Internal,
            message,
        },
    }
}

/// Serve the socket: at once when `first` bound it, else after waiting for it.
///
/// Waiting is a plain timer, every [`socket::LOCK_RETRY`] (250 ms) while another supd
/// holds the lock: a `flock` that blocks would block the server's thread (requests,
/// the schedule) or need yet another thread, and no portable event says "the lock is free"
/// (inotify sees the holder's close, but not on every filesystem a shared /run may be,
/// nor a lock inherited by a child). Only a supd that waits wakes up; one that serves
/// makes no wakeup of its own.
async fn serve(state: Rc<State>, config: Config, path: PathBuf, first: Attempt) {
    let mut attempt = first;
    let mut waiting: Option<(Instant, String)> = None;
    loop {
        match attempt {
            Attempt::Bound(socket, listener) => {
                let listener = match UnixListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        crate::error!(
                            "request socket unavailable; running the service without it",
                            error = e
                        );
                        socket.remove();
                        return;
                    }
                };
                if let Some((since, _)) = &waiting {
                    crate::info!(
                        "the request socket is free; taking it over",
                        socket = path.display(),
                        waited_ms = since.elapsed().as_millis()
                    );
                }
                crate::info!(
                    "serving requests",
                    socket = socket.path().display(),
                    mode = format!("{:04o}", config.socket_mode),
                    callbacks = config.callbacks.display()
                );
                accept_loop(state, listener).await;
                return;
            }
            Attempt::Wait { reason, retry } => {
                if waiting.as_ref().map(|(_, last)| last) != Some(&reason) {
                    crate::warn!(
                        "request socket not available yet; trying again",
                        reason = reason,
                        every_ms = retry.as_millis()
                    );
                    let since = waiting.map_or_else(Instant::now, |(since, _)| since);
                    waiting = Some((since, reason));
                }
                tokio::time::sleep(retry).await;
                if state.closed.get() {
                    return;
                }
                let group = config.socket_group.as_deref();
                attempt = match state.shared.try_bind(&path, config.socket_mode, group) {
                    Ok(Some(attempt)) => attempt,
                    Ok(None) => return, // the service has exited meanwhile
                    Err(e) => {
                        crate::error!(
                            "request socket unavailable; running the service without it",
                            error = e
                        );
                        return;
                    }
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::socket::Attempt;
    use super::*;

    fn fresh_socket_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("supd-shared-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir.join("svc-request.sock")
    }

    /// The init unlinks the socket at once when the service exits, from its own thread.
    #[test]
    fn remove_socket_unlinks_the_bound_file_once() {
        let path = fresh_socket_path("once");
        let shared = Shared::default();
        let bound = shared.try_bind(&path, 0o660, None).unwrap();
        assert!(matches!(bound, Some(Attempt::Bound(..))));
        assert!(path.exists() && !shared.binding());
        shared.remove_socket();
        assert!(!path.exists());
        shared.remove_socket(); // again: nothing to do, no panic
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A server that had not bound yet when the service exited (its thread was slow to
    /// start, or it waited for another supd's lock) binds nothing: no socket outlives
    /// supd.
    #[test]
    fn no_socket_is_bound_after_removal() {
        let path = fresh_socket_path("late");
        let shared = Shared::default();
        shared.remove_socket();
        assert!(shared.try_bind(&path, 0o660, None).unwrap().is_none());
        assert!(!path.exists() && !shared.binding());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
