//! Following a callback to its end: the handshake, its output, its timeout.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::lines::Lines;
use super::outbox::CLIENT_STALL;
use super::{Ending, Outbox, Run, OUTBOX_LIMIT};
use crate::control::protocol::{self, ErrorKind, Event, VERSION};
use crate::sys::process;
use crate::sys::reaper::Exit;

/// Output printed before the handshake that is held back (the rest is only logged).
const MAX_EARLY_LINES: usize = 256;
const MAX_EARLY_BYTES: usize = 64 * 1024;

/// After the callback's bash exits, how long to keep reading pipes that a background
/// process it left behind may hold open.
const LINGER: Duration = Duration::from_millis(500);

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
                self.outbox = None;
            }
        }
    }

    /// The client's queue is full: read no more output until it drains.
    fn full(&self) -> Option<&Rc<Outbox>> {
        self.outbox.as_ref().filter(|outbox| outbox.is_full())
    }

    /// The client made no progress for [`CLIENT_STALL`] with a full queue: drop it.
    fn drop_stalled(&mut self) {
        if let Some(outbox) = self.outbox.take() {
            crate::warn!(
                "client stopped reading: dropped it, the callback runs on",
                action = self.action,
                id = self.id,
                queued_limit = OUTBOX_LIMIT,
                stalled = format!("{CLIENT_STALL:?}")
            );
            outbox.drop_client();
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

/// One of the callback's output pipes, read into lines for the sink.
struct Output {
    pipe: pipe::Receiver,
    /// stdout, or stderr.
    stdout: bool,
    buf: Vec<u8>,
    lines: Lines,
    open: bool,
}

impl Output {
    fn new(pipe: pipe::Receiver, stdout: bool) -> Output {
        Output {
            pipe,
            stdout,
            buf: vec![0u8; 64 * 1024],
            lines: Lines::default(),
            open: true,
        }
    }

    /// What one read gave: complete lines go to the sink; at the end of the pipe (or an
    /// error), the partial line too.
    fn got(&mut self, read: std::io::Result<usize>, sink: &mut Sink<'_>) {
        match read {
            Ok(n) if n > 0 => {
                let stdout = self.stdout;
                let chunk = self.buf.get(..n).unwrap_or_default();
                self.lines.feed(chunk, |line| sink.line(stdout, line));
            }
            _ => {
                self.open = false;
                self.finish(sink);
            }
        }
    }

    /// Flush the partial line, if any.
    fn finish(&mut self, sink: &mut Sink<'_>) {
        let stdout = self.stdout;
        self.lines.finish(|line| sink.line(stdout, line));
    }
}

/// Kill a run that timed out: its process group (setpgid in spawn), and every process
/// below it that left the group (a `setsid` daemon, a job with a group of its own) with
/// that process's own group when it leads one. The processes below are listed BEFORE the
/// group dies: afterwards they are orphans reparented to supd, no longer below the run.
fn kill_run(pid: i32) {
    let below = process::descendants_with_state(pid);
    process::send(-pid, libc::SIGKILL);
    for process in below.iter().filter(|b| b.pgrp != pid) {
        if process.pgrp == process.pid {
            process::send(-process.pid, libc::SIGKILL);
        }
        process::send(process.pid, libc::SIGKILL);
    }
    if !below.is_empty() {
        crate::debug!(
            "killed the processes below a timed-out callback",
            pgid = pid,
            below = below
                .iter()
                .map(|b| b.pid.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
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
            stdout,
            stderr,
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
        let mut hs_open = true;
        let (mut out, mut err) = (Output::new(stdout, true), Output::new(stderr, false));
        let mut exited: Option<Exit> = None;
        let mut timed_out = false;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let far = || tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
        let linger = tokio::time::sleep_until(far());
        tokio::pin!(linger);
        // The linger's time left while it is paused: reading that waits for the client
        // (backpressure) must not use up the linger and cut the output short.
        let mut linger_paused: Option<Duration> = None;
        let stall = tokio::time::sleep_until(far());
        tokio::pin!(stall);

        loop {
            if exited.is_some() && !out.open && !err.open {
                break;
            }
            // Backpressure: with the client's queue full, leave the output in the pipes
            // (the callback blocks writing) until the client reads.
            let full = sink.full().map(|outbox| outbox.progress());
            let now = tokio::time::Instant::now();
            if let Some(progress) = full {
                let at = tokio::time::Instant::from_std(progress + CLIENT_STALL);
                if stall.deadline() != at {
                    stall.as_mut().reset(at);
                }
                if exited.is_some() && linger_paused.is_none() {
                    linger_paused = Some(linger.deadline().saturating_duration_since(now));
                    linger.as_mut().reset(far());
                }
            } else if let Some(left) = linger_paused.take() {
                linger.as_mut().reset(now + left);
            }
            let drained = async {
                match sink.full() {
                    Some(outbox) => outbox.drained.notified().await,
                    None => std::future::pending().await,
                }
            };
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
                read = out.pipe.read(&mut out.buf), if out.open && full.is_none() => {
                    out.got(read, &mut sink)
                }
                read = err.pipe.read(&mut err.buf), if err.open && full.is_none() => {
                    err.got(read, &mut sink)
                }
                () = drained, if full.is_some() => {}
                () = &mut stall, if full.is_some() => {
                    if sink.full().is_some_and(|o| o.progress().elapsed() >= CLIENT_STALL) {
                        sink.drop_stalled();
                    }
                }
                () = &mut deadline, if !timed_out && exited.is_none() => {
                    timed_out = true;
                    crate::warn!("callback timed out: killing its process group and what it started",
                        action = action, id = id, pgid = pid, timeout = format!("{timeout:?}"));
                    kill_run(pid as i32);
                }
                () = &mut linger, if exited.is_some() && full.is_none() => {
                    crate::debug!("callback left its output open; not waiting for it",
                        action = action, id = id);
                    break;
                }
            }
        }
        // Whatever was still being read: flush the partial lines.
        out.finish(&mut sink);
        err.finish(&mut sink);
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
                duration_ms: protocol::millis(duration),
                signal: match exit {
                    Exit::Signal(n) => Some(*n),
                    Exit::Code(_) => None,
                },
            },
            Ending::UnknownAction => Event::error(
                ErrorKind::UnknownAction,
                format!("no callback {function} for action {action}"),
            ),
            Ending::TimedOut(_) => Event::error(
                ErrorKind::Timeout,
                format!(
                    "{action} ran past the callback timeout ({timeout:?}); its process group and the processes it started were killed"
                ),
            ),
            Ending::Failed(message) => Event::error(
                ErrorKind::Internal,
                message.clone(),
            ),
        };
        // Never started: what was held back went to the log only (it is dropped here).
        sink.send(&final_event);
        (ending, duration)
    }
}
