#!/usr/bin/env bash
# Build the image of a docker-in-docker cluster node offline: a debootstrap bookworm
# minbase with Debian's docker.io (the same 20.10 engine as this host), imported into
# Docker as supd-node:bookworm and kept (tests/e2e/cluster-test.sh reuses it; ~40 s
# the first time, ~200 MB).
#
# Usage: scripts/build-node-image.sh [TAG]   (default: $SUPD_NODE_IMAGE or supd-node:bookworm)
# Env:   FORCE=1 to rebuild; DEBIAN_MIRROR, SUITE as for build-base-image.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES_FILE=$here/node-packages.txt IMAGE_CMD='["dockerd"]' \
    exec "$here/build-base-image.sh" "${1:-${SUPD_NODE_IMAGE:-supd-node:bookworm}}"
