//! Accepting connections (with eviction of idle ones), and handling one connection:
//! peer credentials, the request line, built-ins, starting a callback.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::relay::relay;
use super::{State, EVICT_AFTER, MAX_CONNECTIONS, MAX_READING, REPLY_WRITE, REQUEST_IDLE};
use crate::control::callbacks::{self, Outbox};
use crate::control::protocol::{self, ErrorKind, Event, Request, MAX_REQUEST, VERSION};

pub(super) async fn accept_loop(state: Rc<State>, listener: UnixListener) {
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
    // Healthchecks ping every few seconds: at debug, not one info line each.
    let level = if request.action == "ping" {
        crate::log::Level::Debug
    } else {
        crate::log::Level::Info
    };
    crate::__log_event!(
        level,
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
    let busy = state.registry.borrow().busy(&request.action);
    if let Some((kind, message)) = busy {
        crate::info!(kind.as_str(), action = request.action, reason = message);
        reply(&mut stream, &Event::error(kind, message)).await;
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
    let id = state.registry.borrow_mut().next_id();
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
    state
        .registry
        .borrow_mut()
        .started(&request.action, id, run.pid, &request.user);
    let outbox = Rc::new(Outbox::default());
    let action = request.action.clone();
    let run_state = state.clone();
    let run_outbox = outbox.clone();
    // The run is its own task: it finishes even when this connection goes away.
    tokio::task::spawn_local(async move {
        let (ending, duration) = run.drive(Some(run_outbox)).await;
        run_state
            .registry
            .borrow_mut()
            .finished(&action, id, &ending, duration);
    });
    relay(&mut stream, &outbox, request.wait).await;
    outbox.close();
}
