//! `--on-failure CMD`: after a `failed` or `lost` run, CMD runs once with the run in its
//! environment and the run's last output lines on stdin (DESIGN §5). Its failure is
//! logged, never retried. It is spawned with the clean slate (`sys::spawn`) and reaped by
//! the one reaper: PID 1 never waits for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::sys::reaper::Reaper;
use crate::sys::spawn::{self, Background, Spawned, Stdio};

/// How long the hook may take to read its stdin before it is closed on it.
const STDIN_WRITE: Duration = Duration::from_secs(10);

/// Split CMD into argv: words separated by blanks; `'...'` and `"..."` quote (no
/// expansion of any kind; `\` escapes the next character outside single quotes). A shell
/// runs only when CMD names one (`sh -c '...'`).
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(format!("trailing \\ in {text:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(format!("trailing \\ in {text:?}")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("empty command".into());
    }
    Ok(words)
}

/// Start the hook for one run; its end is logged by a task of its own.
pub fn run(argv: &[String], env: &[(&str, String)], tail: &[String], reaper: &Arc<Reaper>) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let mut command = Background::new(program);
    command.args(args).stdin(Stdio::Piped);
    for (key, value) in env {
        command.env(key, value);
    }
    let job = env
        .iter()
        .find(|(k, _)| *k == "SUPD_JOB")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let Spawned {
        pid, exit, stdin, ..
    } = match command.spawn(reaper) {
        Ok(spawned) => spawned,
        Err(e) => {
            crate::error!(
                "on-failure hook failed to start",
                job = job,
                hook = program,
                error = spawn::describe_error(&e)
            );
            return;
        }
    };
    let mut input = String::new();
    for line in tail {
        input.push_str(line);
        input.push('\n');
    }
    let program = program.clone();
    tokio::task::spawn_local(async move {
        if let Some(fd) = stdin {
            match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                Ok(mut pipe) => {
                    let write = pipe.write_all(input.as_bytes());
                    // A hook that does not read its stdin only loses the tail.
                    let _ = tokio::time::timeout(STDIN_WRITE, write).await;
                }
                Err(e) => crate::debug!("hook stdin unusable", error = e),
            }
        }
        // stdin is closed here (the pipe was dropped): the tail is all there is.
        match exit.await {
            Ok(status) if status.status() == 0 => {
                crate::debug!("on-failure hook ran", job = job, hook = program, pid = pid)
            }
            Ok(status) => crate::warn!(
                "on-failure hook failed",
                job = job,
                hook = program,
                pid = pid,
                status = status
            ),
            Err(_) => crate::warn!("on-failure hook's exit was lost", job = job, pid = pid),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::split_command;

    #[test]
    fn splits_like_a_shell_without_expansion() {
        assert_eq!(
            split_command("/bin/alert --to 'ops team' \"a \\\"b\\\"\" $HOME").unwrap(),
            ["/bin/alert", "--to", "ops team", "a \"b\"", "$HOME"]
        );
        assert_eq!(
            split_command("sh -c 'echo $SUPD_JOB'").unwrap(),
            ["sh", "-c", "echo $SUPD_JOB"]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("a 'b").is_err());
    }
}
