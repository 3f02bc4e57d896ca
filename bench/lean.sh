#!/usr/bin/env bash
# bench/lean.sh: supd as PID 1 against the floor (bench/floor-init.c, ~50 lines of C,
# static) and the static tini and catatonit, in ONE run, with ratios to the floor.
#
#   bench/lean.sh                    # build the release supd, measure, write RESULTS.md
#   LABEL=before SUPD=/path/supd bench/lean.sh   # measure another build of supd
#
# Writes the section between <!-- lean-$LABEL:begin --> and <!-- lean-$LABEL:end --> of
# bench/RESULTS.md (LABEL defaults to "after"); other sections are left alone. Needs root
# (unshare) and valgrind. Takes a few minutes.
#
# Instruction counts come from callgrind (user-space instructions of the init process
# only, not of its children): deterministic, they do not move with the machine's load.
# - startup: `INIT init-helper settle` (a service that exits at once; with supd's
#   socket, once it is bound), the whole life of the init;
# - per forwarded signal: `INIT init-helper sigchild` receiving N SIGUSR1 (each waited
#   for by the driver: one wakeup each) minus the same run with 0, divided by N;
# - per reaped orphan: `INIT init-helper orphan-steps N` (one orphan at a time, each
#   reaped before the next: one wakeup each) minus the run with 0, divided by N.
# Wall times (noisy on a shared machine): TERM to exit (init-helper shutdown: kill(init,
# TERM) until unshare is reaped, service `sleep`, and again with a service that takes
# 5 ms to stop), idle RSS and context switches.
# Callback round trip: a no-op callback through `supctl send` against `bash -c` with
# the same sourcing; supctl's own start against a static `true` (hyperfine -N).
set -euo pipefail
cd "$(dirname "$0")/.."

LABEL=${LABEL:-after}
NSIG=${NSIG:-200}
NORPHAN=${NORPHAN:-200}
SHUTDOWNS=${SHUTDOWNS:-100}
SLOW_SHUTDOWNS=${SLOW_SHUTDOWNS:-60}
IDLE_SECONDS=${IDLE_SECONDS:-5}
RUNS=${RUNS:-200}

for tool in valgrind hyperfine jq gcc file; do
    command -v "$tool" >/dev/null || apt-get install -y "$tool" >&2
done
command -v tini-static >/dev/null || apt-get install -y tini >&2
command -v catatonit >/dev/null || apt-get install -y catatonit >&2

MUSL=x86_64-unknown-linux-musl
if [ -z "${SUPD:-}" ]; then
    rustup target add "$MUSL" >/dev/null 2>&1 || true
    cargo build --release --target "$MUSL" >&2
    SUPD=$PWD/target/$MUSL/release/supd
fi
cargo build --release --example ping_load >&2
LOAD=$PWD/target/release/examples/ping_load

work=$(mktemp -d /tmp/supd-bench-lean.XXXXXX)
declare -A UNSHARE=() INITPID=()
cleanup() {
    for pid in "${INITPID[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

FLOOR=$work/floor-init
HELPER=$work/init-helper
TRUE=$work/true
gcc -O2 -static -o "$FLOOR" bench/floor-init.c
gcc -O2 -Wall -o "$HELPER" bench/init-helper.c
printf 'int main(void) { return 0; }\n' >"$work/true.c"
gcc -O2 -static -o "$TRUE" "$work/true.c"

# The socket's files: a no-op callback and the real helper library.
LIB=$PWD/target-sbin/callbacks-lib.sh
[ -f "$LIB" ] || { printf 'set -eo pipefail\n' >"$work/lib.sh"; LIB=$work/lib.sh; }
printf 'CB_noop() { :; }\n' >"$work/callbacks.sh"
mkdir -p "$work/run" "$work/empty"

U="unshare --pid --fork --mount-proc"
NAMES=(floor tini catatonit supd-nosock supd)
init_cmd() {
    case $1 in
        floor) echo "$FLOOR" ;;
        tini) echo "$(command -v tini-static) --" ;;
        catatonit) echo "$(command -v catatonit) --" ;;
        supd-nosock) echo "$SUPD --no-socket --" ;;
        supd) echo "$SUPD --service $NAME --socket-dir $work/run --callbacks $work/callbacks.sh --callback-lib $LIB --" ;;
    esac
}
# Before each init_cmd: a service name of its own (a run's socket never meets
# another's), and SETTLE_PATH, which init-helper waits for before it starts measuring:
# supd's socket, bound by its second thread; without the wait a run could end before
# the bind and count ~50k instructions fewer than its pair.
next_name() {
    NAME=b$RANDOM$RANDOM
    if [ "$1" = supd ]; then SETTLE_PATH=$work/run/$NAME-request.sock; else SETTLE_PATH=; fi
    export SETTLE_PATH
}
CG="valgrind --tool=callgrind --trace-children=no --log-file=/dev/null"

declare -A R

# Ir of the init's own process (pid 1 in its namespace) from a callgrind out file.
ir() { awk '/^summary:/ { print $2 }' "$1"; }

echo "callgrind: startup, signals, orphans..." >&2
for n in "${NAMES[@]}"; do
    next_name "$n"
    # shellcheck disable=SC2046
    $U $CG --callgrind-out-file="$work/start-$n.%p" $(init_cmd "$n") "$HELPER" settle || true
    R[start:$n]=$(ir "$work/start-$n.1")
    for count in 0 "$NSIG"; do
        next_name "$n"
        # shellcheck disable=SC2046
        "$HELPER" siglat "$count" $CG --callgrind-out-file="$work/sig$count-$n.%p" \
            $(init_cmd "$n") >/dev/null
    done
    R[sig:$n]=$((($(ir "$work/sig$NSIG-$n.1") - $(ir "$work/sig0-$n.1")) / NSIG))
    for count in 0 "$NORPHAN"; do
        next_name "$n"
        # shellcheck disable=SC2046
        $U $CG --callgrind-out-file="$work/orph$count-$n.%p" $(init_cmd "$n") \
            "$HELPER" orphan-steps "$count"
    done
    R[orph:$n]=$((($(ir "$work/orph$NORPHAN-$n.1") - $(ir "$work/orph0-$n.1")) / NORPHAN))
done

echo "TERM to exit ($SHUTDOWNS runs each)..." >&2
pct() { sort -g | awk -v p="$1" '{ v[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }
# Interleaved rounds, so that a burst of load from elsewhere does not land on one init.
for round in 1 2 3 4; do
    for n in "${NAMES[@]}"; do
        next_name "$n"
        # shellcheck disable=SC2046
        "$HELPER" shutdown $((SHUTDOWNS / 4)) $(init_cmd "$n") >>"$work/down-$n"
    done
done
for n in "${NAMES[@]}"; do R[down:$n]=$(pct 50 <"$work/down-$n" | xargs printf '%.0f'); done
# The same with a service that takes 5 ms to stop, as real ones take their time: what
# an init adds then is its own exit, its work at the signal having overlapped the
# service's (supd's socket closes at the signal; its server thread leaves then).
echo "TERM to exit, service stopping in 5 ms ($SLOW_SHUTDOWNS runs each)..." >&2
for round in 1 2 3 4; do
    for n in "${NAMES[@]}"; do
        next_name "$n"
        # shellcheck disable=SC2046
        STOP_MS=5 "$HELPER" shutdown $((SLOW_SHUTDOWNS / 4)) $(init_cmd "$n") >>"$work/slow-$n"
    done
done
for n in "${NAMES[@]}"; do R[slow:$n]=$(pct 50 <"$work/slow-$n" | xargs printf '%.0f'); done

echo "idle ${IDLE_SECONDS}s..." >&2
for n in "${NAMES[@]}"; do
    next_name "$n"
    read -ra cmd <<<"$U $(init_cmd "$n") sleep 100000"
    (exec "${cmd[@]}" </dev/null) &
    UNSHARE[$n]=$!
done
child_of() {
    local c="" comm=""
    for _ in $(seq 500); do
        c=$(cut -d' ' -f1 "/proc/$1/task/$1/children" 2>/dev/null || true)
        if [ -n "$c" ]; then
            comm=$(cat "/proc/$c/comm" 2>/dev/null || true)
            [ -n "$comm" ] && [ "$comm" != unshare ] && break
        fi
        sleep 0.01
    done
    echo "$c"
}
# Every thread's (the status of the process counts its main thread only).
ctx() { cat /proc/"$1"/task/*/status | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print s }'; }
for n in "${NAMES[@]}"; do INITPID[$n]=$(child_of "${UNSHARE[$n]}"); done
sleep 1
declare -A CTX0
for n in "${NAMES[@]}"; do CTX0[$n]=$(ctx "${INITPID[$n]}"); done
sleep "$IDLE_SECONDS"
for n in "${NAMES[@]}"; do
    pid=${INITPID[$n]}
    R[ctx:$n]=$(($(ctx "$pid") - CTX0[$n]))
    R[rss:$n]=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    kill -TERM "$pid"
done
for n in "${NAMES[@]}"; do wait "${UNSHARE[$n]}" || true; done
INITPID=()

for n in floor tini catatonit supd-nosock supd; do
    case $n in
        floor) bin=$FLOOR ;;
        tini) bin=$(command -v tini-static) ;;
        catatonit) bin=$(command -v catatonit) ;;
        *) bin=$SUPD ;;
    esac
    R[size:$n]=$(($(stat -c %s "$bin") / 1024))
done

echo "callback round trip and supctl start..." >&2
ln -s "$SUPD" "$work/supctl"
SERVICE=bench
"$SUPD" -q --service "$SERVICE" --socket-dir "$work/run" --callbacks "$work/callbacks.sh" \
    --callback-lib "$LIB" -- sleep infinity &
supd_pid=$!
INITPID[ctl]=$supd_pid
for _ in $(seq 200); do [ -S "$work/run/$SERVICE-request.sock" ] && break; sleep 0.01; done
export SERVICE
direct="bash -c 'source $LIB; source $work/callbacks.sh; CB_noop root'"
via="$work/supctl --socket-dir $work/run send $SERVICE noop"
ping="$work/supctl --socket-dir $work/run ping $SERVICE"
start="$work/supctl --socket-dir $work/empty services"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$work/hf.json" \
    "$direct" "$via" "$ping" "$start" "$TRUE" >/dev/null 2>&1
med() { jq -r ".results[$1].median * 1000" "$work/hf.json" | xargs printf '%.3f'; }
# The issue's measure, "through the socket": the same no-op without a client process
# (examples/ping_load.rs: connect, `root noop`, read to EOF; one client, p50 over 3 s).
noop=$("$LOAD" "$work/run/$SERVICE-request.sock" 1 3 "root noop")
sock_ms=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$noop" | awk '{ printf "%.3f", $1 / 1000 }')
$CG --callgrind-out-file="$work/ctl.%p" $start >/dev/null
ctl_ir=$(ir "$(ls "$work"/ctl.*)")
kill -TERM "$supd_pid"
wait "$supd_pid" || true
INITPID=()

# --- the table ----------------------------------------------------------------------------
ratio() { # value / floor's value for metric $1 and init $2
    local v=${R[$1:$2]} f=${R[$1:floor]}
    if [ "$f" = 0 ]; then [ "$v" = 0 ] && echo "=" || echo "-"; return; fi
    echo "$v / $f" | bc -l | xargs printf '%.2fx'
}
cell() { printf '%s%s (%s)' "${R[$1:$2]}" "$3" "$(ratio "$1" "$2")"; }
over() { # metric $1, init $2: its value and how far above the floor's (µs)
    printf '%s (%+d)' "${R[$1:$2]}" $((R[$1:$2] - R[$1:floor]))
}
row_over() { # label metric goal
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${R[$2:floor]}" \
        "$(over "$2" tini)" "$(over "$2" catatonit)" "$(over "$2" supd-nosock)" \
        "$(over "$2" supd)" "$3"
}
row() { # label metric unit goal
    printf '| %s | %s%s | %s | %s | %s | %s | %s |\n' "$1" "${R[$2:floor]}" "$3" \
        "$(cell "$2" tini "$3")" "$(cell "$2" catatonit "$3")" \
        "$(cell "$2" supd-nosock "$3")" "$(cell "$2" supd "$3")" "$4"
}
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "?")}
section=$work/section.md
{
    echo "<!-- lean-$LABEL:begin (bench/lean.sh rewrites this section up to lean-$LABEL:end) -->"
    echo "### $LABEL"
    echo
    echo "\`LABEL=$LABEL bench/lean.sh\` on $(date -u +%Y-%m-%d), tree at $commit — $(nproc) CPUs" \
        "(shared with other work: wall times are noisy, instruction counts are not), $cpu," \
        "Linux $(uname -r). Each init is PID 1 of its own PID namespace. (x) = ratio to the floor."
    echo
    echo "| metric | floor | tini-static | catatonit | supd \`--no-socket\` | supd (socket) | goal |"
    echo "|---|---|---|---|---|---|---|"
    row "instructions, startup (service exits at once; socket bound)" start "" "≤ 150k"
    row "instructions per forwarded signal" sig "" "≤ 500"
    row "instructions per reaped orphan (one wakeup each)" orph "" "≤ 500"
    row "TERM to exit, median of $SHUTDOWNS (µs)" down "" "≤ 1.2x floor"
    row_over "TERM to exit, service stopping in 5 ms, median of $SLOW_SHUTDOWNS (µs; (+N) over the floor)" slow ""
    row "idle RSS (KiB)" rss "" "≤ 1024 with the socket"
    row "context switches in ${IDLE_SECONDS} s idle" ctx "" "0"
    row "binary size (KiB)" size "" ""
    echo
    echo "Callback round trip (hyperfine -N, $RUNS runs, medians; supd not PID 1, socket open):"
    echo
    echo "| command | median ms | ratio | goal |"
    echo "|---|---|---|---|"
    d=$(med 0)
    t=$(med 4)
    echo "| \`bash -c 'source lib; source cb; CB_noop root'\` | $d | 1.00x | |"
    echo "| \`supctl send bench noop\` | $(med 1) | $(echo "$(med 1) / $d" | bc -l | xargs printf '%.2fx') | (adds a process start) |"
    echo "| no-op callback through the socket, no client process (\`ping_load\` \`root noop\`, p50) | $sock_ms | $(echo "$sock_ms / $d" | bc -l | xargs printf '%.2fx') | ≤ 1.10x |"
    echo "| \`supctl ping bench\` (supctl start + one round trip) | $(med 2) | | |"
    echo "| \`supctl services\` on an empty dir (supctl's start) | $(med 3) | $(echo "$(med 3) / $t" | bc -l | xargs printf '%.2fx') of static true | < 2x |"
    echo "| static \`true\` | $t | 1.00x | |"
    echo
    echo "supctl's start (\`supctl services\`, empty dir): $ctl_ir instructions."
    echo
    echo "<!-- lean-$LABEL:end -->"
} >"$section"

results=bench/RESULTS.md
[ -f "$results" ] || printf '# Benchmarks\n\n' >"$results"
awk -v section="$section" -v label="$LABEL" '
    BEGIN { while ((getline line < section) > 0) body = body line "\n" }
    index($0, "<!-- lean-" label ":begin") == 1 { if (!done) printf "%s", body; done = 1; inside = 1; next }
    inside { if (index($0, "<!-- lean-" label ":end") == 1) inside = 0; next }
    { print }
    END { if (!done) printf "\n%s", body }
' "$results" >"$work/results.md"
cat "$work/results.md" >"$results"
cat "$section"
