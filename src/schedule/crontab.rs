//! schedule.cron: the file parser (CRON-RULES.md §1).
//!
//! Every line is checked and every error of a file is reported at once, each as
//! `NAME:LINE: message` (NAME = the path as given), so one `--check` run shows all
//! mistakes. Nothing here panics on input: the fuzz target drives [`parse`] directly.

use std::path::Path;

use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::expr::{expand_macro, Schedule};
use crate::control::protocol;

/// Files larger than this are refused (a schedule is a few lines; this bounds memory).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// One job of the file.
#[derive(Clone, Debug)]
pub struct Job {
    /// 1-based line number in the file.
    pub line: usize,
    pub schedule: Schedule,
    pub user: String,
    pub service: String,
    pub action: String,
    /// The job's zone and its name as written (or `UTC` / `$TZ`'s value).
    pub tz: TimeZone,
    pub tz_name: String,
    /// The `SLOT=N` line above it: only the replica with `--slot N` runs it in-process
    /// (DESIGN §5); `supd scheduler` ignores it.
    pub slot: Option<u32>,
}

impl Job {
    /// What identifies a job across reloads: same line text means same job.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.schedule.text, self.user, self.service, self.action, self.tz_name
        )
    }
}

/// A zone with the name it was given.
#[derive(Clone, Debug)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }
}

/// Why a file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// Missing or unreadable (exit 66).
    Unreadable(String),
    /// Syntax errors, each `NAME:LINE: message` (exit 65).
    Invalid(Vec<String>),
}

/// Read and parse a file (errors name it by the path as the user gave it). Also returns
/// the text, which the runner compares to tell a real change from a touch.
pub fn load(path: &Path, default_zone: &Zone) -> Result<(Vec<Job>, Vec<u8>), LoadError> {
    let name = path.display().to_string();
    let text = read_limited(path).map_err(|e| LoadError::Unreadable(format!("{name}: {e}")))?;
    let jobs = parse(&name, &text, default_zone).map_err(LoadError::Invalid)?;
    Ok((jobs, text))
}

pub fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// Parse a whole file. Err holds every error, formatted `NAME:LINE: message`.
pub fn parse(name: &str, text: &[u8], default_zone: &Zone) -> Result<Vec<Job>, Vec<String>> {
    let db = TimeZoneDatabase::bundled();
    let mut zone = default_zone.clone();
    let mut slot = None;
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = match std::str::from_utf8(raw) {
            Ok(line) => line,
            Err(_) => {
                errors.push(format!("{name}:{number}: line is not valid UTF-8"));
                continue;
            }
        };
        match parse_line(line, number, &zone, &db) {
            Ok(Line::Empty) => {}
            Ok(Line::Zone(new)) => zone = new,
            Ok(Line::Slot(new)) => slot = new,
            Ok(Line::Job(mut job)) => {
                job.slot = slot;
                jobs.push(*job)
            }
            Err(message) => errors.push(format!("{name}:{number}: {message}")),
        }
    }
    if errors.is_empty() {
        Ok(jobs)
    } else {
        Err(errors)
    }
}

enum Line {
    Empty,
    Zone(Zone),
    /// `SLOT=N`, or `SLOT=*` (None: every replica).
    Slot(Option<u32>),
    Job(Box<Job>),
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn parse_line(
    line: &str,
    number: usize,
    zone: &Zone,
    db: &TimeZoneDatabase,
) -> Result<Line, String> {
    let trimmed = line.trim_matches(is_blank);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Line::Empty);
    }
    if let Some((var, value)) = assignment(trimmed) {
        if var == "SLOT" {
            return match unquote(value) {
                "*" => Ok(Line::Slot(None)),
                n if !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse()
                    .map(|n| Line::Slot(Some(n)))
                    .map_err(|e| format!("bad SLOT {n:?}: {e}")),
                other => Err(format!(
                    "bad SLOT {other:?} (a replica number like 1, or * for every replica)"
                )),
            };
        }
        if var != "TZ" && var != "CRON_TZ" {
            return Err(format!(
                "only TZ=, CRON_TZ= and SLOT= lines may set variables, not {var} (jobs run no shell)"
            ));
        }
        return lookup_zone(unquote(value), db).map(Line::Zone);
    }
    let words: Vec<&str> = trimmed.split(is_blank).filter(|w| !w.is_empty()).collect();
    let first = words.first().copied().unwrap_or_default();
    let (schedule, names) = if first.starts_with('@') {
        if !(3..=4).contains(&words.len()) {
            return Err(format!(
                "expected @macro [USER] SERVICE ACTION (3 or 4 words), got {} words",
                words.len()
            ));
        }
        let fields = expand_macro(first)?;
        let mut schedule = Schedule::parse(fields)?;
        schedule.text = first.to_string();
        (schedule, &words[1..])
    } else {
        if !(7..=8).contains(&words.len()) {
            return Err(format!(
                "expected MIN HOUR DOM MON DOW [USER] SERVICE ACTION (7 or 8 words), got {} word{}",
                words.len(),
                if words.len() == 1 { "" } else { "s" }
            ));
        }
        let (fields, names) = words.split_at(5);
        let schedule =
            Schedule::from_fields([fields[0], fields[1], fields[2], fields[3], fields[4]])?;
        (schedule, names)
    };
    let (user, service, action) = match names {
        [service, action] => ("root", *service, *action),
        [user, service, action] => (*user, *service, *action),
        _ => return Err("expected [USER] SERVICE ACTION".into()),
    };
    check_user(user)?;
    check_service(service)?;
    check_action(action)?;
    Ok(Line::Job(Box::new(Job {
        line: number,
        schedule,
        user: user.into(),
        service: service.into(),
        action: action.into(),
        tz: zone.tz.clone(),
        tz_name: zone.name.clone(),
        slot: None,
    })))
}

/// `NAME = value` (blanks around `=` allowed), NAME a shell-like identifier.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (var, value) = line.split_once('=')?;
    let var = var.trim_end_matches(is_blank);
    let ident = !var.is_empty()
        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !var.as_bytes()[0].is_ascii_digit();
    ident.then(|| (var, value.trim_matches(is_blank)))
}

/// Strip one pair of matching quotes.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// A zone name as allowed in `TZ=` lines and `--tz`, from the embedded tz data.
pub fn lookup_zone(name: &str, db: &TimeZoneDatabase) -> Result<Zone, String> {
    let valid = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        });
    if !valid {
        return Err(format!(
            "bad time zone name {name:?} (an IANA name like Europe/London)"
        ));
    }
    db.get(name)
        .map(|tz| Zone {
            name: name.to_string(),
            tz,
        })
        .map_err(|_| format!("unknown time zone {name:?}"))
}

/// The default zone: `$TZ` (a leading `:` ignored; an IANA name, else a POSIX TZ string),
/// else UTC.
pub fn default_zone() -> Result<Zone, String> {
    let value = match std::env::var("TZ") {
        Ok(value) if !value.is_empty() => value,
        _ => return Ok(Zone::utc()),
    };
    let name = value.strip_prefix(':').unwrap_or(&value);
    let db = TimeZoneDatabase::bundled();
    lookup_zone(name, &db)
        .or_else(|_| {
            TimeZone::posix(name).map(|tz| Zone {
                name: name.to_string(),
                tz,
            })
        })
        .map_err(|_| format!("$TZ: unknown time zone {value:?}"))
}

// The names follow the request socket's own rules (one definition, in `protocol`), so a
// line that passes here is never answered `bad-request`.

fn check_user(user: &str) -> Result<(), String> {
    if protocol::valid_user(user) {
        Ok(())
    } else {
        Err(format!(
            "bad user {user:?} (must match ^[a-z_][a-z0-9_-]{{0,31}}$ or be a number)"
        ))
    }
}

/// Stricter than the socket's own service names (CRON-RULES.md §1): lower case, no `.`.
fn check_service(service: &str) -> Result<(), String> {
    let ok = protocol::valid_service(service)
        && !service.bytes().any(|c| c.is_ascii_uppercase() || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad service {service:?} (must match ^[a-z0-9][a-z0-9_-]{{0,63}}$)"
        ))
    }
}

fn check_action(action: &str) -> Result<(), String> {
    // `rotate_logs` is `rotate-logs` (legacy listener.sh; see protocol::canonical_action).
    if protocol::valid_action(&protocol::canonical_action(action)) {
        Ok(())
    } else {
        Err(format!(
            "bad action {action:?} (must match ^[a-z0-9][a-z0-9_-]{{0,63}}$)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_file() {
        let text = "#min hour dom mon dow [user] service action\n \
                    /5   *    *   *   *  forum   php     task-check\n  \
                    5   2    *   *   *  apache2 rotate-logs\n  \
                    0   4    *   *   *  forum   apache2 nightly-backup\n  \
                    5   4    *   *   *  forum   mysql   nightly-backup\n";
        let jobs = parse("schedule.cron", text.as_bytes(), &Zone::utc()).unwrap();
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].line, 2);
        assert_eq!(jobs[1].user, "root");
        assert_eq!(jobs[1].service, "apache2");
        assert_eq!(jobs[3].action, "nightly-backup");
    }

    #[test]
    fn all_errors_at_once() {
        let text = "0 0 * * 8 a b\nFOO=bar\nTZ=Mars/Base\n* * * * * Bad svc act\n";
        let errors = parse("f", text.as_bytes(), &Zone::utc()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(errors[0], "f:1: day-of-week 8 out of range 0-7");
    }

    #[test]
    fn slot_lines_apply_below_until_reset() {
        let text = "* * * * * a b\nSLOT=2\n* * * * * a c\nSLOT=*\n* * * * * a d\n";
        let jobs = parse("f", text.as_bytes(), &Zone::utc()).unwrap();
        let slots: Vec<_> = jobs.iter().map(|j| j.slot).collect();
        assert_eq!(slots, [None, Some(2), None]);
        let errors = parse("f", b"SLOT=x\nSLOT=\n", &Zone::utc()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
