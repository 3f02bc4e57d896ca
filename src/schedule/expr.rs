//! The schedule part of a job: five Vixie/cronie fields or an `@macro` (CRON-RULES.md §2, §3).
//!
//! Parsing is strict on purpose: everything cronie rejects is rejected, and so are the
//! things cronie silently turns into a schedule nobody meant (reversed ranges, steps larger
//! than the field, `N/S`). Each field keeps the cronie "starred" flag (its text starts with
//! `*`, or with the legacy `/`), which decides both the day-of-month/day-of-week rule and
//! whether a job is wildcard or fixed-time for daylight saving.

use std::fmt;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Bits 0-59.
    pub minutes: u64,
    /// Bits 0-23.
    pub hours: u32,
    /// Bits 1-31.
    pub doms: u32,
    /// Bits 1-12.
    pub months: u16,
    /// Bits 0-6 (Sunday = 0; a 7 in the text lands on bit 0).
    pub dows: u8,
    /// Day-of-month text starts with `*` or `/` (cronie `DOM_STAR`).
    pub dom_star: bool,
    /// Day-of-week text starts with `*` or `/` (cronie `DOW_STAR`).
    pub dow_star: bool,
    /// Minute or hour text starts with `*` or `/` (cronie `MIN_STAR | HR_STAR`): the job
    /// fires on every real instant whose wall-clock minute matches. Otherwise it is
    /// fixed-time: once per matching wall-clock time, across DST gaps and folds.
    pub wildcard: bool,
    /// The schedule as written (macro or five fields joined by one blank).
    pub text: String,
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Number of values, the largest allowed step.
    size: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    size: 60,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    size: 24,
    names: &[],
};
const DOM: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    size: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    size: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    size: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The macros of cronie's `entry.c`, lower case only (`strcmp`).
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The five-field equivalent of a macro, or an error message for an unknown one.
pub fn expand_macro(word: &str) -> Result<&'static str, String> {
    if let Some((_, fields)) = MACROS.iter().find(|(name, _)| *name == word) {
        return Ok(fields);
    }
    let lower = word.to_ascii_lowercase();
    Err(match lower.as_str() {
        "@reboot" => "@reboot is not supported (a container has no reboot event; \
                      use the service's entrypoint)"
            .to_string(),
        "@every" => {
            "@every is not cron syntax (write the interval as fields, e.g. */5 * * * *)".to_string()
        }
        _ if MACROS.iter().any(|(name, _)| *name == lower) => {
            format!("macro {word:?} must be lower case ({lower})")
        }
        _ => format!(
            "unknown macro {word:?} (use @yearly, @annually, @monthly, @weekly, @daily, \
             @midnight or @hourly)"
        ),
    })
}

impl Schedule {
    /// Parse five fields or one `@macro` (the `--expr` form).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = expr.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        match words.as_slice() {
            [word] if word.starts_with('@') => {
                let fields = expand_macro(word)?;
                let mut schedule = Self::parse(fields)?;
                schedule.text = (*word).to_string();
                Ok(schedule)
            }
            [min, hour, dom, mon, dow] => Self::from_fields([min, hour, dom, mon, dow]),
            _ => Err(format!(
                "expected five fields MIN HOUR DOM MON DOW or an @macro, got {} word{}",
                words.len(),
                if words.len() == 1 { "" } else { "s" }
            )),
        }
    }

    /// Parse the five fields of a job line.
    pub fn from_fields(fields: [&str; 5]) -> Result<Schedule, String> {
        let [min, hour, dom, mon, dow] = fields;
        let minutes = parse_field(min, MINUTE)?;
        let hours = parse_field(hour, HOUR)?;
        let doms = parse_field(dom, DOM)?;
        let months = parse_field(mon, MONTH)?;
        let mut dows = parse_field(dow, DOW)?;
        if dows & (1 << 7) != 0 {
            dows |= 1; // 7 and 0 are both Sunday
        }
        let starred = |text: &str| text.starts_with('*') || text.starts_with('/');
        let schedule = Schedule {
            minutes,
            hours: hours as u32,
            doms: doms as u32,
            months: months as u16,
            dows: (dows & 0x7f) as u8,
            dom_star: starred(dom),
            dow_star: starred(dow),
            wildcard: starred(min) || starred(hour),
            text: fields.join(" "),
        };
        schedule.check_fires()?;
        Ok(schedule)
    }

    /// A schedule that can never fire is an error (cronie accepts it silently).
    ///
    /// Under the AND rule (one day field starred) a day fires when both match; every
    /// (month, day) that exists falls on every weekday in some year (Feb 29 too, within
    /// 28 years), so the schedule fires iff some selected day exists in some selected
    /// month. Under the OR rule every weekday occurs in every month, so it always fires.
    fn check_fires(&self) -> Result<(), String> {
        if !(self.dom_star || self.dow_star) {
            return Ok(());
        }
        let exists = (1..=12u32).any(|month| {
            self.months & (1 << month) != 0
                && (1..=max_days(month)).any(|day| self.doms & (1 << day) != 0)
        });
        if exists {
            Ok(())
        } else {
            Err(format!(
                "schedule {:?} never fires (no selected month has a selected day-of-month)",
                self.text
            ))
        }
    }

    /// Whether a wall-clock date matches (cronie's day rule), given its weekday (0 = Sun).
    pub fn day_matches(&self, month: u32, day: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom = self.doms & (1 << day) != 0;
        let dow = self.dows & (1 << weekday) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Longest month length, February counted as 29.
fn max_days(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse one field into a bit set (bit N = value N).
fn parse_field(text: &str, field: Field) -> Result<u64, String> {
    let name = field.name;
    if text.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| matches!(c, 'L' | 'W' | '#' | '?' | 'l' | 'w'))
    {
        // Only complain about L/W when they are not part of a three-letter name.
        if matches!(c, '#' | '?') || !looks_like_names(text) {
            return Err(format!(
                "{name} {text:?}: Quartz syntax (L, W, #, ?) is not cron syntax"
            ));
        }
    }
    if text.contains('~') {
        return Err(format!(
            "{name} {text:?}: random ranges (~) are not supported"
        ));
    }
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{name} {text:?}: empty list item"));
        }
        bits |= parse_item(item, field)?;
    }
    Ok(bits)
}

fn looks_like_names(text: &str) -> bool {
    text.split([',', '-', '/']).all(|part| {
        part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() == 3 && part.bytes().all(|b| b.is_ascii_alphabetic()))
            || part == "*"
    })
}

/// One list item: `*`, `*/S`, `/S` (legacy), `N`, `N-M`, `N-M/S`.
fn parse_item(item: &str, field: Field) -> Result<u64, String> {
    let name = field.name;
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let step = match step {
        None => 1,
        Some(step) => {
            if step.is_empty() {
                return Err(format!("{name} {item:?}: missing step after /"));
            }
            if !step.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{name} {item:?}: step {step:?} is not a number"));
            }
            let value = parse_digits(step);
            if value == 0 || value > field.size {
                return Err(format!(
                    "{name} step {step} out of range 1-{} (in {item:?})",
                    field.size
                ));
            }
            value
        }
    };
    let (low, high) = if range == "*" || range.is_empty() {
        // `*` or the legacy `/S` (scheduler.py's shorthand for `*/S`).
        if range.is_empty() && step == 1 && !item.contains('/') {
            return Err(format!("{name} {item:?}: empty item"));
        }
        (
            field.min,
            if field.name == DOW.name { 6 } else { field.max },
        )
    } else if let Some((a, b)) = range.split_once('-') {
        let low = parse_value(a, item, field)?;
        let mut high = parse_value(b, item, field)?;
        // cronie get_range: in day-of-week, a range ending in Sunday (0) ends in 7.
        if field.name == DOW.name && high == 0 && low > 0 {
            high = 7;
        }
        if low > high {
            return Err(format!("{name} range {a}-{b} is reversed (in {item:?})"));
        }
        (low, high)
    } else {
        let value = parse_value(range, item, field)?;
        if step != 1 || item.contains('/') {
            return Err(format!(
                "{name} {item:?}: a step needs a range or *; write {range}-{}/{}",
                field.max,
                item.split_once('/').map_or("", |(_, s)| s)
            ));
        }
        (value, value)
    };
    let mut bits = 0u64;
    let mut value = low;
    while value <= high {
        bits |= 1 << value;
        value += step;
    }
    Ok(bits)
}

/// A number or (in month and day-of-week only) a three-letter name, range-checked.
fn parse_value(text: &str, item: &str, field: Field) -> Result<u32, String> {
    let name = field.name;
    if text.is_empty() {
        return Err(format!("{name} {item:?}: missing number in range"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let value = parse_digits(text);
        if value < field.min || value > field.max {
            let shown = text.trim_start_matches('0');
            let shown = if shown.is_empty() { "0" } else { shown };
            let shown: String = shown.chars().take(20).collect();
            return Err(format!(
                "{name} {shown} out of range {}-{}",
                field.min, field.max
            ));
        }
        return Ok(value);
    }
    if !field.names.is_empty() {
        let lower = text.to_ascii_lowercase();
        if let Some(index) = field.names.iter().position(|n| *n == lower) {
            let offset = field.min; // month names start at 1, weekday names at 0
            return Ok(index as u32 + offset);
        }
        return Err(format!(
            "{name} {text:?} is not a number or a three-letter name ({}..{})",
            field.names[0],
            field.names[field.names.len() - 1]
        ));
    }
    Err(format!("{name} {text:?} is not a number"))
}

/// ASCII digits to a number, saturating (so `0005` is 5 and a huge number is out of range).
fn parse_digits(text: &str) -> u32 {
    text.bytes().fold(0u32, |acc, b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn bits(values: &[u32]) -> u64 {
        values.iter().fold(0, |acc, v| acc | 1 << v)
    }

    #[test]
    fn items() {
        let s = Schedule::parse("*/15 1-3,5 1-31/10 jan-mar fri-sun").unwrap();
        assert_eq!(s.minutes, bits(&[0, 15, 30, 45]));
        assert_eq!(u64::from(s.hours), bits(&[1, 2, 3, 5]));
        assert_eq!(u64::from(s.doms), bits(&[1, 11, 21, 31]));
        assert_eq!(u64::from(s.months), bits(&[1, 2, 3]));
        assert_eq!(u64::from(s.dows), bits(&[0, 5, 6]));
        assert!(s.wildcard && !s.dom_star && !s.dow_star);
        let s = Schedule::parse("/5 * * * 7").unwrap();
        assert_eq!(s.minutes, bits(&(0..12).map(|i| i * 5).collect::<Vec<_>>()));
        assert_eq!(s.dows, 1);
        assert!(s.wildcard);
    }

    #[test]
    fn errors() {
        let e = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(e("0 0 * * 8"), "day-of-week 8 out of range 0-7");
        assert_eq!(e("60 0 * * *"), "minute 60 out of range 0-59");
        assert_eq!(e("0 0 0 * *"), "day-of-month 0 out of range 1-31");
        assert_eq!(e("1,,2 0 * * *"), "minute \"1,,2\": empty list item");
        assert_eq!(
            e("5/10 0 * * *"),
            "minute \"5/10\": a step needs a range or *; write 5-59/10"
        );
        assert_eq!(
            e("*/0 * * * *"),
            "minute step 0 out of range 1-60 (in \"*/0\")"
        );
        assert_eq!(
            e("*/61 * * * *"),
            "minute step 61 out of range 1-60 (in \"*/61\")"
        );
        assert_eq!(e("0 5-3 * * *"), "hour range 5-3 is reversed (in \"5-3\")");
        assert!(e("0 0 L * *").contains("Quartz"));
        assert!(e("0 0 * * monday").contains("three-letter"));
        assert!(e("0 0 30 2 *").contains("never fires"));
        assert!(Schedule::parse("0 0 31 2 1").is_ok());
        assert_eq!(
            e("0 0 99999999999 * *"),
            "day-of-month 99999999999 out of range 1-31"
        );
    }

    /// The error `expr` is refused with.
    pub(crate) fn parse_err(expr: &str) -> String {
        match Schedule::parse(expr) {
            Ok(_) => panic!("{expr:?} should be refused"),
            Err(e) => e,
        }
    }

    // CRON-RULES.md §2 Fields

    #[test]
    fn field_syntax() {
        let s = Schedule::parse("0,30 */6 1-10/3 JAN-Mar,dec Mon-FRI").unwrap();
        assert_eq!(s.minutes, 1 | 1 << 30);
        assert_eq!(s.hours, 1 | 1 << 6 | 1 << 12 | 1 << 18);
        assert_eq!(s.doms, 1 << 1 | 1 << 4 | 1 << 7 | 1 << 10);
        assert_eq!(s.months, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 12);
        assert_eq!(s.dows, 0b011_1110);
        // Leading zeros, 7 = Sunday, fri-sun = 5-7, sun-0 ranges.
        let s = Schedule::parse("007 05 * * fri-sun").unwrap();
        assert_eq!((s.minutes, s.hours, s.dows), (1 << 7, 1 << 5, 0b110_0001));
        assert_eq!(Schedule::parse("0 0 * * 5-0").unwrap().dows, 0b110_0001);
        assert_eq!(Schedule::parse("0 0 * * 7").unwrap().dows, 1);
        assert_eq!(Schedule::parse("0 0 * * 0-7").unwrap().dows, 0x7f);
        // Steps up to the field size are fine.
        assert_eq!(
            Schedule::parse("*/60 */24 */31 */12 */7").unwrap().minutes,
            1
        );
        assert_eq!(
            parse_err("*/61 * * * *"),
            "minute step 61 out of range 1-60 (in \"*/61\")"
        );
        assert_eq!(
            parse_err("* * * * */8"),
            "day-of-week step 8 out of range 1-7 (in \"*/8\")"
        );
        assert_eq!(
            parse_err("0 0 1-5/0 * *"),
            "day-of-month step 0 out of range 1-31 (in \"1-5/0\")"
        );
        assert_eq!(
            parse_err("0 0 * jan/2 *"),
            "month \"jan/2\": a step needs a range or *; write jan-12/2"
        );
        assert_eq!(
            parse_err("0 0 * * *,"),
            "day-of-week \"*,\": empty list item"
        );
        assert_eq!(parse_err("a 0 * * *"), "minute \"a\" is not a number");
        assert_eq!(
            parse_err("-5 0 * * *"),
            "minute \"-5\": missing number in range"
        );
        assert_eq!(
            parse_err("0 0 * * *-2"),
            "day-of-week \"*\" is not a number or a three-letter name (sun..sat)"
        );
        assert_eq!(
            parse_err("* * * *"),
            "expected five fields MIN HOUR DOM MON DOW or an @macro, got 4 words"
        );
    }

    // §4 Wildcard or fixed-time jobs

    #[test]
    fn wildcard_or_fixed_classification() {
        for fixed in [
            "30 2 * * *",
            "0,30 1 * * *",
            "30 1-3 * * *",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
        ] {
            assert!(!Schedule::parse(fixed).unwrap().wildcard, "{fixed}");
        }
        for wild in [
            "*/15 * * * *",
            "30 * * * *",
            "* 2 * * *",
            "0 */2 * * *",
            "/5 2 * * *",
            "@hourly",
        ] {
            assert!(Schedule::parse(wild).unwrap().wildcard, "{wild}");
        }
    }
}
