//! The request socket's wire format, shared by the server, `supctl` and the scheduler.
//!
//! A request is ONE line of at most [`MAX_REQUEST`] bytes, ended by `\n` or by the
//! client's half-close (the legacy scheduler sent no newline), in one of two forms:
//!
//! - text, the legacy form: `USER ACTION [ARG...]`, tokens split on blanks;
//! - JSON: `{"user":"forum","action":"nightly-backup","args":[],"wait":true}`.
//!
//! The reply is newline-delimited JSON [`Event`]s: `started`, then `stdout`/`stderr`
//! lines, then `exit`; or a single `error`; or one answer event for the built-ins
//! (`pong`, `actions`, `status`). `started` and the built-in answers carry `"v":1`, the
//! protocol version. Clients must ignore unknown fields and unknown events.
//!
//! Parsing is strict on purpose: everything here is reachable by anyone who can open
//! the socket, so nothing panics, and a request either validates completely or is
//! answered `bad-request` without running anything. Fuzzed by `fuzz/`.

mod event;
mod request;

use std::path::{Path, PathBuf};

pub use event::{ErrorKind, Event, LastResult, Running, Status};
pub use request::{
    action_of_function, callback_function, canonical_action, parse_request, valid_action,
    valid_service, valid_user, Request, RequestError,
};

/// Protocol version carried by `started` and the built-in answers.
pub const VERSION: u32 = 1;

/// Largest request line, trailing newline included.
pub const MAX_REQUEST: usize = 4096;

/// Most arguments a request may carry after USER and ACTION.
pub const MAX_ARGS: usize = 64;

/// The built-in actions, answered by supd itself (a `CB_ping` is never called).
pub const BUILTINS: [&str; 3] = ["ping", "list", "status"];

/// A duration in whole milliseconds for the wire, saturating (`as u64` would wrap).
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `<dir>/<service>-request.sock`.
pub fn socket_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}{SOCKET_SUFFIX}"))
}

/// What follows the service name in a socket's file name.
pub const SOCKET_SUFFIX: &str = "-request.sock";
