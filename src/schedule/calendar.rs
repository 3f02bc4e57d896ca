//! Next fire time of a schedule in a time zone, with cronie's daylight-saving rules
//! applied in the job's own zone (CRON-RULES.md §4).
//!
//! The time line is cut into segments between the zone's transitions; inside a segment
//! the offset is constant, so wall-clock time is a plain shift of real time and the next
//! matching wall-clock minute can be found with the usual field-skipping search (months,
//! days and hours that cannot match are jumped over, not walked). The rules then decide
//! what happens at a segment's start:
//!
//! - wildcard jobs fire at every real instant whose wall-clock minute matches: a gap
//!   (forward shift) simply has no such instants, a fold (backward shift) has them twice;
//! - fixed-time jobs fire once per matching wall-clock time: in a fold the wall-clock times
//!   already seen before the shift are skipped (only the earlier occurrence fires), and a
//!   gap that contains a matching time fires once, at the transition instant (the first
//!   instant after the jump); a matching time right after the jump is the same instant,
//!   so it is one run, not two.
//!
//! All arithmetic is in whole seconds (`i64`) and minutes of "local seconds" (real
//! seconds plus the offset); jiff supplies the zone's offsets and transitions.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::expr::Schedule;

/// How far ahead a search goes before giving up (parsing rejects schedules that never
/// fire; Feb 29 on a given weekday recurs within 40 years).
const SEARCH_YEARS: i64 = 500;
const MINUTES_PER_DAY: i64 = 1440;

/// The first fire time strictly after `after`, or None if there is none within the
/// search horizon (or beyond jiff's range).
pub fn next_after(schedule: &Schedule, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let mut t = after.as_second();
    if after.subsec_nanosecond() < 0 {
        t -= 1; // floor: fire > after  <=>  fire > t for whole seconds
    }
    let horizon = t.saturating_add(SEARCH_YEARS * 366 * 86_400);
    let mut off = i64::from(tz.to_offset(after).seconds());
    // Start of the current segment and the offset before it (only fixed-time jobs need
    // them, to skip the wall-clock times a fold repeats).
    let mut seg_start: Option<i64> = None;
    let mut prev_off = off;
    if !schedule.wildcard {
        if let Ok(probe) = Timestamp::from_second(t.saturating_add(1)) {
            if let Some(tr) = tz.preceding(probe).next() {
                let s = tr.timestamp().as_second();
                seg_start = Some(s);
                prev_off = offset_at(tz, s - 1).unwrap_or(off);
            }
        }
    }
    let mut first = true;
    loop {
        let seg_end = Timestamp::from_second(seg_start.unwrap_or(t).max(t))
            .ok()
            .and_then(|cursor| tz.following(cursor).next())
            .map(|tr| (tr.timestamp().as_second(), i64::from(tr.offset().seconds())));

        if !first && !schedule.wildcard && off > prev_off {
            // A gap: wall-clock times [s+prev_off, s+off) never happen; if one matches,
            // the job fires at the transition itself.
            let s = seg_start?;
            let lo = ceil_div(s + prev_off, 60);
            let hi = ceil_div(s + off, 60);
            if next_match(schedule, lo, hi).is_some() {
                return Timestamp::from_second(s).ok();
            }
        }

        let mut lo = t.checked_add(off)?.div_euclid(60) + 1;
        if let Some(s) = seg_start {
            lo = lo.max(ceil_div(s + off, 60));
            if !schedule.wildcard && prev_off > off {
                lo = lo.max(ceil_div(s + prev_off, 60)); // fold: first occurrence only
            }
        }
        let hi = match seg_end {
            Some((e, _)) => ceil_div(e + off, 60),
            None => ceil_div(horizon + off, 60),
        };
        if let Some(wall) = next_match(schedule, lo, hi) {
            return Timestamp::from_second(wall * 60 - off).ok();
        }
        let (e, new_off) = seg_end?;
        if e > horizon {
            return None;
        }
        seg_start = Some(e);
        prev_off = off;
        off = new_off;
        first = false;
    }
}

/// The offset (seconds) in effect at a Unix second.
fn offset_at(tz: &TimeZone, second: i64) -> Option<i64> {
    Timestamp::from_second(second)
        .ok()
        .map(|ts| i64::from(tz.to_offset(ts).seconds()))
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// The first matching wall-clock minute `m` (minutes since 1970-01-01T00:00 local) with
/// `lo <= m < hi`.
pub fn next_match(schedule: &Schedule, lo: i64, hi: i64) -> Option<i64> {
    if lo >= hi {
        return None;
    }
    let mut day = lo.div_euclid(MINUTES_PER_DAY);
    let rem = lo.rem_euclid(MINUTES_PER_DAY);
    let mut hour = (rem / 60) as u32;
    let mut minute = (rem % 60) as u32;
    loop {
        if day * MINUTES_PER_DAY >= hi {
            return None;
        }
        let (year, month, dom) = civil_from_days(day);
        if schedule.months & (1 << month) == 0 {
            // Jump to the first day of the next selected month.
            let next = next_bit(u64::from(schedule.months), month + 1, 12);
            day = match next {
                Some(m) => days_from_civil(year, m, 1),
                None => {
                    let m = next_bit(u64::from(schedule.months), 1, 12)?;
                    days_from_civil(year + 1, m, 1)
                }
            };
            (hour, minute) = (0, 0);
            continue;
        }
        let weekday = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        if !schedule.day_matches(month, dom, weekday) {
            day += 1;
            (hour, minute) = (0, 0);
            continue;
        }
        match next_bit(u64::from(schedule.hours), hour, 23) {
            None => {
                day += 1;
                (hour, minute) = (0, 0);
                continue;
            }
            Some(h) if h != hour => (hour, minute) = (h, 0),
            Some(_) => {}
        }
        match next_bit(schedule.minutes, minute, 59) {
            None => {
                (hour, minute) = (hour + 1, 0);
                if hour > 23 {
                    day += 1;
                    hour = 0;
                }
            }
            Some(m) => {
                let wall = day * MINUTES_PER_DAY + i64::from(hour) * 60 + i64::from(m);
                return (wall < hi).then_some(wall);
            }
        }
    }
}

/// The lowest set bit `>= from` and `<= max`.
fn next_bit(bits: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let masked = (bits >> from) << from;
    let masked = masked & (u64::MAX >> (63 - max));
    (masked != 0).then(|| masked.trailing_zeros())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS±HH:MM` in the zone's offset at that instant (`+00:00` for UTC).
pub fn format_local(ts: Timestamp, tz: &TimeZone) -> String {
    let offset = tz.to_offset(ts);
    let dt = offset.to_datetime(ts);
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        sign,
        abs / 3600,
        abs / 60 % 60
    )
}

#[cfg(test)]
mod tests;
