//! Logging: one event a line on stderr (the container log), as text or JSON.
//!
//! Deliberately tiny instead of `tracing-subscriber`: PID 1 logs a handful of events,
//! and every kilobyte and allocation counts towards the idle RSS and binary-size goals.
//! Each event is formatted into one buffer and written with one `write(2)`, so lines
//! from supd never interleave with each other; a stalled stderr never blocks supd
//! ([`sink`]: lines wait in a bounded queue, or are dropped and counted).
//!
//! ```text
//! supd::info!("request", action = "ping", peer_uid = 0);
//! // text: 2026-11-25T14:40:01.123Z INFO supd[1]: request action=ping peer_uid=0
//! // json: {"ts":"2026-11-25T14:40:01.123Z","level":"info","pid":1,"msg":"request","action":"ping","peer_uid":"0"}
//! ```

mod sink;

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// Default `warn`, each `-v` one level louder, each `-q` one quieter (`-qq`: nothing).
    pub fn from_verbosity(verbose: u8, quiet: u8) -> Option<Level> {
        let n = (Level::Warn as i16) + i16::from(verbose) - i16::from(quiet);
        match n {
            i16::MIN..=0 => None,
            1 => Some(Level::Error),
            2 => Some(Level::Warn),
            3 => Some(Level::Info),
            4 => Some(Level::Debug),
            _ => Some(Level::Trace),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Set the level (None = silent) and format. Call once, early in `main`.
pub fn init(level: Option<Level>, format: Format) {
    MAX_LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
    JSON.store(u8::from(format == Format::Json), Ordering::Relaxed);
    sink::open();
}

/// Change only the level (a face whose default is louder, e.g. `supd scheduler`, whose
/// run lines are its output, defaults to info).
pub fn set_level(level: Option<Level>) {
    MAX_LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    (level as u8) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Write one event. Use the macros (`info!` ...) rather than calling this directly.
pub fn emit(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    if !enabled(level) {
        return;
    }
    let line = if JSON.load(Ordering::Relaxed) == 1 {
        format_json(level, msg, fields)
    } else {
        format_text(level, msg, fields)
    };
    sink::write(&line, dropped_notice);
}

/// Before exit: give a slow stderr up to `limit` to take the lines still waiting.
pub fn flush(limit: std::time::Duration) {
    sink::finish(limit, dropped_notice);
}

/// The line that reports how many lines a stalled stderr cost.
fn dropped_notice(dropped: u64) -> String {
    let fields: [(&str, &dyn Display); 1] = [("lines", &dropped)];
    let msg = "log lines dropped: stderr was not read";
    if JSON.load(Ordering::Relaxed) == 1 {
        format_json(Level::Warn, msg, &fields)
    } else {
        format_text(Level::Warn, msg, &fields)
    }
}

fn now() -> String {
    let ts = jiff::Timestamp::now();
    format!("{ts:.3}")
}

fn format_text(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(96);
    let _ = write!(
        out,
        "{} {:<5} supd[{}]: {}",
        now(),
        level.name().to_ascii_uppercase(),
        std::process::id(),
        msg
    );
    for (key, value) in fields {
        let value = value.to_string();
        let needs_quotes =
            value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
        if needs_quotes {
            let _ = write!(out, " {key}={value:?}");
        } else {
            let _ = write!(out, " {key}={value}");
        }
    }
    out.push('\n');
    out
}

fn format_json(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("ts".into(), now().into());
    map.insert("level".into(), level.name().into());
    map.insert("pid".into(), std::process::id().into());
    map.insert("msg".into(), msg.into());
    for (key, value) in fields {
        map.insert((*key).to_string(), value.to_string().into());
    }
    let mut out = serde_json::Value::Object(map).to_string();
    out.push('\n');
    out
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_event {
    ($level:expr, $msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        if $crate::log::enabled($level) {
            $crate::log::emit(
                $level,
                &$msg,
                &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*],
            )
        }
    };
}

/// `error!("message", key = value, ...)`: values are anything `Display`.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::__log_event!($crate::log::Level::Error, $($t)*) }; }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::__log_event!($crate::log::Level::Warn, $($t)*) }; }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::__log_event!($crate::log::Level::Info, $($t)*) }; }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::__log_event!($crate::log::Level::Debug, $($t)*) }; }
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::__log_event!($crate::log::Level::Trace, $($t)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(Level::from_verbosity(0, 0), Some(Level::Warn));
        assert_eq!(Level::from_verbosity(2, 0), Some(Level::Debug));
        assert_eq!(Level::from_verbosity(9, 0), Some(Level::Trace));
        assert_eq!(Level::from_verbosity(0, 1), Some(Level::Error));
        assert_eq!(Level::from_verbosity(0, 2), None);
    }

    #[test]
    fn text_quotes_values_with_blanks() {
        let line = format_text(Level::Info, "ran", &[("action", &"a b"), ("code", &0)]);
        assert!(line.ends_with("ran action=\"a b\" code=0\n"), "{line}");
    }

    #[test]
    fn json_is_one_object_a_line() {
        let line = format_json(Level::Warn, "x", &[("k", &"v\"q")]);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "warn");
        assert_eq!(value["k"], "v\"q");
        assert_eq!(line.matches('\n').count(), 1);
    }
}
