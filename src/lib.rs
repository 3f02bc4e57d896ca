//! supd: PID 1 for containers, a housekeeping request socket, and a cron scheduler,
//! in one static binary.
//!
//! The binary's `main.rs` parses the command line (`cli.rs`, the only user of clap) into
//! one `Config` per face and calls that face's `run`; everything else lives here so that
//! tests and fuzz targets can reach it. Dependencies point one way:
//!
//! ```text
//! init ──> control::server ──┐
//! ctl ───> control::client ──┼──> sys, log, exit
//! schedule ──────────────────┘
//! ```

// No unwrap on anything input can reach: a panic in PID 1 kills the container.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod exit;
pub mod log;
pub mod sys;

pub mod control;
pub mod ctl;
pub mod init;
pub mod schedule;
