#!/usr/bin/env bash
# Build the stack's base image offline: a Debian bookworm rootfs made with debootstrap
# that already contains every package in scripts/packages.txt, imported into Docker.
#
# Why: this machine (and many CI boxes) cannot pull from a registry, but can reach a
# Debian package mirror. With the packages already inside the base, the Dockerfile's
# apt-get step is skipped, so `docker build` needs no network at all.
#
# Usage: scripts/build-base-image.sh [TAG]        (default: $SUPD_BASE or supd-base:bookworm)
# Env:   DEBIAN_MIRROR (default: the first deb.debian.org-style URI in /etc/apt/sources*),
#        SUITE (bookworm), FORCE=1 to rebuild even when TAG exists,
#        PACKAGES_FILE (default scripts/packages.txt), IMAGE_CMD (JSON, default ["bash"]):
#        scripts/build-node-image.sh uses these for the docker-in-docker cluster nodes.
# Idempotent: does nothing when TAG already exists with the label supd.packages equal to
# the hash of the package list (a list that gained a package rebuilds). ~90 s the first time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tag=${1:-${SUPD_BASE:-supd-base:bookworm}}
suite=${SUITE:-bookworm}
packages_file=${PACKAGES_FILE:-$here/packages.txt}
image_cmd=${IMAGE_CMD:-'["bash"]'}

log() { printf '[build-base-image] %s\n' "$*" >&2; }

packages=$(grep -vE '^[[:space:]]*(#|$)' "$packages_file" | tr '\n' ',' | sed 's/,$//')
# The image records which list it was built from: a package added to the list (restic,
# rclone for the off-node backups) rebuilds it instead of leaving the Dockerfile's
# apt-get step to a network the build may not have.
want=$(printf '%s %s\n' "$suite" "$packages" | sha256sum | cut -c1-16)
if [[ ${FORCE:-0} != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    have=$(docker image inspect -f '{{index .Config.Labels "supd.packages"}}' "$tag" 2>/dev/null || true)
    if [[ $have == "$want" ]]; then
        log "$tag already exists (FORCE=1 to rebuild)"
        exit 0
    fi
    # An image from before the label: accept it when it has every package.
    # shellcheck disable=SC2086
    if [[ -z $have ]] && docker run --rm --network none --entrypoint dpkg "$tag" -s ${packages//,/ } >/dev/null 2>&1; then
        log "$tag already exists with every package (FORCE=1 to rebuild)"
        exit 0
    fi
    log "$tag lacks packages of $(basename "$packages_file"): rebuilding"
fi

if [[ $(id -u) != 0 ]]; then
    log "debootstrap needs root (chroot, mknod); run as root or with sudo"
    exit 1
fi

# The mirror this machine already uses for apt is the one we know we can reach.
mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
    mirror=$(grep -hoE '(URIs:|^deb)[[:space:]]+[^[:space:]]+/debian/?([[:space:]]|$)' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
             | awk '{print $2}' | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get install -y --no-install-recommends debootstrap >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi

# Work next to /var/lib/docker's disk rather than a small tmpfs /tmp.
workdir=$(mktemp -d "${TMPDIR:-/var/tmp}/supd-base.XXXXXX")
cleanup() {
    # debootstrap may leave proc/sys mounted inside the target if it dies midway:
    # unmount them before removing the tree, or rm -rf would wander into /proc.
    local m
    awk -v d="$workdir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

rootfs=$workdir/rootfs
log "debootstrap $suite from $mirror with: $packages"
start=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    >"$workdir/debootstrap.log" 2>&1 || {
        log "debootstrap failed; last lines of its log:"
        tail -n 30 "$workdir/debootstrap.log" >&2
        exit 1
    }

# Slim it like the official -slim images: no apt caches/lists, no docs or man pages.
# The packages stay registered in dpkg's database, which is what the Dockerfile checks.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
       "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
       "$rootfs"/tmp/* "$rootfs"/root/.bash_history
# mariadb-server's postinst initialised a datadir (~110 MB, mostly redo log) that the
# stack never uses: /var/lib/mysql is a volume, initialised on first start by
# service/mysql/bin/docker-entry-setup.sh.
rm -rf "${rootfs:?}"/var/lib/mysql/*
# A container's hostname/resolv.conf/hosts are bind-mounted by Docker at run time.
: >"$rootfs/etc/hostname"

log "importing into docker as $tag"
tar --numeric-owner -C "$rootfs" -c . \
    | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change "CMD $image_cmd" \
        --change "LABEL supd.packages=$want" \
        --message "debootstrap $suite minbase + $(basename "$packages_file")" \
        - "$tag" >/dev/null
log "done in $(( $(date +%s) - start )) s: $(docker image inspect -f '{{.Id}} {{.Size}}' "$tag")"
