//! Requests: the two forms, their parsing and validation, and the names they carry.

use serde::{Deserialize, Serialize};

use super::{MAX_ARGS, MAX_REQUEST, VERSION};

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
        let args: Vec<String> = tokens.by_ref().take(MAX_ARGS).map(str::to_string).collect();
        // Count the rest, so that the error says how many there were (not 65).
        let more = tokens.count();
        if more > 0 {
            return Err(RequestError::new(format!(
                "too many arguments ({}, at most {MAX_ARGS})",
                MAX_ARGS + more
            )));
        }
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
}
