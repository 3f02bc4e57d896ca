#!/usr/bin/env bash
# bench/hot-text.sh: regenerate link/hot-text.ld, the order of supd's hot code.
#
# Builds an unstripped release supd (musl) with a linker map, runs it as PID 1 under
# valgrind lackey in the common shapes (--no-socket and socket; idle, a forwarded
# signal, TERM, orphans, a `supctl ping`, `supd /bin/true`), and writes the sections it
# executed, in that order, into link/hot-text.ld (bench/hot-text.py says why and how).
# Needs root (unshare), valgrind and gcc. Rerun it when idle RSS (bench/lean.sh) creeps
# up after big changes; a stale script only loses the gain, it never breaks the build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y valgrind >&2

MUSL=x86_64-unknown-linux-musl
work=$(mktemp -d /tmp/supd-hot-text.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The script in use would reorder the map's binary; an empty one gives the plain layout.
printf 'SECTIONS { .text.supd_hot : { } } INSERT BEFORE .text;\n' >"$work/empty.ld"
SUPD_HOT_TEXT=$work/empty.ld CARGO_PROFILE_RELEASE_STRIP=false \
    RUSTFLAGS="-C link-arg=-Wl,-Map=$work/supd.map" \
    cargo build --release --target "$MUSL" --target-dir "$work/target" >&2
B=$work/target/$MUSL/release/supd
gcc -O2 -o "$work/init-helper" bench/init-helper.c
mkdir -p "$work/run"
ln -s "$B" "$work/supctl"

VG="valgrind --tool=lackey --trace-mem=yes"
U="unshare --pid --fork --mount-proc"
init_of() { # the init (pid 1 of the namespace) under unshare $1
    local c
    for _ in $(seq 1000); do
        c=$(cut -d' ' -f1 "/proc/$1/task/$1/children" 2>/dev/null || true)
        [ -n "$c" ] && { echo "$c"; return; }
        sleep 0.01
    done
}
# NAME ARGS...: start, (ping,) forward a WINCH, then TERM
idle_term() {
    local name=$1
    shift
    $U $VG --log-file="$work/$name.%p" "$B" "$@" -- sleep 100000 </dev/null >/dev/null 2>&1 &
    local u=$! p
    sleep 3
    p=$(init_of "$u")
    if [ -n "${PING:-}" ]; then "$work/supctl" --socket-dir "$work/run" ping "$PING" >/dev/null; fi
    sleep 0.5
    kill -WINCH "$p"
    sleep 0.5
    kill -TERM "$p"
    wait "$u" || true
}
echo "lackey traces..." >&2
idle_term nosock --no-socket
$U $VG --log-file="$work/orph.%p" "$B" --no-socket -- "$work/init-helper" orphan-steps 3 </dev/null >/dev/null 2>&1
idle_term sock --service hot1 --socket-dir "$work/run"
$U $VG --log-file="$work/true.%p" "$B" --service hot2 --socket-dir "$work/run" -- /bin/true </dev/null >/dev/null 2>&1
$U $VG --log-file="$work/orphs.%p" "$B" --service hot3 --socket-dir "$work/run" -- "$work/init-helper" orphan-steps 3 </dev/null >/dev/null 2>&1
PING=hot4 idle_term ping --service hot4 --socket-dir "$work/run"
mkdir -p link
# ".1": the init's own trace (pid 1 of its namespace), not its children's
python3 bench/hot-text.py "$work/supd.map" "$work"/{nosock,orph,sock,true,orphs,ping}.1 >link/hot-text.ld
echo "wrote link/hot-text.ld" >&2
