//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The supd binary cargo built for these tests.
pub fn supd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_supd"))
}
