//! The value parsers of the command line: durations, signals, FROM:TO pairs, modes.

use std::time::Duration;

/// Parse `1h30m`, `8s`, `500ms`, `2m`, `1d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "bad duration {text:?} (use e.g. 500ms, 8s, 30m, 1h)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "bad duration unit {unit:?} in {text:?} (ms, s, m, h, d)"
                ))
            }
        };
        // Checked all the way: a sum past u64 must be a usage error, not a panic.
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|millis| total.checked_add(Duration::from_millis(millis)))
            .ok_or_else(|| format!("duration {text:?} too large"))?;
    }
    Ok(total)
}

/// Parse a signal name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("signal number {n} out of range 1-64"))
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal {text:?}"))
}

pub(super) fn parse_signal_pair(text: &str) -> Result<(i32, i32), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("expected FROM:TO, got {text:?}"))?;
    Ok((parse_signal(from)?, parse_signal(to)?))
}

pub(super) fn parse_exit_pair(text: &str) -> Result<(u8, u8), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("expected FROM:TO, got {text:?}"))?;
    let code = |s: &str| {
        s.parse::<u8>()
            .map_err(|_| format!("exit status {s:?} not in 0-255"))
    };
    Ok((code(from)?, code(to)?))
}

/// A socket file's permission bits, 0 to 0777: setuid, setgid and sticky mean nothing
/// on a socket, so they are refused rather than set.
pub(super) fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("bad octal mode {text:?}"))?;
    if mode > 0o777 {
        return Err(format!(
            "mode {text:?} has bits beyond 0777 (setuid, setgid, sticky): a socket takes \
             permission bits only"
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        // Sums past u64 are errors, not panics.
        assert!(parse_duration("18446744073709551615s").is_err());
        let sum_past_u64_seconds = "18446744073709551s".repeat(1001);
        assert!(parse_duration(&sum_past_u64_seconds).is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Ok(libc::SIGQUIT));
        assert_eq!(parse_signal("10"), Ok(10));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(
            parse_signal_pair("TERM:QUIT"),
            Ok((libc::SIGTERM, libc::SIGQUIT))
        );
    }
}
