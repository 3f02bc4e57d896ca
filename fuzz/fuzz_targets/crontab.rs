//! Any bytes as a schedule.cron: the parser never panics, every error names the file and
//! a line that exists, every accepted job has valid names, and the calendar finds each
//! job's next fire times (strictly increasing) without panicking.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use supd::control::protocol;
use supd::schedule::calendar::next_after;
use supd::schedule::crontab::{parse, Zone};

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count();
    match parse("F", data, &Zone::utc()) {
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in errors {
                let rest = error.strip_prefix("F:").expect("error names the file");
                let (number, message) = rest.split_once(": ").expect("F:LINE: message");
                let number: usize = number.parse().expect("line number");
                assert!(number >= 1 && number <= lines);
                assert!(!message.is_empty() && !message.contains('\n'));
            }
        }
        Ok(jobs) => {
            for job in jobs.iter().take(8) {
                assert!(job.line >= 1 && job.line <= lines);
                assert!(protocol::valid_user(&job.user), "{:?}", job.user);
                // `rotate_logs` is `rotate-logs` (the legacy listener's rule): valid once
                // canonical, as the request built from it is.
                let action = protocol::canonical_action(&job.action);
                assert!(protocol::valid_action(&action), "{:?}", job.action);
                assert!(protocol::valid_service(&job.service), "{:?}", job.service);
                // Accepted schedules fire (never-firing ones are errors).
                let mut at = Timestamp::from_second(1_774_000_000).unwrap();
                for _ in 0..3 {
                    let next = next_after(&job.schedule, &job.tz, at).expect("fires");
                    assert!(next > at);
                    at = next;
                }
            }
        }
    }
});
