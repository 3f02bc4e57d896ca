//! `list`: which `CB_` functions the callbacks file defines.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::Settings;
use crate::control::protocol;
use crate::sys::process;
use crate::sys::reaper::Reaper;
use crate::sys::spawn::Stdio;

/// Lists the `CB_` functions. What sourcing prints on stderr comes first (its stdout is
/// dropped), then `#loaded`; the function names; `#end` proves it all went through. A
/// file that fails to source (a syntax error, a failing last command) exits with its
/// status and no `#loaded`, as the callbacks themselves would (`source ... || exit`).
const LIST_SCRIPT: &str = r#"{ if [ -n "$SUPD_CALLBACK_LIB" ]; then source "$SUPD_CALLBACK_LIB" || exit; fi; source "$SUPD_CALLBACKS" || exit; } </dev/null 2>&1 >/dev/null
echo '#loaded'
compgen -A function CB_ || :
echo '#end'"#;

/// The first lines bash printed while a file failed to load, for the error message.
fn load_error(output: &str) -> String {
    let mut message = String::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()).take(3) {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.extend(line.chars().take(200));
    }
    message
}

/// The actions the callbacks file defines, sorted (runs bash, like a callback would).
pub async fn discover(settings: &Settings, reaper: &Reaper) -> Result<Vec<String>, String> {
    if !settings.callbacks.is_file() {
        return Ok(Vec::new());
    }
    let mut command = settings.command(LIST_SCRIPT);
    command.stdout(Stdio::Piped).stderr(Stdio::Null);
    let spawned = command
        .spawn(reaper)
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let stdout = spawned.stdout.ok_or_else(|| "no pipe".to_string())?;
    let (pgid, exit) = (spawned.pid as i32, spawned.exit);
    let mut stdout = pipe::Receiver::from_owned_fd(stdout).map_err(|e| e.to_string())?;
    let mut output = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    output.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if output.len() > 1 << 20 {
                        break;
                    }
                }
            }
        }
        exit.await
    };
    let result = tokio::time::timeout(Duration::from_secs(10), read).await;
    if result.is_err() {
        // The discovery bash's own group (POSIX_SPAWN_SETPGROUP in sys::spawn).
        process::send(-pgid, libc::SIGKILL);
        return Err("loading the callbacks took longer than 10s".into());
    }
    let text = String::from_utf8_lossy(&output);
    let Some((errors, listed)) = text.split_once("#loaded\n") else {
        let status = match result {
            Ok(Ok(exit)) => format!(" ({exit})"),
            _ => String::new(),
        };
        let mut message = format!("the callbacks file failed to load{status}");
        let errors = load_error(&text);
        if !errors.is_empty() {
            message.push_str(": ");
            message.push_str(&errors);
        }
        return Err(message);
    };
    if !listed.lines().any(|l| l == "#end") {
        return Err(format!(
            "the callbacks file failed to load: {}",
            load_error(errors)
        ));
    }
    let mut actions: Vec<String> = listed
        .lines()
        .filter_map(protocol::action_of_function)
        .collect();
    actions.sort();
    actions.dedup();
    Ok(actions)
}
