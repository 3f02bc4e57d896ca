//! Relaying a callback's events from its outbox to the client.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::REPLY_WRITE;
use crate::control::callbacks::{Outbox, Take};

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

/// Copy the outbox to the client until the final event, a drop (the client stopped
/// reading), or a dead client. Each write is progress (see [`Outbox::wrote`]).
/// With `wait == false`, stop after `started` (or the error that replaces it).
pub(super) async fn relay(stream: &mut UnixStream, outbox: &Outbox, wait: bool) {
    loop {
        let mut data = match outbox.take() {
            Take::Data(data) => data,
            Take::Finished => return,
            Take::Dropped => {
                crate::debug!("closing the connection of a client that stopped reading");
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
                    Ok(n) => {
                        written += n;
                        outbox.wrote();
                    }
                },
                () = outbox.dropped.notified() => {
                    crate::debug!("closing the connection of a client that stopped reading");
                    return;
                }
            }
        }
    }
}
