//! supd: PID 1 for containers, a housekeeping request socket, and a cron scheduler,
//! in one static binary. `main.rs` only dispatches; the parts live here so that tests
//! and fuzz targets can reach them.

pub mod cli;
pub mod log;

pub mod control;
pub mod init;
pub mod schedule;

/// The one kind of event loop all three faces use: a current-thread tokio runtime with
/// I/O and timers. No worker threads (they would inherit, and could steal, signals), no
/// blocking pool in use, nothing that wakes up on its own: an idle supd sleeps in epoll.
pub fn event_loop() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}
