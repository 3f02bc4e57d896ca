#!/usr/bin/env bash
# bench/control.sh: the request socket.
#
# Writes the "## Control socket" section of bench/RESULTS.md (between its markers;
# other sections are left alone). Takes about a minute plus the build.
#
# Measures, against the static release supd (not PID 1: a subreaper in a temp dir):
# - `ping` round trip (connect, request, reply, close) p50/p99 and requests/s, with one
#   client and with 8 concurrent clients (examples/ping_load.rs, plain blocking sockets);
# - a no-op callback through `supctl send` against running the same bash command
#   directly (`bash -c 'source lib; source cb; CB_noop root'`), with hyperfine;
# - supd's idle RSS and wakeups (context switches over IDLE_SECONDS) with the socket open;
# - throughput: a callback that `cat`s THROUGHPUT_MB MB of 100-byte lines, through
#   `supctl send` into a pipe, next to `cat` of the same file into a pipe (MB/s, ratio),
#   and supd's VmHWM over it (backpressure keeps it bounded).
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_SECONDS=${IDLE_SECONDS:-10}
LOAD_SECONDS=${LOAD_SECONDS:-5}
THROUGHPUT_MB=${THROUGHPUT_MB:-64}

for tool in hyperfine jq; do
    command -v "$tool" >/dev/null || apt-get install -y "$tool" >&2
done

MUSL=x86_64-unknown-linux-musl
rustup target add "$MUSL" >/dev/null 2>&1 || true
cargo build --release --target "$MUSL" >&2
cargo build --release --example ping_load >&2
SUPD=$PWD/target/$MUSL/release/supd
LOAD=$PWD/target/release/examples/ping_load

work=$(mktemp -d /tmp/supd-bench-control.XXXXXX)
supd_pid=
cleanup() {
    if [ -n "$supd_pid" ]; then
        kill -TERM "$supd_pid" 2>/dev/null || true
        wait "$supd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The real helper library, and a callbacks file with a no-op.
LIB=$PWD/target-sbin/callbacks-lib.sh
[ -f "$LIB" ] || { printf 'set -eo pipefail\n' >"$work/lib.sh"; LIB=$work/lib.sh; }
printf 'CB_noop() { :; }\nCB_cat() { cat -- "$2"; }\n' >"$work/callbacks.sh"
ln -s "$SUPD" "$work/supctl"

SERVICE=bench
"$SUPD" -q --service "$SERVICE" --socket-dir "$work" --callbacks "$work/callbacks.sh" \
    --callback-lib "$LIB" -- sleep infinity &
supd_pid=$!
sock=$work/$SERVICE-request.sock
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.01; done
"$work/supctl" --socket-dir "$work" ping "$SERVICE" >/dev/null

# --- idle first (nothing has run yet but one ping) ----------------------------------------
sleep 1
# Every thread's (the status of the process counts its main thread only).
ctx() { cat /proc/"$1"/task/*/status | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print s }'; }
before=$(ctx "$supd_pid")
sleep "$IDLE_SECONDS"
after=$(ctx "$supd_pid")
idle_ctx=$((after - before))
idle_rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$supd_pid/status")

# --- ping round trips -------------------------------------------------------------------
"$LOAD" "$sock" 1 1 >/dev/null # warm-up
one=$("$LOAD" "$sock" 1 "$LOAD_SECONDS")
eight=$("$LOAD" "$sock" 8 "$LOAD_SECONDS")
field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
after_rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$supd_pid/status")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$supd_pid/status")

# --- a no-op callback: supctl vs bash directly -------------------------------------------
# Same environment as a callback gets (the lib reads $SERVICE, else runs `cat` for the
# host name).
export SERVICE
direct="bash -c 'source $LIB; source $work/callbacks.sh; CB_noop root'"
via="$work/supctl --socket-dir $work send $SERVICE noop"
hyperfine -N --warmup 20 --runs 300 --export-json "$work/hf.json" "$direct" "$via" /bin/true >&2
mean_ms() { jq -r ".results[$1].mean * 1000" "$work/hf.json"; }
median_ms() { jq -r ".results[$1].median * 1000" "$work/hf.json"; }
d_mean=$(mean_ms 0)
v_mean=$(mean_ms 1)
d_med=$(median_ms 0)
v_med=$(median_ms 1)
t_med=$(median_ms 2)
ratio=$(awk -v a="$v_med" -v b="$d_med" 'BEGIN { printf "%.2f", a / b }')
# The same no-op through the socket without supctl's process start (1 client, p50).
noop=$("$LOAD" "$sock" 1 3 "root noop")
noop_ms=$(awk -v x="$(field "$noop" p50_us)" 'BEGIN { printf "%.2f", x / 1000 }')
sock_ratio=$(awk -v a="$noop_ms" -v b="$d_med" 'BEGIN { printf "%.2f", a / b }')

# --- throughput: a large output through supctl, next to cat --------------------------------
big=$work/big.txt
head -n $((THROUGHPUT_MB * 1024 * 1024 / 100)) < <(yes "$(printf '%099d' 0)") >"$big"
big_bytes=$(stat -c %s "$big")
big_lines=$(wc -l <"$big")
hyperfine --warmup 1 --runs 5 --export-json "$work/tp.json" \
    "cat $big | cat >/dev/null" \
    "$work/supctl --socket-dir $work send $SERVICE cat $big | cat >/dev/null" >&2
tp_cat=$(jq -r '.results[0].median' "$work/tp.json")
tp_via=$(jq -r '.results[1].median' "$work/tp.json")
# Check once that every line arrived and the exit status came back.
got=$("$work/supctl" --socket-dir "$work" send "$SERVICE" cat "$big" | wc -l)
[ "$got" = "$big_lines" ] || { echo "supctl got $got of $big_lines lines" >&2; exit 1; }
mbs() { awk -v b="$big_bytes" -v t="$1" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
tp_cat_mbs=$(mbs "$tp_cat")
tp_via_mbs=$(mbs "$tp_via")
tp_ratio=$(awk -v a="$tp_cat" -v b="$tp_via" 'BEGIN { printf "%.1f", b / a }')
tp_lines=$(awk -v n="$big_lines" -v t="$tp_via" 'BEGIN { printf "%.0f", n / t }')
tp_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$supd_pid/status")

# --- the section ------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
section=$work/section.md
{
    echo "## Control socket"
    echo "<!-- control:begin (bench/control.sh rewrites this section up to control:end) -->"
    echo
    echo "supd's request socket: static release build for \`$MUSL\`, not PID 1 (subreaper)," \
        "service \`sleep infinity\`. Generated by \`bench/control.sh\` on $(date -u +%Y-%m-%d)" \
        "— $(nproc) CPUs, $cpu, Linux $(uname -r). Clients and supd share the CPUs."
    echo
    echo "| metric | value | goal |"
    echo "|---|---|---|"
    echo "| \`ping\` round trip, 1 client, p50 / p99 | $(field "$one" p50_us) µs / $(field "$one" p99_us) µs | |"
    echo "| \`ping\` requests/s, 1 client | $(field "$one" rps) | |"
    echo "| \`ping\` round trip, 8 concurrent clients, p50 / p99 | $(field "$eight" p50_us) µs / $(field "$eight" p99_us) µs | |"
    echo "| \`ping\` requests/s, 8 concurrent clients | $(field "$eight" rps) (errors: $(field "$eight" errors)) | |"
    echo "| no-op callback: \`bash -c 'source lib; source cb; CB_noop root'\` (median / mean) | $(f1 "$d_med") ms / $(f1 "$d_mean") ms | |"
    echo "| no-op callback through \`supctl send\` (median / mean) | $(f1 "$v_med") ms / $(f1 "$v_mean") ms | |"
    echo "| supctl / direct (medians) | ${ratio}x | ≤ 1.15x |"
    echo "| no-op callback through the socket, no supctl (\`ping_load\` \`root noop\`, p50) | ${noop_ms} ms | |"
    echo "| socket round trip / direct | ${sock_ratio}x | ≤ 1.15x |"
    echo "| process start floor: \`/bin/true\` (median) | $(f1 "$t_med") ms | |"
    echo "| idle RSS with the socket open | $idle_rss KiB | ≤ 2048 KiB |"
    echo "| context switches in ${IDLE_SECONDS} s idle, socket open | $idle_ctx | 0 |"
    echo "| RSS after the load / VmHWM | $after_rss KiB / $hwm KiB | |"
    echo "| throughput: \`cat\` of $THROUGHPUT_MB MiB (100-byte lines, whole) into a pipe (median) | $tp_cat_mbs MiB/s | |"
    echo "| throughput: the same \`cat\` as a callback, through \`supctl send\` into a pipe (median) | $tp_via_mbs MiB/s ($tp_lines lines/s) | |"
    echo "| supctl time / cat time (throughput) | ${tp_ratio}x | |"
    echo "| supd VmHWM after the throughput runs | $tp_hwm KiB | bounded |"
    echo
    echo "Round trips: \`examples/ping_load.rs\`, each request on a fresh connection" \
        "(connect, \`root ping\\n\`, read to EOF), ${LOAD_SECONDS} s per row. Callback rows:" \
        "hyperfine \`-N\`, 20 warm-ups + 300 runs; both run the same bash with the real" \
        "\`target-sbin/callbacks-lib.sh\`; the supctl row adds supctl's start, the socket" \
        "round trip, supd's spawn and the fd-3 handshake. On this VM a process start alone" \
        "(\`/bin/true\`) costs about as much as half a bash run, so any client process" \
        "misses the 15% goal by that much; the socket row isolates supd's own overhead." \
        "Throughput rows: hyperfine, 1 warm-up + 5 runs (\`sh -c\`, both piped through a" \
        "second \`cat\` to /dev/null); each line crosses bash's pipe, supd (split into lines," \
        "one JSON event each), the socket and supctl (parsed, printed); supd at \`-q\`, so" \
        "callback lines are not logged. A run that got fewer lines fails the script."
    echo
    echo "<!-- control:end -->"
} >"$section"

results=bench/RESULTS.md
if [ -f "$results" ]; then
    # Drop the old section (from its heading to its end marker), keep everything else.
    awk '
        $0 == "## Control socket" { skip = 1 }
        !skip { print }
        skip && /^<!-- control:end/ { skip = 0 }
    ' "$results" >"$work/rest.md"
else
    printf '# Benchmarks\n\n' >"$work/rest.md"
fi
# Keep exactly one blank line between the rest and the new section.
sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/rest.md" >"$work/rest2.md"
{ cat "$work/rest2.md"; echo; cat "$section"; } >"$results"
cat "$section"
