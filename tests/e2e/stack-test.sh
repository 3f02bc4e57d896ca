#!/usr/bin/env bash
# End-to-end test of the supd stack against real containers (`make e2e`).
#
# Runs a SEPARATE compose project (supde2e<pid>) on a temporary copy of the stack's
# files and data dirs, on a free loopback port, with its own image tag, so a running
# `make up` stack is never touched. Everything it creates (containers, network, image
# tag, temp dir) is removed on exit, failure or Ctrl-C included. The base image
# (scripts/build-base-image.sh) is built when missing and kept: it is the slow part.
#
# Prints PASS/FAIL per check and exits 1 when any check failed. KEEP=1 keeps the temp
# dir and containers for debugging.
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/stack-lib.sh"
cd "$STACK_ROOT"

# Under both docker-compose v1 (Debian's) and `docker compose` v2 (scripts/setup-tools.sh
# --compose-v2 installs it), one run each, unless SUPD_COMPOSE=v1|v2 picks one. The two
# runs are separate projects (own name, image tag, port, temp dir) and run side by side:
# most of each is waiting for minute boundaries, which they then share. Each run's
# output is kept apart and printed whole once both are done.
if [[ -z ${SUPD_COMPOSE:-} ]]; then
    command -v docker-compose >/dev/null 2>&1 || { say "docker-compose v1 missing (apt-get install docker-compose)"; exit 1; }
    docker compose version >/dev/null 2>&1 || "$STACK_ROOT/scripts/setup-tools.sh" --compose-v2
    # The binary is staged and the base image built once, before the runs race for them.
    if ! docker image inspect "$SUPD_BASE" >/dev/null 2>&1 && [[ $SUPD_BASE == supd-base:* ]]; then
        "$STACK_ROOT/scripts/build-base-image.sh" "$SUPD_BASE"
    fi
    build_supd
    export SUPD_STAGED=1
    logs=$(mktemp -d "${TMPDIR:-/var/tmp}/supd-e2e-logs.XXXXXX")
    declare -A run=()
    for v in v1 v2; do
        SUPD_COMPOSE=$v "$0" "$@" >"$logs/$v.log" 2>&1 &
        run[$v]=$!
    done
    rc=0
    for v in v1 v2; do
        wait "${run[$v]}" || rc=1
        say "=== under $( [[ $v == v1 ]] && docker-compose version --short || docker compose version --short) ($v)"
        cat "$logs/$v.log"
    done
    rm -rf "$logs"
    exit "$rc"
fi

project=supde2e$$
export SUPD_IMAGE=supd-stack:e2e-$$
export COMPOSE_PROJECT_NAME=$project
work=$(mktemp -d "${TMPDIR:-/var/tmp}/supd-e2e.XXXXXX")
failures=0
t0=$SECONDS

pass() { printf 'PASS: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
info() { printf '      %s\n' "$*"; }
# verdict PASS-MESSAGE FAIL-MESSAGE COMMAND...: PASS when COMMAND succeeds.
verdict() {
    local ok=$1 ko=$2; shift 2
    if "$@"; then pass "$ok"; else fail "$ko"; return 1; fi
}
dc() { compose -p "$project" -f "$work/docker-compose.yaml" --project-directory "$work" "$@"; }
# cid SERVICE: the container id of a service of the test project.
cid() { dc ps -q "$1"; }
# mysql_q SQL: run SQL as root over the server's socket in the mysql container.
mysql_q() { dc exec -T mysql mariadb -N -B -e "$1"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

cleanup() {
    local rc=$?
    if [[ ${KEEP:-0} == 1 ]]; then
        say "KEEP=1: left project $project and $work"
        exit "$rc"
    fi
    dc down -v --remove-orphans -t 2 >/dev/null 2>&1 || true
    # Belt and braces if compose itself failed: everything labelled with our project.
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null 2>&1 || true
    # The own-jobs layout's state volumes (declared in its override file only).
    docker volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker volume rm >/dev/null 2>&1 || true
    docker image rm "$SUPD_IMAGE" >/dev/null 2>&1 || true
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A step that breaks outside a check still says where, before set -e ends the run.
trap 'fail "unexpected error at line $LINENO: $BASH_COMMAND"' ERR

# free_port: a loopback port nothing listens on (the kernel's pick when python3 exists).
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}
export WEB_PORT=${WEB_PORT_E2E:-$(free_port)}

# --- 1. From nothing: binary, base image, image --------------------------------------
say "project $project, dir $work, web port $WEB_PORT"
had_base=yes; docker image inspect "$SUPD_BASE" >/dev/null 2>&1 || had_base=no
# (SUPD_STAGED: the parent run staged build/supd for both compose versions.)
if { [[ -n ${SUPD_STAGED:-} ]] || build_supd; } && build_images; then
    pass "images built (base $SUPD_BASE existed before: $had_base; image $SUPD_IMAGE)"
else
    fail "building the images"; exit 1
fi

# The stack's files, copied: the test edits the schedule and owns its data dirs.
cp -a docker-compose.yaml .env target-sbin service "$work/"
make_data_dirs "$work"
# A job every minute, next to the real ones: proves the scheduler fires on the minute
# boundary and logs the callback's exit code.
cat >>"$work/service/scheduler/conf/schedule.cron" <<'CRON'
# e2e: every minute
*  *  *  *  *  www-data  web  config-test
CRON

# --- 2. Up and healthy --------------------------------------------------------------
start=$(date +%s%N)
if dc up -d >"$work/up.log" 2>&1 && wait_healthy 180 -p "$project" -f "$work/docker-compose.yaml" --project-directory "$work"; then
    pass "docker-compose up -d: mysql, web, scheduler healthy in $(ms_since "$start") ms"
else
    fail "stack did not become healthy"; cat "$work/up.log"; dc ps; dc logs --tail 40; exit 1
fi
up_epoch=$(date +%s)

for svc in mysql web scheduler; do
    comm=$(docker exec "$(cid "$svc")" cat /proc/1/comm)
    verdict "$svc: PID 1 is supd" "$svc: PID 1 is '$comm', not supd" test "$comm" = supd || true
done

# supctl from the host, through the shared /run bind mount (DESIGN.md §3).
if out=$("$STACK_ROOT/build/supd" ctl --socket-dir "$work/data/run" ping mysql 2>&1); then
    pass "host: supd ctl --socket-dir data/run ping mysql"
else
    fail "host: supd ctl ping mysql (exit $?): $out"
fi

# --- 3. Backup and restore through the scheduler container's supctl -----------------
mysql_q "CREATE DATABASE e2e; CREATE TABLE e2e.t (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL);"
values=$(seq 1 500 | awk '{printf "%s(%d,\"row-%d-%s\")", (NR > 1 ? "," : ""), $1, $1 * 7919 % 1000, ($1 % 3 ? "x" : "ü")}')
mysql_q "INSERT INTO e2e.t VALUES $values;"
rows_before=$(mysql_q "SELECT id, v FROM e2e.t ORDER BY id" | sha256sum | cut -c1-16)
info "500 rows inserted, content hash $rows_before"

start=$(date +%s%N)
rc=0; out=$(dc exec -T scheduler supctl send mysql nightly-backup 2>"$work/backup.err") || rc=$?
dump=$(printf '%s\n' "$out" | grep -E '^/backups/mysql-.*\.sql\.xz$' | tail -n1 || true)
if [[ $rc == 0 && -n $dump ]]; then
    pass "supctl send mysql nightly-backup: exit 0 in $(ms_since "$start") ms -> $dump"
else
    fail "supctl send mysql nightly-backup: exit $rc, stdout '$out'"; cat "$work/backup.err"
fi
name=${dump##*/}
if [[ -n $name && -f $work/data/backups/$name && -f $work/data/backups/$name.sha256 ]] \
   && (cd "$work/data/backups" && sha256sum --quiet -c "$name.sha256") \
   && xz -t "$work/data/backups/$name"; then
    pass "dump in data/backups with a matching .sha256, valid xz ($(stat -c %s "$work/data/backups/$name") bytes)"
else
    fail "dump $name missing, or checksum/xz check failed"; ls -la "$work/data/backups"
fi
partial=$(find "$work/data/backups" -name '.mysql-*')
verdict "no partial files left behind" "partial files left: $partial" test -z "$partial" || true

mysql_q "DROP TABLE e2e.t;"
if mysql_q "SELECT 1 FROM e2e.t" >/dev/null 2>&1; then fail "DROP TABLE did not drop"; fi
rc=0; out=$(dc exec -T scheduler supctl send mysql restore "$name" 2>&1) || rc=$?
rows_after=$(mysql_q "SELECT id, v FROM e2e.t ORDER BY id" 2>/dev/null | sha256sum | cut -c1-16)
if [[ $rc == 0 && $rows_after == "$rows_before" ]]; then
    pass "table dropped, supctl send mysql restore $name: exit 0, same 500 rows ($rows_after)"
else
    fail "restore: exit $rc, rows hash $rows_after != $rows_before"; printf '%s\n' "$out"
fi

# A corrupted dump is refused (65), not half-loaded.
cp "$work/data/backups/$name" "$work/data/backups/mysql-corrupt.sql.xz"
sed "s/  .*/  mysql-corrupt.sql.xz/" "$work/data/backups/$name.sha256" >"$work/data/backups/mysql-corrupt.sql.xz.sha256"
printf 'x' >>"$work/data/backups/mysql-corrupt.sql.xz"
rc=0; dc exec -T scheduler supctl send mysql restore mysql-corrupt.sql.xz >/dev/null 2>&1 || rc=$?
verdict "restore of a corrupted dump refused: exit 65" "restore of a corrupted dump: exit $rc, want 65" test "$rc" = 65 || true

rc=0; dc exec -T scheduler supctl send mysql no-such-action >/dev/null 2>&1 || rc=$?
verdict "supctl send mysql no-such-action: exit 64" "supctl send mysql no-such-action: exit $rc, want 64" test "$rc" = 64 || true

# --- 4. Log rotation: SIGUSR1 must reach Apache through supd ------------------------
logdir=$work/data/log/web
curl -fsS -o /dev/null "http://127.0.0.1:$WEB_PORT/?before-rotate-$$"
grep -q "before-rotate-$$" "$logdir/access.log" 2>/dev/null || sleep 1
rc=0; out=$(dc exec -T scheduler supctl send web rotate-logs now 2>&1) || rc=$?
verdict "supctl send web rotate-logs now: exit 0" "supctl send web rotate-logs now: exit $rc" test "$rc" = 0 || printf '%s\n' "$out"
# Apache reopens its logs in the graceful restart that SIGUSR1 starts: poll briefly.
ok=no
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$WEB_PORT/?after-rotate-$$" || true
    if grep -q "after-rotate-$$" "$logdir/access.log" 2>/dev/null; then ok=yes; break; fi
    sleep 0.1
done
if [[ $ok == yes ]] && grep -q "before-rotate-$$" "$logdir/access.log.1" \
   && ! grep -q "after-rotate-$$" "$logdir/access.log.1"; then
    pass "access.log rotated to access.log.1; new requests land in the new access.log (USR1 reached apache)"
else
    fail "after rotate-logs, new requests are not in a fresh access.log"; ls -la "$logdir"
fi

# --- 5. No zombies anywhere after the callbacks -------------------------------------
for svc in mysql web scheduler; do
    z=$(docker exec "$(cid "$svc")" ps -eo stat=,pid=,ppid=,comm= | awk '$1 ~ /^Z/' || true)
    verdict "$svc: no zombie processes" "$svc: zombies: $z" test -z "$z" || true
done

# --- 6. The every-minute job fires on the minute boundary ---------------------------
# The first boundary after the scheduler started, plus a little slack for the callback.
due=$(( (up_epoch / 60 + 1) * 60 ))
deadline=$(( due + 20 ))
found=
while (( $(date +%s) <= deadline )); do
    found=$(dc logs --no-color scheduler 2>&1 | grep -E 'config-test' | grep -E '(code|exit)[=: "]+0([^0-9]|$)' | head -n1 || true)
    [[ -n $found ]] && break
    sleep 1
done
# How late it started, when the log says (supd logs lateness_ms=N): within 1 s.
late=$(sed -nE 's/.*lateness_ms=([0-9]+).*/\1/p' <<<"$found")
if [[ -n $found ]] && (( ${late:-0} < 1000 )); then
    pass "'* * * * *' job ran on the minute, exit code logged: ${found#*| }"
else
    fail "no on-time run of the every-minute job with its exit code in the scheduler log by $(date -u -d "@$deadline" +%H:%M:%SZ): ${found:-none}"
    dc logs --no-color --tail 30 scheduler
fi

# --- 7. docker stop: fast, documented exit codes ------------------------------------
# mysql: mariadbd shuts down cleanly on TERM and exits 0; web: apache stops on TERM and
# exits 0; scheduler: `supd scheduler` exits 0 on TERM (DESIGN.md §4).
declare -A want_code=([mysql]=0 [web]=0 [scheduler]=0)
for svc in scheduler web mysql; do
    id=$(cid "$svc")
    start=$(date +%s%N)
    docker stop -t 10 "$id" >/dev/null
    ms=$(ms_since "$start")
    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    if (( ms < 2000 )) && [[ $code == "${want_code[$svc]}" ]]; then
        pass "docker stop $svc: ${ms} ms, exit code $code"
    else
        fail "docker stop $svc: ${ms} ms (want < 2000), exit code $code (want ${want_code[$svc]})"
        docker logs --tail 10 "$id" 2>&1 | sed 's/^/      /'
    fi
done

# --- 8. down + up: the data is still there ------------------------------------------
dc down -t 10 >/dev/null 2>&1
start=$(date +%s%N)
if dc up -d >"$work/up2.log" 2>&1 && wait_healthy 180 -p "$project" -f "$work/docker-compose.yaml" --project-directory "$work"; then
    pass "down, up -d: healthy again in $(ms_since "$start") ms"
    rows_again=$(mysql_q "SELECT id, v FROM e2e.t ORDER BY id" 2>/dev/null | sha256sum | cut -c1-16)
    verdict "rows survived down/up ($rows_again)" "rows after down/up: $rows_again, want $rows_before" \
        test "$rows_again" = "$rows_before" || true
    verdict "backups survived down/up" "backup $name gone after down/up" test -f "$work/data/backups/$name" || true
    rc=0; dc exec -T scheduler supctl send mysql nightly-backup >/dev/null 2>&1 || rc=$?
    verdict "nightly-backup after restart (stale sockets in the shared /run replaced): exit 0" \
        "nightly-backup after restart: exit $rc" test "$rc" = 0 || true
else
    fail "stack not healthy after down/up"; cat "$work/up2.log"; dc logs --tail 30
fi

# --- 9. The own-jobs layout: each service runs its own jobs ------------------------
# docker-compose.own-jobs.yaml on top: no scheduler container; web's PID-1 supd runs
# web's lines of the same schedule file (the every-minute config-test above) itself,
# with its state on a volume. About a minute and a half more (up + one boundary).
cp -a docker-compose.own-jobs.yaml "$work/"
dco() { dc -f "$work/docker-compose.own-jobs.yaml" "$@"; }
dc down -t 10 >/dev/null 2>&1
start=$(date +%s%N)
if dco up -d >"$work/up3.log" 2>&1 && wait_healthy 180 -p "$project" -f "$work/docker-compose.yaml" -f "$work/docker-compose.own-jobs.yaml" --project-directory "$work"; then
    pass "own-jobs layout: up -d, healthy in $(ms_since "$start") ms"
    up_epoch=$(date +%s)
    verdict "own-jobs layout: no scheduler container" "own-jobs layout: a scheduler container runs" \
        test -z "$(dco ps -q scheduler)" || true
    due=$(( (up_epoch / 60 + 1) * 60 ))
    deadline=$(( due + 20 ))
    found=
    while (( $(date +%s) <= deadline )); do
        found=$(dco logs --no-color web 2>&1 | grep -E 'job ran.*config-test' | grep -E 'code=0([^0-9]|$)' | head -n1 || true)
        [[ -n $found ]] && break
        sleep 1
    done
    late=$(sed -nE 's/.*lateness_ms=([0-9]+).*/\1/p' <<<"$found")
    if [[ -n $found ]] && (( ${late:-0} < 1000 )); then
        pass "own-jobs layout: web ran its '* * * * *' job itself on the minute: ${found#*| }"
    else
        fail "own-jobs layout: no on-time config-test run in web's log by $(date -u -d "@$deadline" +%H:%M:%SZ): ${found:-none}"
        dco logs --no-color --tail 30 web
    fi
    # mysql has only nightly jobs: started with them, and not web's.
    started=$(dco logs --no-color mysql 2>&1 | grep 'schedule started' | head -n1 || true)
    verdict "own-jobs layout: mysql's supd runs its own 2 jobs" \
        "own-jobs layout: mysql's schedule: ${started:-none}" grep -q 'jobs=2' <<<"$started" || true
    state=$(dco exec -T web cat /var/lib/supd/schedule-web.json 2>/dev/null || true)
    verdict "own-jobs layout: web's state file on its volume records the run" \
        "own-jobs layout: web's state: ${state:-none}" grep -q '"outcome":"ok"' <<<"$state" || true
else
    fail "own-jobs layout: stack not healthy"; cat "$work/up3.log"; dco ps; dco logs --tail 30
fi

echo
if (( failures == 0 )); then
    echo "e2e ($SUPD_COMPOSE): all checks passed in $((SECONDS - t0)) s"
else
    echo "e2e ($SUPD_COMPOSE): $failures check(s) FAILED ($((SECONDS - t0)) s)"
    exit 1
fi
