//! ns per next-fire computation, supd's calendar vs croner 4 (jiff backend), on the same
//! expressions, zones and start times. Prints one markdown table row per zone and the
//! number of results on which the two agree (they differ on purpose in DST gaps/folds
//! and on the starred day-of-month/day-of-week rule).

use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use jiff::tz::TimeZoneDatabase;
use jiff::Timestamp;
use supd::schedule::calendar::next_after;
use supd::schedule::expr::Schedule;

const EXPRS: [&str; 10] = [
    "*/5 * * * *",
    "0 4 * * *",
    "5 4 * * *",
    "30 2 * * *",
    "0 0 1 * *",
    "*/15 9-17 * * 1-5",
    "0 */2 * * 1-5",
    "30 4 1,15 * 5",
    "0 0 29 2 *",
    "0 0 * * 0",
];

fn main() {
    let db = TimeZoneDatabase::bundled();
    let starts: Vec<Timestamp> = {
        // 2000 start times spread over 2026 (deterministic LCG).
        let mut x: u64 = 0x1234_5678;
        let base = Timestamp::from_str("2026-01-01T00:00:00Z")
            .unwrap()
            .as_second();
        (0..2000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Timestamp::from_second(base + ((x >> 33) % (365 * 86_400)) as i64).unwrap()
            })
            .collect()
    };
    println!("| zone | supd ns/next | croner ns/next | croner/supd | same result |");
    println!("|---|---:|---:|---:|---:|");
    for zone in ["UTC", "Europe/London", "America/New_York"] {
        let tz = db.get(zone).unwrap();
        let schedules: Vec<Schedule> = EXPRS.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        let crons: Vec<croner::Cron> = EXPRS
            .iter()
            .map(|e| croner::Cron::from_str(e).unwrap())
            .collect();
        let zoned: Vec<jiff::Zoned> = starts.iter().map(|t| t.to_zoned(tz.clone())).collect();
        let n = (EXPRS.len() * starts.len()) as f64;
        let mut ours = Vec::with_capacity(n as usize);
        let mut theirs = Vec::with_capacity(n as usize);
        // Warm up, then time the best of 5 rounds for each.
        let mut best_ours = f64::MAX;
        let mut best_theirs = f64::MAX;
        for round in 0..6 {
            ours.clear();
            let t0 = Instant::now();
            for s in &schedules {
                for start in &starts {
                    ours.push(black_box(next_after(s, &tz, *start)).map(|t| t.as_second()));
                }
            }
            let ns = t0.elapsed().as_nanos() as f64 / n;
            theirs.clear();
            let t0 = Instant::now();
            for c in &crons {
                for start in &zoned {
                    theirs.push(
                        black_box(c.find_next_occurrence(start, false))
                            .ok()
                            .map(|z| z.timestamp().as_second()),
                    );
                }
            }
            let ns_c = t0.elapsed().as_nanos() as f64 / n;
            if round > 0 {
                best_ours = best_ours.min(ns);
                best_theirs = best_theirs.min(ns_c);
            }
        }
        let same = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
        println!(
            "| {zone} | {:.0} | {:.0} | {:.1}x | {same}/{} |",
            best_ours,
            best_theirs,
            best_theirs / best_ours,
            ours.len()
        );
    }
}
