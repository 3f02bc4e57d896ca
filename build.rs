//! Link-time layout only: on Linux, supd's hot code (what PID 1 runs to start, idle,
//! forward, reap and shut down) goes first in the text segment, in the order
//! link/hot-text.ld gives (made by bench/hot-text.sh). The kernel maps 64 KiB or more
//! around every touched page of the binary, so hot code spread over the whole text
//! costs ~0.6 MiB more resident memory than the same code packed. Behaviour does not
//! change; a section the script names that no longer exists is just not matched.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SUPD_HOT_TEXT");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    // SUPD_HOT_TEXT: another script (bench/hot-text.sh maps the plain layout with one).
    let script = match env::var_os("SUPD_HOT_TEXT") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("link/hot-text.ld"),
    };
    println!("cargo:rerun-if-changed={}", script.display());
    // An INSERT script adds to the linker's default script (GNU ld and lld alike).
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
