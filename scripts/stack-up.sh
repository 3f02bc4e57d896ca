#!/usr/bin/env bash
# `make up`: build everything that is missing and start the stack, from nothing.
#   1. the static supd binary (cargo, musl target), staged as build/supd
#   2. the base image (offline debootstrap, once) and the stack image
#   3. data/ directories, `docker-compose up -d`, wait until every service is healthy
# Env: SUPD_BASE (default supd-base:bookworm, built here; debian:bookworm-slim to use
# the registry), SUPD_IMAGE (supd-stack:latest), SUPD_BINARY (skip cargo), UP_TIMEOUT.
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack-lib.sh"
cd "$STACK_ROOT"

start=$SECONDS
build_supd
build_images
make_data_dirs "$STACK_ROOT"
say "starting the stack"
compose up -d --remove-orphans
if ! wait_healthy "${UP_TIMEOUT:-180}"; then
    compose ps >&2
    exit 1
fi
compose ps
say "stack healthy in $((SECONDS - start)) s; web on http://127.0.0.1:$(compose port web 80 | sed 's/.*://')/"
