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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Protocol version carried by `started` and the built-in answers.
pub const VERSION: u32 = 1;

/// Largest request line, trailing newline included.
pub const MAX_REQUEST: usize = 4096;

/// Most arguments a request may carry after USER and ACTION.
pub const MAX_ARGS: usize = 64;

/// The built-in actions, answered by supd itself (a `CB_ping` is never called).
pub const BUILTINS: [&str; 3] = ["ping", "list", "status"];

/// A validated request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The callback's `$1` (a user name or number; not used for privileges).
    pub user: String,
    pub action: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// `false`: answer `started` and close; the callback runs on.
    #[serde(default = "yes")]
    pub wait: bool,
    /// The client's protocol version (optional; only 1 exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Request {
    /// A request that waits for the result.
    pub fn new(user: &str, action: &str, args: &[String]) -> Self {
        Request {
            user: user.to_string(),
            action: canonical_action(action),
            args: args.to_vec(),
            wait: true,
            v: None,
        }
    }

    /// The JSON form, one line with its newline (what clients send).
    pub fn to_line(&self) -> String {
        // Serializing plain strings and bools cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Check every field; the same rules apply to both forms.
    pub fn validate(&self) -> Result<(), RequestError> {
        if !valid_user(&self.user) {
            return Err(RequestError::new(format!(
                "bad user {:?} (want [a-z_][a-z0-9_-]{{0,31}} or a number)",
                Truncated(&self.user)
            )));
        }
        if !valid_action(&self.action) {
            return Err(RequestError::new(format!(
                "bad action {:?} (want [a-z0-9][a-z0-9-]{{0,63}})",
                Truncated(&self.action)
            )));
        }
        if self.args.len() > MAX_ARGS {
            return Err(RequestError::new(format!(
                "too many arguments ({}, at most {MAX_ARGS})",
                self.args.len()
            )));
        }
        if let Some((i, _)) = self
            .args
            .iter()
            .enumerate()
            .find(|(_, a)| a.chars().any(char::is_control))
        {
            return Err(RequestError::new(format!(
                "argument {} contains a control character",
                i + 1
            )));
        }
        if let Some(v) = self.v {
            if v != VERSION {
                return Err(RequestError::new(format!(
                    "unsupported protocol version {v} (this supd speaks {VERSION})"
                )));
            }
        }
        Ok(())
    }

    /// The bash function that implements the action: dashes become underscores.
    pub fn function(&self) -> String {
        callback_function(&self.action)
    }
}

/// The legacy listener called `CB_${action//-/_}`, so `rotate_logs` and `rotate-logs`
/// were one action: underscores become dashes before validation, and the action is
/// known (busy, status, logs) by its dashed name alone.
pub fn canonical_action(action: &str) -> String {
    action.replace('_', "-")
}

/// `nightly-backup` -> `CB_nightly_backup`.
pub fn callback_function(action: &str) -> String {
    format!("CB_{}", action.replace('-', "_"))
}

/// `CB_nightly_backup` -> `nightly-backup`, or None when the result is not a valid action.
pub fn action_of_function(function: &str) -> Option<String> {
    let action = function.strip_prefix("CB_")?.replace('_', "-");
    valid_action(&action).then_some(action)
}

/// Why a request was refused as `bad-request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError(pub String);

impl RequestError {
    fn new(message: impl Into<String>) -> Self {
        RequestError(message.into())
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestError {}

/// At most 40 chars of user input in error messages.
struct Truncated<'a>(&'a str);

impl std::fmt::Debug for Truncated<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(40) {
            Some((cut, _)) => write!(f, "{:?}...", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Parse one request line (the bytes read from the socket, with or without its `\n`).
pub fn parse_request(raw: &[u8]) -> Result<Request, RequestError> {
    if raw.len() > MAX_REQUEST {
        return Err(RequestError::new(format!(
            "request longer than {MAX_REQUEST} bytes"
        )));
    }
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text =
        std::str::from_utf8(raw).map_err(|_| RequestError::new("request is not valid UTF-8"))?;
    // Tabs separate text tokens; any other control character (a second line, NUL,
    // escape sequences) has no business in a request.
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(RequestError::new("request contains a control character"));
    }
    let trimmed = text.trim_matches(is_blank);
    if trimmed.is_empty() {
        return Err(RequestError::new(
            "empty request (expected USER ACTION [ARG...])",
        ));
    }
    let request = if trimmed.starts_with('{') {
        serde_json::from_str::<Request>(trimmed)
            .map_err(|e| RequestError::new(format!("bad JSON request: {e}")))?
    } else {
        let mut tokens = trimmed.split(is_blank).filter(|t| !t.is_empty());
        let (Some(user), Some(action)) = (tokens.next(), tokens.next()) else {
            return Err(RequestError::new("expected USER ACTION [ARG...]"));
        };
        let args: Vec<String> = tokens.take(MAX_ARGS + 1).map(str::to_string).collect();
        Request {
            user: user.to_string(),
            action: action.to_string(),
            args,
            wait: true,
            v: None,
        }
    };
    let mut request = request;
    request.action = canonical_action(&request.action);
    request.validate()?;
    Ok(request)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `^[a-z_][a-z0-9_-]{0,31}$`, or a number (a uid).
pub fn valid_user(user: &str) -> bool {
    let bytes = user.as_bytes();
    if !bytes.is_empty() && bytes.len() <= 10 && bytes.iter().all(u8::is_ascii_digit) {
        return user.parse::<u32>().is_ok();
    }
    match bytes.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_lowercase() || *first == b'_')
                && rest.len() <= 31
                && rest.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-'
                })
        }
        None => false,
    }
}

/// `^[a-z0-9][a-z0-9-]{0,63}$`.
pub fn valid_action(action: &str) -> bool {
    match action.as_bytes().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.len() <= 63
                && rest
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        None => false,
    }
}

/// A service name must be usable as a file name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn valid_service(name: &str) -> bool {
    match name.as_bytes().split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() <= 63
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => false,
    }
}

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

/// One reply event (one JSON object a line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The callback runs; `id` numbers the requests of this supd.
    Started {
        #[serde(default)]
        v: u32,
        action: String,
        id: u64,
    },
    Stdout {
        line: String,
    },
    Stderr {
        line: String,
    },
    /// The callback ended: its exit status (128+N when killed by signal N).
    Exit {
        code: i32,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// The request was refused or failed; final.
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Answer to `ping`.
    Pong {
        #[serde(default)]
        v: u32,
        service: String,
        supd_pid: u32,
    },
    /// Answer to `list`: the callbacks' actions, sorted.
    Actions {
        #[serde(default)]
        v: u32,
        actions: Vec<String>,
    },
    /// Answer to `status`.
    Status(Status),
    /// An event from a newer server; ignored.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The event as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"event":"error","kind":"internal","message":"unserializable event"}"#.into()
        });
        line.push('\n');
        line
    }

    /// Whether no event follows this one.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Event::Exit { .. }
                | Event::Error { .. }
                | Event::Pong { .. }
                | Event::Actions { .. }
                | Event::Status(_)
        )
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Event::Error {
            kind,
            message: message.into(),
        }
    }
}

/// The `status` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub v: u32,
    pub service: String,
    pub service_pid: u32,
    pub supd_pid: u32,
    pub uptime_s: u64,
    #[serde(default)]
    pub running: Vec<Running>,
    /// Last result of each action run since supd started, sorted by action.
    #[serde(default)]
    pub last: Vec<LastResult>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub action: String,
    pub id: u64,
    pub pid: u32,
    pub user: String,
    pub elapsed_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastResult {
    pub action: String,
    pub id: u64,
    /// Unix time (seconds) when it ended.
    pub ended: i64,
    pub duration_ms: u64,
    /// Exit status, absent when it ended with an error (timeout, internal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
}

/// Why a request got no (complete) result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The action is already running, or --max-callbacks are.
    Busy,
    UnknownAction,
    BadRequest,
    /// The peer's uid/gid is not allowed.
    Denied,
    /// The callback ran past --callback-timeout; its process group was killed.
    Timeout,
    Internal,
    #[serde(other)]
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Busy => "busy",
            ErrorKind::UnknownAction => "unknown-action",
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::Denied => "denied",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
            ErrorKind::Other => "other",
        }
    }

    /// supctl's exit status for this error (sysexits.h, and 124 like timeout(1)).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Busy => 75,
            ErrorKind::UnknownAction | ErrorKind::BadRequest => 64,
            ErrorKind::Denied => 77,
            ErrorKind::Timeout => 124,
            ErrorKind::Internal | ErrorKind::Other => 70,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Request {
        parse_request(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    fn bad(raw: &[u8]) -> String {
        match parse_request(raw) {
            Ok(r) => panic!("{raw:?} parsed as {r:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn legacy_text_form() {
        let r = ok("forum nightly-backup");
        assert_eq!(
            (r.user.as_str(), r.action.as_str()),
            ("forum", "nightly-backup")
        );
        assert!(r.args.is_empty() && r.wait);
        assert_eq!(r.function(), "CB_nightly_backup");
        let r = ok("  root\tping  a b\n");
        assert_eq!(r.args, ["a", "b"]);
        assert_eq!(ok("0 ping\r\n").user, "0");
        assert_eq!(ok("root x é ü/..").args, ["é", "ü/.."]);
    }

    #[test]
    fn underscores_are_dashes_as_in_the_legacy_listener() {
        let r = ok("forum rotate_logs");
        assert_eq!(
            (r.action.as_str(), r.function()),
            ("rotate-logs", "CB_rotate_logs".into())
        );
        assert_eq!(
            ok(r#"{"user":"root","action":"nightly_backup"}"#).action,
            "nightly-backup"
        );
        assert_eq!(Request::new("root", "a_b-c", &[]).action, "a-b-c");
        bad(b"root _ping");
        bad(b"root Rotate_logs");
    }

    #[test]
    fn json_form() {
        let r =
            ok(r#"{"user":"forum","action":"nightly-backup","args":["a b","$(x)"],"wait":false}"#);
        assert_eq!(r.args, ["a b", "$(x)"]);
        assert!(!r.wait);
        let r = ok(r#"{"user":"root","action":"ping"}"#);
        assert!(r.wait && r.args.is_empty());
        assert_eq!(parse_request(r.to_line().as_bytes()), Ok(r));
        bad(br#"{"user":"root","action":"ping","extra":1}"#);
        bad(br#"{"user":"root","action":"ping","args":["a\nb"]}"#);
        bad(br#"{"user":"root","action":"ping","v":2}"#);
        bad(br#"{"user":"root","action":"ping""#);
    }

    #[test]
    fn rejects_bad_input() {
        bad(b"");
        bad(b"\n");
        bad(b"root");
        bad(b"root a;b");
        bad(b"root $(touch x)");
        bad(b"root ../../bin/sh");
        bad(b"Root ping");
        bad(b"root -x");
        bad(b"root ping\nroot ping");
        bad(b"root ping\0");
        bad(b"root \xff\xfe");
        bad(b"4294967296 ping");
        bad(format!("{} ping", "a".repeat(33)).as_bytes());
        bad(format!("root {}", "a".repeat(65)).as_bytes());
        bad(format!("root ping {}", "a ".repeat(65)).as_bytes());
        assert!(bad(&vec![b'a'; MAX_REQUEST + 1]).contains("longer"));
        ok(&format!("{} {}", "a".repeat(32), "b".repeat(64)));
    }

    #[test]
    fn names() {
        assert!(valid_service("mysql") && valid_service("db-1.local"));
        assert!(!valid_service("") && !valid_service("..") && !valid_service("a/b"));
        assert!(!valid_service(".hidden"));
        assert_eq!(
            action_of_function("CB_rotate_logs").as_deref(),
            Some("rotate-logs")
        );
        assert_eq!(action_of_function("CB_Bad"), None);
        assert_eq!(action_of_function("other"), None);
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Started {
                v: VERSION,
                action: "x".into(),
                id: 7,
            },
            Event::Stdout {
                line: "a \"b\"".into(),
            },
            Event::Exit {
                code: 3,
                duration_ms: 12,
                signal: None,
            },
            Event::error(ErrorKind::UnknownAction, "no CB_x"),
            Event::Status(Status::default()),
        ];
        for event in events {
            let line = event.to_line();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            let back: Event = serde_json::from_str(&line).unwrap();
            assert_eq!(back, event);
        }
        assert_eq!(
            Event::error(ErrorKind::Busy, "m").to_line(),
            "{\"event\":\"error\",\"kind\":\"busy\",\"message\":\"m\"}\n"
        );
        let future: Event = serde_json::from_str(r#"{"event":"progress","pct":3}"#).unwrap();
        assert_eq!(future, Event::Unknown);
        let kind: Event =
            serde_json::from_str(r#"{"event":"error","kind":"quota","message":""}"#).unwrap();
        assert!(matches!(
            kind,
            Event::Error {
                kind: ErrorKind::Other,
                ..
            }
        ));
    }
}
