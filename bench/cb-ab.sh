#!/usr/bin/env bash
# bench/cb-ab.sh: two supd builds side by side on the callback round trip, in one run.
#
#   A=/path/supd-before B=/path/supd-after bench/cb-ab.sh
#
# Both supds run at once (not PID 1, socket open, `CB_noop() { :; }`); hyperfine -N
# alternates `bash -c 'source lib; source cb; CB_noop root'` and each build's
# `supctl send bench noop` (ROUNDS rounds of RUNS runs, medians and ratios to bash -c).
# Then supd's instructions per request (callgrind, both threads): the totals for 20
# requests and for none, difference / 20. Needs hyperfine, jq, valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A:?the first supd binary}" "${B:?the second supd binary}"
RUNS=${RUNS:-300}
ROUNDS=${ROUNDS:-2}
LIB=$PWD/target-sbin/callbacks-lib.sh
work=$(mktemp -d /tmp/supd-cb-ab.XXXXXX)
pids=()
cleanup() {
    [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null && wait "${pids[@]}" || true
    rm -rf "$work"
}
trap cleanup EXIT
export SERVICE=bench
printf 'CB_noop() { :; }\n' >"$work/callbacks.sh"
start() { # start NAME BINARY [WRAPPER...]: supd with its own socket dir and supctl
    local name=$1 binary=$2
    shift 2
    mkdir -p "$work/$name/run"
    ln -sf "$binary" "$work/$name/supctl"
    "$@" "$binary" -q --service bench --socket-dir "$work/$name/run" \
        --callbacks "$work/callbacks.sh" --callback-lib "$LIB" -- sleep infinity 2>/dev/null &
    pids+=($!)
    for _ in $(seq 500); do [ -S "$work/$name/run/bench-request.sock" ] && break; sleep 0.02; done
    "$work/$name/supctl" --socket-dir "$work/$name/run" ping bench >/dev/null
}
send() { "$work/$1/supctl" --socket-dir "$work/$1/run" send bench noop; }

start a "$A"
start b "$B"
direct="bash -c 'source $LIB; source $work/callbacks.sh; CB_noop root'"
for round in $(seq "$ROUNDS"); do
    hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$work/hf.json" "$direct" \
        "$work/a/supctl --socket-dir $work/a/run send bench noop" \
        "$work/b/supctl --socket-dir $work/b/run send bench noop" >/dev/null 2>"$work/hf.err" ||
        { cat "$work/hf.err" >&2; exit 1; }
    echo "round $round (hyperfine -N, $RUNS runs, median µs, ratio to bash -c):"
    jq -r --arg work "$work/" '.results as $r | $r[]
        | "  \(.command | gsub($work; "") | gsub("source [^;]*lib.sh"; "source lib") | .[0:60])"
          + "  \(.median * 1e6 | floor)  \(.median / $r[0].median * 100 | floor / 100)x"' \
        "$work/hf.json"
done
kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
pids=()

echo "supd's instructions per request (callgrind, (20 requests - 0) / 20):"
for name in a b; do
    binary=$A; [ $name = b ] && binary=$B
    total=()
    for n in 0 20; do
        rm -rf "$work/$name"
        start "$name" "$binary" valgrind -q --tool=callgrind --callgrind-out-file="$work/cg.$name.$n.%p"
        for _ in $(seq $n); do send "$name" >/dev/null; done
        kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
        total+=("$(grep -h '^summary:' "$work/cg.$name.$n.${pids[-1]}" | awk '{print $2}')")
        unset 'pids[-1]'
    done
    echo "  $name ($binary): $(( (total[1] - total[0]) / 20 ))"
done
