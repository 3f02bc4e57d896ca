//! Reply events, the `status` answer, and the error kinds.

use serde::{Deserialize, Serialize};

use crate::exit;

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
    /// A scheduled run's outcome (ok, failed, lost, skipped), kept across restarts when
    /// the schedule has a state dir; absent for runs a client asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Why a request got no (complete) result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The action is already running (not retried: the run is skipped).
    Busy,
    /// `--max-callbacks` other actions are running: the service is full for now
    /// (worth retrying).
    Full,
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
            ErrorKind::Full => "full",
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
            ErrorKind::Busy | ErrorKind::Full => exit::EX_TEMPFAIL,
            ErrorKind::UnknownAction | ErrorKind::BadRequest => exit::EX_USAGE,
            ErrorKind::Denied => exit::EX_NOPERM,
            ErrorKind::Timeout => exit::TIMEOUT,
            ErrorKind::Internal | ErrorKind::Other => exit::EX_SOFTWARE,
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
    use crate::control::protocol::VERSION;

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
