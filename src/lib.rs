//! supd: PID 1 for containers, a housekeeping request socket, and a cron scheduler,
//! in one static binary. `main.rs` only dispatches; the parts live here so that tests
//! and fuzz targets can reach them.

pub mod cli;
pub mod log;

pub mod control;
pub mod init;
pub mod schedule;
