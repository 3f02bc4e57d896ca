//! Running `CB_<name>` callbacks, and discovering which ones exist.
//!
//! Each request runs in a fresh `bash`, in its own process group, as
//!
//! ```text
//! bash -c "$SCRIPT" CB_name USER ARG...
//! ```
//!
//! where `$SCRIPT` sources the helper library (when present) and the callbacks file,
//! then calls `"$0" "$@"`: the arguments travel as argv and are never re-parsed by a
//! shell. Before calling the function the script writes `ok` (or `missing`) on fd 3, a
//! pipe only supd reads: that handshake tells a missing `CB_` function (answer
//! `unknown-action`) from a callback that runs, with a single bash process and without
//! a stale cache of the callbacks file. Output printed while the files are sourced is
//! held back until the handshake, so `started` always comes first.
//!
//! The run is its own task: it keeps reading the callback's stdout and stderr whatever
//! the client does (a slow or vanished client never blocks the callback), and the
//! client's connection only gets what fits in its [`Outbox`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, Notify};

use crate::control::protocol::{Event, Request, VERSION};
use crate::init::reaper::{Exit, Reaper};
use crate::init::spawn::{self, Group};

/// Sources the files, answers the handshake on fd 3, calls the function.
const RUN_SCRIPT: &str = r#"if [ -n "$SUPD_CALLBACK_LIB" ]; then source "$SUPD_CALLBACK_LIB" || exit; fi
source "$SUPD_CALLBACKS" || exit
if declare -F -- "$0" >/dev/null; then echo ok >&3; exec 3>&-; "$0" "$@"; else echo missing >&3; exit 127; fi"#;

/// Lists the `CB_` functions; `#end` proves the files loaded.
const LIST_SCRIPT: &str = r#"{ if [ -n "$SUPD_CALLBACK_LIB" ]; then source "$SUPD_CALLBACK_LIB"; fi; source "$SUPD_CALLBACKS"; } </dev/null >/dev/null 2>&1
compgen -A function CB_ || :
echo '#end'"#;

/// Output lines longer than this are split (a callback printing a huge line without a
/// newline must not grow supd's memory).
pub const MAX_LINE: usize = 64 * 1024;

/// What a client may have queued and not yet read before it is dropped.
pub const OUTBOX_LIMIT: usize = 1 << 20;

/// Output printed before the handshake that is held back (the rest is only logged).
const MAX_EARLY_LINES: usize = 256;
const MAX_EARLY_BYTES: usize = 64 * 1024;

/// After the callback's bash exits, how long to keep reading pipes that a background
/// process it left behind may hold open.
const LINGER: Duration = Duration::from_millis(500);

/// What every run needs to know.
pub struct Settings {
    /// bash, resolved once through $PATH at startup (see [`find_bash`]).
    pub bash: PathBuf,
    pub service: String,
    pub callbacks: PathBuf,
    pub callback_lib: PathBuf,
    pub timeout: Duration,
    pub supd_pid: u32,
}

impl Settings {
    fn lib_if_present(&self) -> Option<&Path> {
        self.callback_lib
            .is_file()
            .then_some(self.callback_lib.as_path())
    }

    fn command(&self, script: &str) -> Command {
        let mut command = Command::new(&self.bash);
        command
            .arg("-c")
            .arg(script)
            .env("SUPD_PID", self.supd_pid.to_string())
            .env("SERVICE", &self.service)
            .env("SUPD_CALLBACKS", &self.callbacks)
            .env(
                "SUPD_CALLBACK_LIB",
                self.lib_if_present()
                    .map(Path::as_os_str)
                    .unwrap_or_default(),
            )
            // No current_dir: callbacks run where supd was started, as the service
            // does. Docker starts PID 1 in the image's WORKDIR (`/usr/local` in the
            // legacy stack, whose listener ran its callbacks there); supd never chdirs.
            .stdin(Stdio::null());
        spawn::prepare(&mut command, Group::Background);
        command
    }
}

/// The first `bash` on $PATH, so that each callback's exec does not walk $PATH again;
/// plain `bash` (resolved at spawn time) when there is none yet.
pub fn find_bash() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("bash"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("bash"))
}

/// The queue between a run and the connection that asked for it, bounded in bytes.
/// Single-threaded: the run pushes, the connection drains.
#[derive(Default)]
pub struct Outbox {
    state: RefCell<OutboxState>,
    /// Wakes the connection: new data, overflow, or the run finished.
    pub changed: Notify,
    /// Wakes a connection blocked in write: the client fell too far behind.
    pub dropped: Notify,
}

#[derive(Default)]
struct OutboxState {
    buf: Vec<u8>,
    /// The final event is queued; nothing more comes.
    finished: bool,
    /// The client fell more than [`OUTBOX_LIMIT`] behind and is being dropped.
    overflowed: bool,
    /// The connection is gone; stop queueing.
    gone: bool,
}

/// What the connection side finds when it looks.
pub enum Take {
    Data(Vec<u8>),
    Wait,
    Finished,
    Overflowed,
}

impl Outbox {
    /// Queue an event; returns false once the client is no longer served.
    pub fn push(&self, event: &Event) -> bool {
        let mut state = self.state.borrow_mut();
        if state.gone || state.overflowed {
            return false;
        }
        let line = event.to_line();
        let ok = if state.buf.len() + line.len() > OUTBOX_LIMIT && !event.is_final() {
            state.overflowed = true;
            state.buf = Vec::new();
            self.dropped.notify_one();
            false
        } else {
            state.buf.extend_from_slice(line.as_bytes());
            true
        };
        if event.is_final() {
            state.finished = true;
        }
        drop(state);
        self.changed.notify_one();
        ok
    }

    pub fn take(&self) -> Take {
        let mut state = self.state.borrow_mut();
        if state.overflowed {
            Take::Overflowed
        } else if !state.buf.is_empty() {
            Take::Data(std::mem::take(&mut state.buf))
        } else if state.finished {
            Take::Finished
        } else {
            Take::Wait
        }
    }

    pub fn overflowed(&self) -> bool {
        self.state.borrow().overflowed
    }

    /// The connection went away (or stopped listening after `started`).
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.gone = true;
        state.buf = Vec::new();
    }

    fn is_served(&self) -> bool {
        let state = self.state.borrow();
        !state.gone && !state.overflowed
    }
}

/// How a run ended, for the reply and for `status`.
#[derive(Clone, Debug)]
pub enum Ending {
    Exited(Exit),
    UnknownAction,
    TimedOut(Exit),
    /// The files failed to load, or bash failed.
    Failed(String),
}

/// A callback that was spawned; drive it with [`Run::drive`].
pub struct Run {
    pub id: u64,
    pub action: String,
    pub function: String,
    pub pid: u32,
    started: Instant,
    exit: oneshot::Receiver<Exit>,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    handshake: pipe::Receiver,
    timeout: Duration,
}

/// Spawn the callback for `request`. Registers the pid with the reaper before
/// returning (no `.await` in here), so a fast exit is never lost.
pub fn spawn(
    settings: &Settings,
    reaper: &Reaper,
    request: &Request,
    id: u64,
) -> std::io::Result<Run> {
    let (hs_read, hs_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let function = request.function();
    let mut command = settings.command(RUN_SCRIPT);
    command
        .arg(&function)
        .arg(&request.user)
        .args(&request.args)
        .env("SUPD_ACTION", &request.action)
        .env("SUPD_USER", &request.user)
        .env("SUPD_REQUEST_ID", id.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let hs_fd = hs_write.as_raw_fd();
    // SAFETY: only async-signal-safe calls. Runs after spawn::prepare's hook (which marks
    // fds >= 3 close-on-exec), so the handshake pipe survives as fd 3 alone.
    unsafe {
        command.pre_exec(move || {
            if hs_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(hs_fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let exit = reaper.watch(pid);
    drop(hs_write);
    // Never call child.wait(): the reaper owns waitpid. Dropping `child` does not wait.
    let pipes = (|| {
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(std::io::Error::other("callback pipes missing"));
        };
        Ok((
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stderr))?,
            pipe::Receiver::from_owned_fd(hs_read)?,
        ))
    })();
    let (stdout, stderr, handshake) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            // Nobody would follow this callback (no busy check, no timeout): stop it.
            // SAFETY: plain syscall on the callback's own new group (setpgid in spawn).
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            return Err(e);
        }
    };
    Ok(Run {
        id,
        action: request.action.clone(),
        function,
        pid,
        started: Instant::now(),
        exit,
        stdout,
        stderr,
        handshake,
        timeout: settings.timeout,
    })
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(String)) {
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            let (line, rest) = chunk.split_at(pos);
            chunk = rest.get(1..).unwrap_or_default();
            if self.partial.is_empty() {
                emit(text(line));
            } else {
                self.partial.extend_from_slice(line);
                emit(text(&std::mem::take(&mut self.partial)));
            }
        }
        self.partial.extend_from_slice(chunk);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            emit(text(&std::mem::replace(&mut self.partial, rest)));
        }
    }

    fn finish(&mut self, emit: impl FnOnce(String)) {
        if !self.partial.is_empty() {
            emit(text(&std::mem::take(&mut self.partial)));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handshake {
    Waiting,
    Ok,
    Missing,
    /// fd 3 closed without an answer: the files failed to load.
    Silent,
}

/// Where a run's events go: the log always, the client while it keeps up.
struct Sink<'a> {
    action: &'a str,
    id: u64,
    outbox: Option<Rc<Outbox>>,
    /// Events held back until the handshake.
    early: Option<VecDeque<Event>>,
    early_bytes: usize,
    early_dropped: usize,
    last_stderr: String,
}

impl Sink<'_> {
    fn line(&mut self, stdout: bool, line: String) {
        let stream = if stdout { "stdout" } else { "stderr" };
        crate::info!(
            "callback output",
            action = self.action,
            id = self.id,
            stream = stream,
            line = line
        );
        if !stdout {
            self.last_stderr.clear();
            self.last_stderr.extend(line.chars().take(200));
        }
        let event = if stdout {
            Event::Stdout { line }
        } else {
            Event::Stderr { line }
        };
        let len = match &event {
            Event::Stdout { line } | Event::Stderr { line } => line.len(),
            _ => 0,
        };
        match &mut self.early {
            Some(early)
                if early.len() < MAX_EARLY_LINES && self.early_bytes + len <= MAX_EARLY_BYTES =>
            {
                self.early_bytes += len;
                early.push_back(event)
            }
            Some(_) => self.early_dropped += 1,
            None => self.send(&event),
        }
    }

    fn send(&mut self, event: &Event) {
        if let Some(outbox) = &self.outbox {
            if !outbox.push(event) {
                if outbox.overflowed() {
                    crate::warn!(
                        "client too slow: dropped it, the callback runs on",
                        action = self.action,
                        id = self.id,
                        queued_limit = OUTBOX_LIMIT
                    );
                }
                self.outbox = None;
            }
        }
    }

    /// The handshake said ok: `started`, then what was held back.
    fn start(&mut self, v_action: &str) {
        self.send(&Event::Started {
            v: VERSION,
            action: v_action.to_string(),
            id: self.id,
        });
        if let Some(early) = self.early.take() {
            for event in early {
                self.send(&event);
            }
        }
        if self.early_dropped > 0 {
            crate::warn!(
                "callback printed too much while loading; lines not relayed",
                action = self.action,
                dropped = self.early_dropped
            );
        }
    }
}

impl Run {
    /// Follow the callback to its end: relay output, enforce the timeout, and return how
    /// it ended and how long it took. The final event is queued in `outbox` too.
    pub async fn drive(self, outbox: Option<Rc<Outbox>>) -> (Ending, Duration) {
        let Run {
            id,
            action,
            function,
            pid,
            started,
            mut exit,
            mut stdout,
            mut stderr,
            mut handshake,
            timeout,
        } = self;
        let mut sink = Sink {
            action: &action,
            id,
            outbox,
            early: Some(VecDeque::new()),
            early_bytes: 0,
            early_dropped: 0,
            last_stderr: String::new(),
        };
        let mut state = Handshake::Waiting;
        let mut hs_buf = Vec::new();
        let (mut out_open, mut err_open, mut hs_open) = (true, true, true);
        let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
        let mut out_buf = vec![0u8; 64 * 1024];
        let mut err_buf = vec![0u8; 64 * 1024];
        let mut exited: Option<Exit> = None;
        let mut timed_out = false;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let linger = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(linger);

        loop {
            if exited.is_some() && !out_open && !err_open {
                break;
            }
            tokio::select! {
                biased;
                read = handshake.read_buf(&mut hs_buf), if hs_open => {
                    if matches!(read, Ok(0) | Err(_)) || hs_buf.len() > 16 {
                        hs_open = false;
                    }
                    let answer = String::from_utf8_lossy(&hs_buf);
                    if answer.starts_with("ok\n") {
                        hs_open = false;
                        if state == Handshake::Waiting {
                            state = Handshake::Ok;
                            sink.start(&action);
                        }
                    } else if answer.starts_with("missing") {
                        hs_open = false;
                        state = Handshake::Missing;
                    } else if !hs_open && state == Handshake::Waiting {
                        state = Handshake::Silent;
                    }
                }
                result = &mut exit, if exited.is_none() => {
                    // A dropped sender would mean the reaper lost it: treat as killed.
                    exited = Some(result.unwrap_or(Exit::Signal(libc::SIGKILL)));
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                }
                read = stdout.read(&mut out_buf), if out_open => match read {
                    Ok(n) if n > 0 => {
                        let chunk = out_buf.get(..n).unwrap_or_default();
                        out_lines.feed(chunk, |line| sink.line(true, line));
                    }
                    _ => {
                        out_open = false;
                        out_lines.finish(|line| sink.line(true, line));
                    }
                },
                read = stderr.read(&mut err_buf), if err_open => match read {
                    Ok(n) if n > 0 => {
                        let chunk = err_buf.get(..n).unwrap_or_default();
                        err_lines.feed(chunk, |line| sink.line(false, line));
                    }
                    _ => {
                        err_open = false;
                        err_lines.finish(|line| sink.line(false, line));
                    }
                },
                () = &mut deadline, if !timed_out && exited.is_none() => {
                    timed_out = true;
                    crate::warn!("callback timed out: killing its process group",
                        action = action, id = id, pgid = pid, timeout = format!("{timeout:?}"));
                    // SAFETY: plain syscall; the group is the callback's own (setpgid).
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                () = &mut linger, if exited.is_some() => {
                    crate::debug!("callback left its output open; not waiting for it",
                        action = action, id = id);
                    break;
                }
            }
        }
        // Whatever was still being read: flush the partial lines.
        out_lines.finish(|line| sink.line(true, line));
        err_lines.finish(|line| sink.line(false, line));
        let duration = started.elapsed();
        let exit = exited.unwrap_or(Exit::Signal(libc::SIGKILL));
        let ending = if timed_out {
            Ending::TimedOut(exit)
        } else {
            match state {
                Handshake::Ok => Ending::Exited(exit),
                Handshake::Missing => Ending::UnknownAction,
                Handshake::Waiting | Handshake::Silent => {
                    let mut message = format!("the callbacks failed to load ({exit})");
                    if !sink.last_stderr.is_empty() {
                        message.push_str(": ");
                        message.push_str(&sink.last_stderr);
                    }
                    Ending::Failed(message)
                }
            }
        };
        let final_event = match &ending {
            Ending::Exited(exit) => Event::Exit {
                code: exit.status(),
                duration_ms: crate::control::protocol::millis(duration),
                signal: match exit {
                    Exit::Signal(n) => Some(*n),
                    Exit::Code(_) => None,
                },
            },
            Ending::UnknownAction => Event::error(
                crate::control::protocol::ErrorKind::UnknownAction,
                format!("no callback {function} for action {action}"),
            ),
            Ending::TimedOut(_) => Event::error(
                crate::control::protocol::ErrorKind::Timeout,
                format!(
                    "{action} ran past the callback timeout ({timeout:?}); its process group was killed"
                ),
            ),
            Ending::Failed(message) => Event::error(
                crate::control::protocol::ErrorKind::Internal,
                message.clone(),
            ),
        };
        if sink.early.is_some() {
            // Never started: what was held back only went to the log.
            sink.early = None;
        }
        sink.send(&final_event);
        if let Some(outbox) = &sink.outbox {
            if !outbox.is_served() {
                sink.outbox = None;
            }
        }
        (ending, duration)
    }
}

/// The actions the callbacks file defines, sorted (runs bash, like a callback would).
pub async fn discover(settings: &Settings, reaper: &Reaper) -> Result<Vec<String>, String> {
    if !settings.callbacks.is_file() {
        return Ok(Vec::new());
    }
    let mut command = settings.command(LIST_SCRIPT);
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let exit = reaper.watch(child.id());
    let stdout = child.stdout.take().ok_or_else(|| "no pipe".to_string())?;
    let pgid = child.id() as i32;
    let mut stdout =
        pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(|e| e.to_string())?;
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
        // SAFETY: plain syscall on the discovery bash's own group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        return Err("loading the callbacks took longer than 10s".into());
    }
    let text = String::from_utf8_lossy(&output);
    if !text.lines().any(|l| l == "#end") {
        return Err("the callbacks file failed to load".into());
    }
    let mut actions: Vec<String> = text
        .lines()
        .filter_map(crate::control::protocol::action_of_function)
        .collect();
    actions.sort();
    actions.dedup();
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.feed(chunk, |l| out.push(l));
        }
        lines.finish(|l| out.push(l));
        out
    }

    #[test]
    fn lines_split_and_join() {
        assert_eq!(split(&[b"a\nb", b"c\n", b"d"]), ["a", "bc", "d"]);
        assert_eq!(split(&[b"\n\r\n"]), ["", ""]);
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let out = split(&[&long]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].len(), 5);
        assert_eq!(split(&[b"\xff\n"]), ["\u{fffd}"]);
    }

    #[test]
    fn outbox_is_bounded() {
        let outbox = Outbox::default();
        let line = Event::Stdout {
            line: "x".repeat(1000),
        };
        let mut pushed = 0;
        while outbox.push(&line) {
            pushed += 1;
        }
        assert!(pushed > 900 && pushed < 1100, "{pushed}");
        assert!(matches!(outbox.take(), Take::Overflowed));
        let outbox = Outbox::default();
        assert!(outbox.push(&line));
        assert!(matches!(outbox.take(), Take::Data(d) if d.len() > 1000));
        assert!(matches!(outbox.take(), Take::Wait));
        outbox.push(&Event::Exit {
            code: 0,
            duration_ms: 1,
            signal: None,
        });
        assert!(matches!(outbox.take(), Take::Data(_)));
        assert!(matches!(outbox.take(), Take::Finished));
    }
}
