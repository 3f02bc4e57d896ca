//! Integration tests: the real binary, real processes, real sockets.
//! One test binary (faster to link); each area is a module.

mod control;
mod init;
mod legacy;
mod schedule;
mod util;
