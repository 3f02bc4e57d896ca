//! Accepting connections (with eviction of idle ones), and handling one connection:
//! peer credentials, the request line, built-ins, starting a callback.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::relay::relay;
use super::{
    launch, State, DENIED_LOG_EVERY, EVICT_AFTER, MAX_CONNECTIONS, MAX_READING, MAX_REFUSED,
    REFUSED_LINGER, REPLY_WRITE, REQUEST_IDLE,
};
use crate::control::callbacks;
use crate::control::protocol::{self, ErrorKind, Event, Request, MAX_REQUEST, VERSION};

pub(super) async fn accept_loop(state: Rc<State>, listener: UnixListener) {
    let mut conn_id: u64 = 0;
    let mut refused = Refused::default();
    loop {
        make_room(&state).await;
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = refused.expired() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: pause instead of spinning on the pending connection.
                crate::warn!("accept failed; pausing 100ms", error = e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The allowlist is checked here, before the connection costs a read slot or a
        // task: a denied uid holding thousands of connections must not slow anyone.
        let peer = match Peer::of(&stream, state.allow_gid.is_empty()) {
            Ok(peer) => peer,
            Err(e) => {
                crate::warn!("no peer credentials; closing", error = e);
                continue;
            }
        };
        if !state.allowed(&peer) {
            deny(&state, &stream, &peer);
            refused.keep(stream);
            continue;
        }
        if state.shared.connections() >= MAX_CONNECTIONS {
            crate::warn!(
                "too many connections; closing a new one",
                limit = MAX_CONNECTIONS
            );
            drop(stream);
            continue;
        }
        conn_id += 1;
        state.shared.set_connections(state.shared.connections() + 1);
        let task = tokio::task::spawn_local(connection(state.clone(), stream, peer, conn_id));
        state
            .reading
            .borrow_mut()
            .insert(conn_id, (Instant::now(), task.abort_handle()));
    }
}

/// Denied connections, kept [`REFUSED_LINGER`] at most after their `denied` event with
/// supd's side shut: a client that connected and had not yet written its request would
/// otherwise get EPIPE writing it, and never read why. At most [`MAX_REFUSED`] (the
/// oldest goes first), so a flood of denied connections holds no more fds than that.
#[derive(Default)]
struct Refused(VecDeque<(Instant, std::os::unix::net::UnixStream)>);

impl Refused {
    fn keep(&mut self, stream: UnixStream) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let _ = stream.shutdown(std::net::Shutdown::Write);
        while self.0.len() >= MAX_REFUSED {
            self.0.pop_front();
        }
        self.0.push_back((Instant::now(), stream));
    }

    /// Closes the ones whose time is up; resolves when it closed some (never when none
    /// is kept: an idle supd has no timer).
    async fn expired(&mut self) {
        let Some((since, _)) = self.0.front() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until((*since + REFUSED_LINGER).into()).await;
        while self
            .0
            .front()
            .is_some_and(|(since, _)| since.elapsed() >= REFUSED_LINGER)
        {
            self.0.pop_front();
        }
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
        let left = self.state.shared.connections().saturating_sub(1);
        self.state.shared.set_connections(left);
        if left == 0 {
            // `notify_one` keeps a permit if nobody waits yet: no lost wake-up.
            self.state.no_connections.notify_one();
        }
        if let Ok(mut reading) = self.state.reading.try_borrow_mut() {
            reading.remove(&self.id);
        }
    }
}

/// Peer credentials from SO_PEERCRED, and the supplementary groups (SO_PEERGROUPS) when
/// an `--allow-gid` needs them.
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
    groups: Vec<u32>,
}

impl Peer {
    fn of(stream: &UnixStream, skip_groups: bool) -> io::Result<Peer> {
        use std::os::fd::AsFd;
        let cred = stream.peer_cred()?;
        let groups = if skip_groups {
            Vec::new()
        } else {
            // Without them (an old kernel), only the primary gid can match.
            crate::sys::peer::groups(stream.as_fd()).unwrap_or_default()
        };
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid().unwrap_or(0),
            groups,
        })
    }
}

/// Refuse a peer the allowlist denies, at accept: one `denied` event if the socket takes
/// it at once (a fresh connection's buffer is empty), nothing read (then [`Refused`]
/// closes it). Logged at most once a second, with the count of the others.
fn deny(state: &State, stream: &UnixStream, peer: &Peer) {
    let message = format!("uid {} gid {} may not send requests", peer.uid, peer.gid);
    let line = Event::error(ErrorKind::Denied, message).to_line();
    let _ = stream.try_write(line.as_bytes());
    let (since, more) = state.denied.get();
    if since.is_some_and(|t| t.elapsed() < DENIED_LOG_EVERY) {
        state.denied.set((since, more + 1));
        return;
    }
    state.denied.set((Some(Instant::now()), 0));
    crate::warn!(
        "request denied",
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid,
        unlogged_since_last = more
    );
}

async fn connection(state: Rc<State>, mut stream: UnixStream, peer: Peer, id: u64) {
    let guard = ConnectionGuard {
        state: state.clone(),
        id,
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
    /// The allowlist (when any is given): uid 0 and supd's own uid always pass; else the
    /// uid, the primary gid or a supplementary group must be listed.
    fn allowed(&self, peer: &Peer) -> bool {
        if self.allow_uid.is_empty() && self.allow_gid.is_empty() {
            return true;
        }
        peer.uid == 0
            || peer.uid == nix::unistd::getuid().as_raw()
            || self.allow_uid.contains(&peer.uid)
            || self.allow_gid.contains(&peer.gid)
            || peer.groups.iter().any(|g| self.allow_gid.contains(g))
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
    // The run is its own task: it finishes even when this connection goes away.
    let outbox = match launch(state, request) {
        Ok(launched) => launched.outbox,
        Err(message) => {
            reply(&mut stream, &Event::error(ErrorKind::Internal, message)).await;
            return;
        }
    };
    relay(&mut stream, &outbox, request.wait).await;
    outbox.close();
}
