//! `--metrics-file`: the jobs' results in Prometheus text format (DESIGN §5), for
//! node_exporter's textfile collector. No sample timestamps (the collector rejects
//! them); rewritten atomically after every run by the state writer.

use std::fmt::Write as _;

use super::state::{JobState, Outcome};

/// One job as the metrics label it.
pub struct Labels<'a> {
    /// `file:line`, as the logs name it.
    pub job: &'a str,
    pub service: &'a str,
    pub action: &'a str,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The whole file for these jobs (each with its state, when it has one).
pub fn render(jobs: &[(Labels<'_>, Option<&JobState>)]) -> String {
    let mut out = String::new();
    let labels = |l: &Labels<'_>| {
        format!(
            "job=\"{}\",service=\"{}\",action=\"{}\"",
            escape(l.job),
            escape(l.service),
            escape(l.action)
        )
    };
    type Gauge = fn(&JobState) -> Option<String>;
    let gauges: [(&str, &str, Gauge); 4] = [
        (
            "supd_job_last_run_timestamp_seconds",
            "When the job's last run ended (Unix time).",
            |s| s.results.last().map(|r| seconds(r.ended_ms)),
        ),
        (
            "supd_job_last_success_timestamp_seconds",
            "When the job's last successful run ended (Unix time).",
            |s| s.last_success_ms.map(seconds),
        ),
        (
            "supd_job_last_exit_code",
            "Exit status of the job's last run that ran a callback.",
            |s| {
                s.results
                    .iter()
                    .rev()
                    .find_map(|r| r.code)
                    .map(|c| c.to_string())
            },
        ),
        (
            "supd_job_last_duration_seconds",
            "How long the job's last run took.",
            |s| {
                s.results
                    .last()
                    .map(|r| seconds(i64::try_from(r.duration_ms).unwrap_or(i64::MAX)))
            },
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (l, state) in jobs {
            if let Some(v) = state.and_then(value) {
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(l));
            }
        }
    }
    let name = "supd_job_runs_total";
    let _ = writeln!(
        out,
        "# HELP {name} Runs of the job by outcome (ok, failed, lost, skipped).\n# TYPE {name} counter"
    );
    for (l, state) in jobs {
        for outcome in Outcome::ALL {
            let n = state
                .and_then(|s| s.runs.get(outcome.as_str()).copied())
                .unwrap_or(0);
            let _ = writeln!(out, "{name}{{{},outcome=\"{outcome}\"}} {n}", labels(l));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::state::RunResult;

    #[test]
    fn renders_gauges_and_counters_without_timestamps() {
        let mut state = JobState::default();
        state.push(RunResult {
            due: 60,
            ended_ms: 61_250,
            outcome: "ok".into(),
            code: Some(0),
            duration_ms: 1250,
        });
        let jobs = [(
            Labels {
                job: "/f \"x\":3",
                service: "svc",
                action: "act",
            },
            Some(&state),
        )];
        let text = render(&jobs);
        assert!(text.contains(
            "supd_job_last_success_timestamp_seconds{job=\"/f \\\"x\\\":3\",service=\"svc\",action=\"act\"} 61.250\n"
        ), "{text}");
        assert!(text.contains("outcome=\"ok\"} 1\n"), "{text}");
        assert!(text.contains("outcome=\"lost\"} 0\n"), "{text}");
        assert!(text.contains("supd_job_last_duration_seconds{"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let after = line.rsplit_once('}').map(|(_, v)| v).unwrap_or_default();
            assert_eq!(
                after.split_whitespace().count(),
                1,
                "one value, no timestamp: {line}"
            );
        }
    }
}
