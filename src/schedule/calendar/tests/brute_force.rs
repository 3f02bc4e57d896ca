//! The calendar against a brute-force minute-by-minute reference: random schedules in
//! zones with and without daylight saving, started around their transitions.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::tz as zone;
use crate::schedule::calendar::{format_local, next_after};
use crate::schedule::expr::Schedule;

/// xorshift64*: small, deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random field: its text and (independently computed) set of values.
fn random_field(
    rng: &mut Rng,
    min: u32,
    max: u32,
    size: u32,
    star_percent: u64,
    near: &[u32],
) -> (String, Vec<bool>) {
    let mut set = vec![false; 64];
    let pick = |rng: &mut Rng| -> u32 {
        if !near.is_empty() && rng.chance(60) {
            near[rng.below(near.len() as u64) as usize].clamp(min, max)
        } else {
            min + rng.below(u64::from(max - min + 1)) as u32
        }
    };
    if rng.chance(star_percent) {
        let top = if max == 7 { 6 } else { max };
        return match rng.below(5) {
            0..=2 => {
                (min..=top).for_each(|v| set[v as usize] = true);
                ("*".into(), set)
            }
            k => {
                let step = 1 + rng.below(u64::from(size.min(20))) as u32;
                (min..=top)
                    .step_by(step as usize)
                    .for_each(|v| set[v as usize] = true);
                let prefix = if k == 3 { "*" } else { "" };
                (format!("{prefix}/{step}"), set)
            }
        };
    }
    let mut items = Vec::new();
    for _ in 0..=rng.below(3) {
        let a = pick(rng);
        match rng.below(3) {
            0 => {
                set[a as usize] = true;
                items.push(a.to_string());
            }
            1 => {
                let b = (a + rng.below(4) as u32).min(max);
                (a..=b).for_each(|v| set[v as usize] = true);
                items.push(format!("{a}-{b}"));
            }
            _ => {
                let b = (a + rng.below(u64::from(max - a + 1)) as u32).min(max);
                let step = 1 + rng.below(5) as u32;
                (a..=b)
                    .step_by(step as usize)
                    .for_each(|v| set[v as usize] = true);
                items.push(format!("{a}-{b}/{step}"));
            }
        }
    }
    (items.join(","), set)
}

struct Reference {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    month: Vec<bool>,
    dow: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
    wildcard: bool,
}

impl Reference {
    /// Does a wall-clock minute match (cronie's rules, written independently)?
    fn matches(&self, dt: jiff::civil::DateTime) -> bool {
        let dow = dt.weekday().to_sunday_zero_offset() as usize;
        let dow_ok = self.dow[dow] || (dow == 0 && self.dow[7]);
        let dom_ok = self.dom[dt.day() as usize];
        let day_ok = if self.dom_star || self.dow_star {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        };
        self.minute[dt.minute() as usize]
            && self.hour[dt.hour() as usize]
            && self.month[dt.month() as usize]
            && day_ok
    }

    fn can_fire(&self) -> bool {
        if !(self.dom_star || self.dow_star) {
            return true;
        }
        (1..=12usize).any(|m| {
            let days = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m];
            self.month[m] && (1..=days).any(|d| self.dom[d])
        })
    }

    /// Every fire time in (from, until], walking real minutes (starting a few hours
    /// before `from` to know which wall-clock times were already seen).
    fn fires(&self, tz: &TimeZone, from: Timestamp, until: i64) -> Vec<i64> {
        let wall_minute = |t: i64| -> (i64, jiff::civil::DateTime) {
            let ts = Timestamp::from_second(t).unwrap();
            let off = i64::from(tz.to_offset(ts).seconds());
            ((t + off).div_euclid(60), tz.to_offset(ts).to_datetime(ts))
        };
        let civil_of =
            |m: i64| jiff::tz::Offset::UTC.to_datetime(Timestamp::from_second(m * 60).unwrap());
        let mut out = Vec::new();
        let mut t = (from.as_second() - 4 * 3600).div_euclid(60) * 60;
        let mut max_wall: Option<i64> = None;
        while t <= until {
            let (w, dt) = wall_minute(t);
            let fire = if self.wildcard {
                self.matches(dt)
            } else {
                match max_wall {
                    None => self.matches(dt),
                    Some(seen) if w > seen => (seen + 1..=w).any(|m| self.matches(civil_of(m))),
                    Some(_) => false,
                }
            };
            max_wall = Some(max_wall.map_or(w, |m| m.max(w)));
            if fire && Timestamp::from_second(t).unwrap() > from {
                out.push(t);
            }
            t += 60;
        }
        out
    }
}

#[test]
fn calendar_equals_brute_force_reference() {
    let zones = [
        "UTC",
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
    ];
    let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    let end: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let transitions: Vec<Vec<i64>> = zones
        .iter()
        .map(|z| {
            zone(z)
                .following(start)
                .take_while(|t| t.timestamp() < end)
                .map(|t| t.timestamp().as_second())
                .collect()
        })
        .collect();
    let window = 24 * 3600;
    // SCHEDULE_PROPTEST_CASES=100000 for a longer run (e.g. with --release).
    let cases: usize = std::env::var("SCHEDULE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("SCHEDULE_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_0001);
    let mut rng = Rng(seed);
    let (mut compared, mut fired) = (0, 0);
    for case in 0..cases {
        let zi = rng.below(zones.len() as u64) as usize;
        let tz = zone(zones[zi]);
        let anchor = match transitions[zi].as_slice() {
            [] => start.as_second() + rng.below(6 * 365 * 86_400) as i64,
            list => list[rng.below(list.len() as u64) as usize],
        };
        // Around the transition, sometimes on a whole minute, sometimes not.
        let mut from_s = anchor - 26 * 3600 + rng.below(30 * 3600) as i64;
        if rng.chance(50) {
            from_s -= from_s.rem_euclid(60);
        }
        let from = Timestamp::new(from_s, if rng.chance(20) { 500_000_000 } else { 0 }).unwrap();
        // Hours near transitions (0-4) are picked more often.
        let (min_t, minute) = random_field(&mut rng, 0, 59, 60, 30, &[0, 15, 30, 45, 59]);
        let (hour_t, hour) = random_field(&mut rng, 0, 23, 24, 30, &[0, 1, 2, 3, 4, 23]);
        let (dom_t, dom) = random_field(&mut rng, 1, 31, 31, 85, &[]);
        let (mon_t, month) = random_field(&mut rng, 1, 12, 12, 85, &[3, 4, 9, 10, 11]);
        let (dow_t, dow) = random_field(&mut rng, 0, 7, 7, 85, &[0, 6, 7]);
        let expr = format!("{min_t} {hour_t} {dom_t} {mon_t} {dow_t}");
        let starred = |t: &str| t.starts_with('*') || t.starts_with('/');
        let reference = Reference {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star: starred(&dom_t),
            dow_star: starred(&dow_t),
            wildcard: starred(&min_t) || starred(&hour_t),
        };
        let schedule = match Schedule::parse(&expr) {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    !reference.can_fire() && e.contains("never fires"),
                    "case {case}: {expr}: {e}"
                );
                continue;
            }
        };
        assert_eq!(schedule.wildcard, reference.wildcard, "{expr}");
        let until = from.as_second() + window;
        let want = reference.fires(&tz, from, until);
        let mut got = Vec::new();
        let mut at = from;
        while let Some(next) = next_after(&schedule, &tz, at) {
            if next.as_second() > until {
                break;
            }
            got.push(next.as_second());
            at = next;
        }
        let show = |v: &[i64]| -> Vec<String> {
            v.iter()
                .map(|s| format_local(Timestamp::from_second(*s).unwrap(), &tz))
                .collect()
        };
        assert_eq!(
            show(&got),
            show(&want),
            "case {case}: {expr:?} in {} from {from}",
            zones[zi]
        );
        compared += 1;
        if !want.is_empty() {
            fired += 1;
        }
    }
    // The generator must produce enough cases that actually fire in the window.
    assert!(
        compared > cases * 9 / 10 && fired > compared / 4,
        "compared {compared}, fired {fired}"
    );
}
