#!/usr/bin/env bash
# bench/init.sh: supd as PID 1, side by side with tini, dumb-init and catatonit.
#
# One run, one markdown table, written to bench/RESULTS.md under "## Init" (other
# sections of that file are left alone). Every init runs as PID 1 of a fresh PID
# namespace (`unshare --pid --fork --mount-proc`): tini and catatonit behave differently
# when they are not PID 1. Needs root (unshare). Takes about a minute plus the build.
#
# Measures: startup overhead of `INIT -- /bin/true` over a bare `/bin/true` (hyperfine),
# idle RSS and context switches over 10 s idle, time to reap 5,000 orphans, signal
# forwarding latency kill(init) -> child's handler (p50/p99), shutdown latency SIGTERM ->
# init gone (child exits on TERM), and the static binary's size.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_SECONDS=${IDLE_SECONDS:-10}
SIGNALS=${SIGNALS:-2000}
SHUTDOWNS=${SHUTDOWNS:-50}
ORPHANS=${ORPHANS:-5000}

# --- tools -------------------------------------------------------------------------
missing=()
for tool in tini dumb-init catatonit hyperfine gcc jq file; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    apt-get install -y "${missing[@]}" >&2
fi

# --- supd, static -------------------------------------------------------------------
MUSL=x86_64-unknown-linux-musl
rustup target add "$MUSL" >/dev/null 2>&1 || true
cargo build --release --target "$MUSL" >&2
SUPD=$PWD/target/$MUSL/release/supd

work=$(mktemp -d /tmp/supd-bench-init.XXXXXX)
declare -A UNSHARE=() INITPID=()
cleanup() {
    # Inits still idling if we stopped half-way (cleared once they exited normally).
    for pid in "${INITPID[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
HELPER=$work/init-helper
gcc -O2 -Wall -o "$HELPER" bench/init-helper.c

U="unshare --pid --fork --mount-proc"
NAMES=(supd tini dumb-init catatonit)
# Each init's command line up to the service. supd runs without its request socket,
# like the others (none of them has one).
init_cmd() {
    case $1 in
        supd) echo "$SUPD --no-socket --" ;;
        tini) echo "$(command -v tini) --" ;;
        dumb-init) command -v dumb-init ;;
        catatonit) echo "$(command -v catatonit) --" ;;
    esac
}

declare -A R # R[metric:name] = value

# percentile P of the numbers on stdin (nearest rank)
pct() { sort -g | awk -v p="$1" '{ v[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }

# --- 1. startup overhead ----------------------------------------------------------------
echo "startup (hyperfine)..." >&2
# The machine may be busy with other work: run the commands in interleaved blocks (each
# block runs every command) and pool each command's run times over all blocks, so that a
# burst of background load does not land on one init only.
cmds=("$U /bin/true")
for n in "${NAMES[@]}"; do cmds+=("$U $(init_cmd "$n") /bin/true"); done
BLOCKS=${BLOCKS:-6}
for b in $(seq "$BLOCKS"); do
    hyperfine -N --warmup 10 --runs 70 --export-json "$work/startup-$b.json" "${cmds[@]}" >/dev/null 2>&1
done
# pooled INDEX median|min -> seconds, over the pooled run times of command INDEX
pooled() {
    jq -s --argjson i "$1" --arg what "$2" '
        [.[].results[$i].times[]] | sort
        | if $what == "min" then .[0] else .[(length / 2 | floor)] end' "$work"/startup-*.json
}
bare=$(pooled 0 median)
bare_min=$(pooled 0 min)
i=1
for n in "${NAMES[@]}"; do
    med=$(pooled $i median)
    min=$(pooled $i min)
    R[startup:$n]=$(echo "($med - $bare) * 1000000" | bc -l | xargs printf '%.0f')
    R[startupmin:$n]=$(echo "($min - $bare_min) * 1000000" | bc -l | xargs printf '%.0f')
    i=$((i + 1))
done
bare_us=$(echo "$bare * 1000000" | bc -l | xargs printf '%.0f')

# --- 2. idle RSS and context switches -------------------------------------------------
echo "idle ${IDLE_SECONDS}s..." >&2
for n in "${NAMES[@]}"; do
    read -ra cmd <<<"$U $(init_cmd "$n") sleep 100000"
    # exec: $! is then unshare itself, not a subshell around it.
    (exec "${cmd[@]}" </dev/null) &
    UNSHARE[$n]=$!
done
# The init: unshare's child, once it has exec'd (no longer named unshare).
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
sleep 1 # let everyone settle into its loop
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

# --- 3. reaping 5,000 orphans -----------------------------------------------------------
echo "reaping $ORPHANS orphans..." >&2
cmds=()
for n in "${NAMES[@]}"; do cmds+=("$U $(init_cmd "$n") $HELPER orphans $ORPHANS"); done
hyperfine -N --warmup 1 --runs 8 --export-json "$work/reap.json" "${cmds[@]}" >/dev/null 2>&1
i=0
for n in "${NAMES[@]}"; do
    R[reap:$n]=$(jq ".results[$i].median * 1000" "$work/reap.json" | xargs printf '%.0f')
    i=$((i + 1))
done

# --- 4. signal forwarding latency ---------------------------------------------------------
echo "signal latency ($SIGNALS signals each)..." >&2
for n in "${NAMES[@]}"; do
    # shellcheck disable=SC2046
    "$HELPER" siglat "$SIGNALS" $(init_cmd "$n") >"$work/sig-$n"
    R[sig50:$n]=$(pct 50 <"$work/sig-$n")
    R[sig99:$n]=$(pct 99 <"$work/sig-$n")
done

# --- 5. shutdown latency ------------------------------------------------------------------
echo "shutdown latency ($SHUTDOWNS runs each)..." >&2
for n in "${NAMES[@]}"; do
    # shellcheck disable=SC2046
    "$HELPER" shutdown "$SHUTDOWNS" $(init_cmd "$n") >"$work/down-$n"
    R[down50:$n]=$(pct 50 <"$work/down-$n" | xargs printf '%.0f')
    R[down99:$n]=$(pct 99 <"$work/down-$n" | xargs printf '%.0f')
done

# --- 6. binary size ---------------------------------------------------------------------
for n in "${NAMES[@]}"; do
    case $n in
        supd) bin=$SUPD ;;
        *) bin=$(readlink -f "$(command -v "$n")") ;;
    esac
    size=$(stat -c %s "$bin")
    if file -L "$bin" | grep -q 'statically linked\|static-pie linked'; then kind=static; else kind=dynamic; fi
    R[size:$n]="$(echo "$size / 1024" | bc) KiB $kind"
    R[sizeb:$n]=$size
done

# --- the table ----------------------------------------------------------------------------
ratio() { # supd / tini for metric $1, or "-" when tini's is 0
    local s=${R[$1:supd]} t=${R[$1:tini]}
    if [ "$(echo "$t == 0" | bc -l)" = 1 ]; then
        if [ "$(echo "$s == 0" | bc -l)" = 1 ]; then echo "="; else echo "-"; fi
    else
        echo "$s / $t" | bc -l | xargs printf '%.2fx'
    fi
}
row() { # label metric unit goal [metric for the ratio]
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
        "${R[$2:supd]}$3" "${R[$2:tini]}$3" "${R[$2:dumb-init]}$3" "${R[$2:catatonit]}$3" \
        "$(ratio "${5:-$2}")" "$4"
}
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
supd_static=$(file -L "$SUPD" | grep -q 'statically linked\|static-pie linked' && echo yes || echo NO)
section=$work/section.md
{
    echo "<!-- init:begin (bench/init.sh rewrites this section up to init:end) -->"
    echo "## Init"
    echo
    echo "supd as PID 1 next to tini $(tini --version 2>&1 | awk '{print $3; exit}'), dumb-init" \
        "$(dumb-init --version 2>&1 | awk '{print $2; exit}') and catatonit" \
        "$(catatonit --version 2>&1 | awk '{print $3; exit}'), each as PID 1 of a fresh PID" \
        "namespace (\`unshare --pid --fork --mount-proc\`). supd: release build for" \
        "\`$MUSL\`, run with \`--no-socket\` (the others have no socket either)." \
        "Generated by \`bench/init.sh\` on $(date -u +%Y-%m-%d) — $(nproc) CPUs, $cpu," \
        "Linux $(uname -r)."
    echo
    echo "| metric | supd | tini | dumb-init | catatonit | supd/tini | goal |"
    echo "|---|---|---|---|---|---|---|"
    row "startup overhead over bare \`/bin/true\` (median; bare: ${bare_us} µs)" startup " µs" "within 10% of tini"
    row "startup overhead, best run over best bare run" startupmin " µs" "within 10% of tini"
    row "idle RSS" rss " KiB" "≤ 2048 KiB"
    row "context switches in ${IDLE_SECONDS} s idle" ctx "" "0"
    row "reap $ORPHANS orphans (wall time of the run, median)" reap " ms" "no slower than tini"
    row "signal forwarding latency p50" sig50 " µs" "within 2x of tini"
    row "signal forwarding latency p99" sig99 " µs" ""
    row "shutdown latency p50 (SIGTERM → init gone)" down50 " µs" ""
    row "shutdown latency p99" down99 " µs" ""
    row "binary size" size "" "≤ 3 MiB, static" sizeb
    echo
    echo "supd statically linked: $supd_static. Startup: hyperfine \`-N\`, $BLOCKS interleaved" \
        "blocks of 10 warm-ups + 70 runs of every command, run times pooled; overhead =" \
        "median(INIT -- /bin/true) − median(/bin/true), both inside unshare (the machine" \
        "is shared: load from other work shows up as noise). Idle: \`INIT -- sleep\`, VmRSS and voluntary+nonvoluntary context switches" \
        "of the init from /proc after 1 s of settling. Reap: the service forks $ORPHANS" \
        "double-forked orphans and exits once /proc holds only PID 1 and itself; this" \
        "includes the forks, identical for every init. Signals: $SIGNALS × SIGUSR1 to the" \
        "init, time from kill() to the service's handler (CLOCK_MONOTONIC, written to a" \
        "fifo; \`bench/init-helper.c\`). Shutdown: $SHUTDOWNS runs, time from kill(init," \
        "SIGTERM) until unshare is reaped (includes namespace teardown)."
    echo
    echo "<!-- init:end -->"
} >"$section"

# Replace our section in place: between the init markers, or (older files) from
# "## Init" up to the next heading or marker; append it when absent. Other sections and
# their markers are left alone.
results=bench/RESULTS.md
[ -f "$results" ] || printf '# Benchmarks\n\n' >"$results"
awk -v section="$section" '
    BEGIN { while ((getline line < section) > 0) body = body line "\n" }
    /^<!-- init:begin/ { if (!done) printf "%s", body; done = 1; inside = 1; next }
    inside { if (/^<!-- init:end/) inside = 0; next }
    !done && $0 == "## Init" { printf "%s", body; done = 1; legacy = 1; next }
    legacy && (/^## / || /^<!--/) { legacy = 0 }
    legacy { next }
    { print }
    END { if (!done) printf "\n%s", body }
' "$results" >"$work/results.md"
cat "$work/results.md" >"$results"
cat "$section"
