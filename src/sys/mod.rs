//! Operating-system primitives, with no policy: the event loop, signals through a
//! signalfd, the ONE reaper, clean-slate spawning, `kill` and the /proc tree, a
//! wall-clock timerfd and an inotify watch. Every face (init, control, schedule) builds
//! on these; none of them is imported back.

pub mod fs;
pub mod inotify;
pub mod peer;
pub mod process;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod stopped;
pub mod thread;
pub mod timerfd;
pub mod tty;

/// The one kind of event loop all three faces use: a current-thread tokio runtime with
/// I/O and timers. No worker threads (they would inherit, and could steal, signals), no
/// blocking pool in use, nothing that wakes up on its own: an idle supd sleeps in epoll.
pub fn event_loop() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}
