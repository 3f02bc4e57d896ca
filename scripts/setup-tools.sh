#!/usr/bin/env bash
# Install what the build, the tests and the stack need, when it is missing.
# Idempotent and quiet when everything is already there.
set -euo pipefail

want_apt=()
command -v unshare >/dev/null || want_apt+=(util-linux)
command -v debootstrap >/dev/null || want_apt+=(debootstrap)
command -v musl-gcc >/dev/null || want_apt+=(musl-tools)
command -v bash >/dev/null || want_apt+=(bash)
command -v file >/dev/null || want_apt+=(file)
# tests/legacy runs real logrotate (rotate_logs in target-sbin/callbacks-lib.sh); perl
# runs the signal-recording fixtures; setpriv the non-root client tests.
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || want_apt+=(logrotate)
command -v perl >/dev/null || want_apt+=(perl)
command -v setpriv >/dev/null || want_apt+=(util-linux)
# tests/schedule/inproc.rs scrapes the metrics file through a real node_exporter and
# checks it with promtool (Debian prometheus).
command -v prometheus-node-exporter >/dev/null || want_apt+=(prometheus-node-exporter)
command -v promtool >/dev/null || want_apt+=(prometheus)
if [ "${1:-}" = "--bench" ]; then
    command -v tini >/dev/null || want_apt+=(tini)
    command -v dumb-init >/dev/null || want_apt+=(dumb-init)
    command -v catatonit >/dev/null || want_apt+=(catatonit)
    command -v hyperfine >/dev/null || want_apt+=(hyperfine)
    command -v socat >/dev/null || want_apt+=(socat)
fi
if [ "${#want_apt[@]}" -gt 0 ]; then
    echo "setup: apt-get install ${want_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${want_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    echo "setup: rustup target add x86_64-unknown-linux-musl" >&2
    rustup target add x86_64-unknown-linux-musl
fi

if [ "${1:-}" = "--fuzz" ]; then
    if ! rustup toolchain list | grep -q '^nightly'; then
        echo "setup: rustup toolchain install nightly" >&2
        rustup toolchain install nightly --profile minimal
    fi
    if ! command -v cargo-fuzz >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
        echo "setup: cargo install cargo-fuzz" >&2
        cargo install --locked cargo-fuzz
    fi
fi
