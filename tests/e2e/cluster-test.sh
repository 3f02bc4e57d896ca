#!/usr/bin/env bash
# The stack on a real multi-node Docker Swarm (`make cluster`, part of `make test`).
#
# Three docker-in-docker nodes (scripts/build-node-image.sh: Debian's docker.io 20.10,
# built offline with debootstrap and kept as supd-node:bookworm) on a private, internal
# docker network form a swarm (every address is a node's own on that network); the stack
# image is loaded into each; docker-stack.yaml + docker-stack.backup.yaml (restic
# repository on node3) + docker-stack.ports.yaml + a test overlay are deployed, then:
#
#   - every service healthy, supd PID 1 in every task, web answers on each node's port
#   - a nightly-backup (by hand) reaches the restic repository on another node
#   - mysql's own schedule fires on whichever node runs it (issue 11: --schedule)
#   - web, 2 replicas: rotate-logs in both, a SLOT=1 job in slot 1 only (issue 11)
#   - drain mysql's node: the task moves; restore latest there gives the same rows;
#     the next scheduled run fires on the new node (issue 11)
#   - mysql scaled to 0 across a due time and back: exactly one catch-up run (issue 11)
#   - docker service update --force web: some replica serves web's socket all along
#   - the central `supd scheduler` on a node without mysql logs the runs as lost
#
# Everything it creates (nodes, their volumes, the network, the image tag, cgroup dirs
# /sys/fs/cgroup/*/NAME-nodeN, the temp dir) is removed on exit, failure or Ctrl-C
# included. KEEP=1 keeps it all for debugging (then remove it with the printed command).
# CLUSTER_BENCH=FILE writes the measured figures there (bench/cluster.sh).
#
# Checks that need supd --schedule (issue 11) fail with "needs --schedule (issue 11)"
# when the image's supd does not have it; everything else still runs.
set -Eeuo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/stack-lib.sh"
cd "$STACK_ROOT"

name=supdc$$
nodes=${CLUSTER_NODES:-3}
export SUPD_IMAGE=supd-stack:cluster-$$
NODE_IMAGE=${SUPD_NODE_IMAGE:-supd-node:bookworm}
stack=supd
work=$(mktemp -d "${TMPDIR:-/var/tmp}/supd-cluster.XXXXXX")
failures=0 passes=0
t0=$SECONDS
declare -A ip bench=()

pass() { printf 'PASS: %s\n' "$*"; passes=$((passes + 1)); }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
info() { printf '      %s\n' "$*"; }
needs11() { fail "$* — needs --schedule (issue 11): this supd has no --schedule"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
now_ns() { date +%s%N; }

# n N CMD...: run CMD in node N.  mgr ARGS...: docker ARGS on the manager (node1).
n() { local i=$1; shift; docker exec -i "$name-node$i" "$@"; }
mgr() { docker exec -w /srv/supd -e SUPD_IMAGE "$name-node1" docker "$@"; }
node_num() { echo "${1#node}"; }

cleanup() {
    local rc=$? i d
    trap - ERR
    if [[ ${KEEP:-0} == 1 ]]; then
        say "KEEP=1: left nodes $name-node*, network $name-net, $work; remove with:"
        say "  docker rm -f \$(docker ps -aq -f name=$name-node); docker volume rm \$(docker volume ls -q -f name=$name-); docker network rm $name-net; rmdir via find /sys/fs/cgroup/*/$name-node* -depth -type d"
        exit "$rc"
    fi
    say "cleaning up $name"
    for ((i = 1; i <= nodes; i++)); do
        docker rm -f "$name-node$i" >/dev/null 2>&1 || true
    done
    for ((i = 1; i <= nodes; i++)); do
        docker volume rm -f "$name-node$i-docker" >/dev/null 2>&1 || true
    done
    docker network rm "$name-net" >/dev/null 2>&1 || true
    docker image rm "$SUPD_IMAGE" >/dev/null 2>&1 || true
    # The inner engines' containers lived in cgroups below /NAME-nodeN of the host's
    # hierarchies (--cgroup-parent): empty now that the nodes are gone, removed leaf first.
    for _ in 1 2 3 4 5; do
        local left=0
        for d in /sys/fs/cgroup/*/"$name"-node*; do
            [[ -d $d ]] || continue
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d $d ]] && left=1
        done
        ((left == 0)) && break
        sleep 1
    done
    for d in /sys/fs/cgroup/*/"$name"-node*; do
        [[ -d $d ]] && say "WARNING: could not remove cgroup dir $d"
    done
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'fail "unexpected error at line $LINENO: $BASH_COMMAND"' ERR

# --- helpers over the swarm ---------------------------------------------------------
# task_line SVC [SLOT]: "NODE TASKID" of the running task of stack service SVC (slot SLOT).
task_line() {
    local svc=$1 slot=${2:-} line
    while read -r line; do
        set -- $line   # NAME NODE ID STATE
        [[ $4 == Running ]] || continue
        [[ -z $slot || $1 == "${stack}_$svc.$slot" ]] || continue
        echo "$2 $3"; return 0
    done < <(mgr service ps --no-trunc -f desired-state=running \
                 --format '{{.Name}} {{.Node}} {{.ID}} {{.CurrentState}}' "${stack}_$svc" 2>/dev/null \
             | awk '{print $1, $2, $3, $4}')
    return 1
}
# task_node SVC [SLOT]: the node running it (node1..).
task_node() { local l; l=$(task_line "$@") || return 1; echo "${l%% *}"; }
# sx SVC[/SLOT] CMD...: run CMD in the service's running task container.
sx() {
    local svc=${1%%/*} slot='' l node id cid
    [[ $1 == */* ]] && slot=${1#*/}
    shift
    l=$(task_line "$svc" "$slot") || { echo "no running task of $svc${slot:+.$slot}" >&2; return 69; }
    node=${l%% *} id=${l#* }
    cid=$(n "$(node_num "$node")" docker ps -q -f "label=com.docker.swarm.task.id=$id")
    [[ -n $cid ]] || { echo "no container of task $id on $node" >&2; return 69; }
    n "$(node_num "$node")" docker exec -i "$cid" "$@"
}
# wait_stack TIMEOUT: until every service of the stack has all its replicas running
# (Swarm counts a task with a healthcheck as running once it is healthy).
wait_stack() {
    local timeout=$1 deadline=$((SECONDS + $1)) line pending
    while :; do
        pending=
        while read -r line; do
            set -- $line
            local have=${2%%/*} want=${2#*/}
            [[ $have == "$want" ]] || pending+=" $1($2)"
        done < <(mgr service ls --format '{{.Name}} {{.Replicas}}' 2>/dev/null | sed 's/ (.*//')
        [[ -z $pending ]] && return 0
        if ((SECONDS >= deadline)); then
            say "not all running after $timeout s:$pending"
            mgr service ps --no-trunc "${stack}_mysql" "${stack}_web" "${stack}_backup-repo" "${stack}_scheduler" 2>&1 | head -n 30 >&2 || true
            return 1
        fi
        sleep 1
    done
}
# svc_logs SVC: the service's logs from every node, each line prefixed NAME.SLOT.ID@NODE.
svc_logs() { mgr service logs --no-trunc --raw=false "${stack}_$1" 2>&1 || true; }
# runs SVC ACTION: the log lines of scheduled runs of ACTION that ended with code 0.
# (The in-process schedule logs DESIGN §4's one line a run: `job ran ... code=0` or
# `outcome=ok`; both are accepted.)
runs_ok() {
    svc_logs "$1" | grep -E "action=$2( |$)" | grep -E 'job ran|outcome=ok' \
        | grep -E '(code=0|outcome=ok)( |$)' || true
}
# wait_for TIMEOUT CMD...: until CMD succeeds (every second).
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do ((SECONDS < deadline)) || return 1; sleep 1; done
}
# seconds_to_next_minute: how long until the next minute boundary.
seconds_to_next_minute() { echo $((60 - $(date +%s) % 60)); }
mysql_q() { sx mysql mariadb -N -B -e "$1"; }
rows_hash() { mysql_q "SELECT id, v FROM e2e.t ORDER BY id" | sha256sum | cut -c1-16; }

# --- 1. images: supd binary, stack image, node image --------------------------------
say "cluster $name ($nodes nodes), dir $work"
start=$(now_ns)
if build_supd && build_images && "$STACK_ROOT/scripts/build-node-image.sh" "$NODE_IMAGE"; then
    pass "images built: $SUPD_IMAGE, node image $NODE_IMAGE ($(ms_since "$start") ms)"
else
    fail "building the images"; exit 1
fi
has_schedule=no
help=$(docker run --rm --network none --entrypoint /usr/sbin/supd "$SUPD_IMAGE" --help 2>&1 || true)
if grep -q -- '--schedule' <<<"$help"; then
    has_schedule=yes
fi
info "supd in the image has --schedule (issue 11): $has_schedule"

# The deployed tree: the stack files, personality dirs, a test schedule, fresh secrets.
tree=$work/stack
mkdir -p "$tree/secrets"
cp -a docker-stack.yaml docker-stack.backup.yaml docker-stack.ports.yaml target-sbin service "$tree/"
( umask 077
  head -c 32 /dev/urandom | base64 >"$tree/secrets/restic-password"
  printf 'supd:%s\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$tree/secrets/restic-http" )
cat >"$tree/service/scheduler/conf/schedule.cron" <<'CRON'
# cluster-test: the stack-wide schedule every supd reads (its own service's lines only).
*  *  *  *  *  mysql  mysql  nightly-backup
*  *  *  *  *         web    rotate-logs
SLOT=1
*  *  *  *  *         web    config-test
SLOT=*
CRON
# The central scheduler's own file: jobs for mysql, which never runs on its node.
cat >"$tree/service/scheduler/conf/central.cron" <<'CRON'
*  *  *  *  *  mysql  rotate-logs
CRON
cat >"$tree/docker-stack.test.yaml" <<'YAML'
version: "3.8"
services:
  web:
    deploy:
      replicas: 2
  scheduler:
    # By environment: an overlay's command would be appended to the base's.
    environment:
      SUPD_SCHEDULE: /usr/local/conf/central.cron
      SUPD_RETRY_FOR: 15s
    deploy:
      replicas: 1
      placement:
        constraints: ["node.labels.supd.backup-repo == true"]
YAML

# --- 2. nodes, swarm ----------------------------------------------------------------
start=$(now_ns)
docker network create --internal "$name-net" >/dev/null
for ((i = 1; i <= nodes; i++)); do
    docker run -d --name "$name-node$i" --hostname "node$i" --network "$name-net" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --device-cgroup-rule='a *:* rwm' \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v "$name-node$i-docker:/var/lib/docker" \
        "$NODE_IMAGE" dockerd --cgroup-parent="/$name-node$i" >/dev/null
done
for ((i = 1; i <= nodes; i++)); do
    wait_for 30 n "$i" docker info >/dev/null 2>&1 || { fail "node$i: dockerd not ready in 30 s"; docker logs --tail 20 "$name-node$i"; exit 1; }
    n "$i" mkdir -p /srv/supd
    ip[$i]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$name-net\").IPAddress}}" "$name-node$i")
done
pass "$nodes nodes up, inner dockerd ready in $(ms_since "$start") ms ($(for ((i = 1; i <= nodes; i++)); do printf 'node%s=%s ' "$i" "${ip[$i]}"; done))"

# Every address is the node's own on the private network, never 0.0.0.0.
n 1 docker swarm init --advertise-addr "${ip[1]}" --listen-addr "${ip[1]}:2377" >/dev/null
token=$(n 1 docker swarm join-token -q worker)
for ((i = 2; i <= nodes; i++)); do
    n "$i" docker swarm join --token "$token" --advertise-addr "${ip[$i]}" \
        --listen-addr "${ip[$i]}:2377" "${ip[1]}:2377" >/dev/null
done
mgr node update --label-add supd.backup-repo=true "node$nodes" >/dev/null
count=$(mgr node ls --format '{{.Hostname}} {{.Status}}' | grep -c ' Ready$' || true)
if [[ $count == "$nodes" ]]; then
    pass "swarm of $nodes nodes, manager node1 on ${ip[1]}:2377; node$nodes labelled supd.backup-repo=true"
else
    fail "swarm: $count of $nodes nodes ready"; mgr node ls; exit 1
fi

# The image into every node (in parallel), the stack tree at the same path on each,
# and the static supd for node-side supctl (tests only).
start=$(now_ns)
docker save "$SUPD_IMAGE" -o "$work/image.tar"
image_mb=$(( $(stat -c %s "$work/image.tar") / 1048576 ))
pids=()
for ((i = 1; i <= nodes; i++)); do
    ( n "$i" docker load -q <"$work/image.tar" >/dev/null
      tar -C "$tree" -c . | n "$i" sh -c 'mkdir -p /srv/supd && tar -C /srv/supd -x'
      docker cp -q "$STACK_ROOT/build/supd" "$name-node$i:/usr/local/bin/supd" ) &
    pids+=($!)
done
ok=yes; for p in "${pids[@]}"; do wait "$p" || ok=no; done
rm -f "$work/image.tar"
verdict_ok() { if [[ $1 == yes ]]; then pass "$2"; else fail "$3"; fi; }
verdict_ok $ok "image ($image_mb MB) loaded on $nodes nodes, tree at /srv/supd on each ($(ms_since "$start") ms)" \
    "loading the image or the tree into the nodes"
[[ $ok == yes ]] || exit 1

# --- 3. deploy, healthy -------------------------------------------------------------
start=$(now_ns)
if ! mgr stack deploy --resolve-image never -c docker-stack.yaml -c docker-stack.backup.yaml \
        -c docker-stack.ports.yaml -c docker-stack.test.yaml "$stack" >"$work/deploy.log" 2>&1; then
    fail "docker stack deploy"; cat "$work/deploy.log"; exit 1
fi
if wait_stack 240; then
    bench[deploy_ms]=$(ms_since "$start")
    pass "docker stack deploy -> every service running and healthy in ${bench[deploy_ms]} ms: $(mgr service ls --format '{{.Name}}={{.Replicas}}' | tr '\n' ' ')"
else
    fail "stack not healthy"; for s in mysql web backup-repo scheduler; do svc_logs "$s" | tail -n 15; done; exit 1
fi
bench[disk_mb]=$(du -smc /var/lib/docker/volumes/"$name"-node*-docker 2>/dev/null | tail -n1 | cut -f1)
info "disk used by the nodes' engines: ${bench[disk_mb]} MB"

for s in mysql web/1 web/2 backup-repo scheduler; do
    comm=$(sx "$s" cat /proc/1/comm 2>&1 || true)
    if [[ $comm == supd ]]; then pass "$s on $(task_node "${s%%/*}" "$( [[ $s == */* ]] && echo "${s#*/}")"): PID 1 is supd"
    else fail "$s: PID 1 is '$comm', not supd"; fi
done
web1=$(task_node web 1) web2=$(task_node web 2)
if [[ -n $web1 && -n $web2 && $web1 != "$web2" ]]; then
    pass "web: 2 replicas on different nodes (slot 1 on $web1, slot 2 on $web2)"
else
    fail "web replicas: slot 1 on '$web1', slot 2 on '$web2'"
fi
ok=yes
for nd in "$web1" "$web2"; do
    [[ -n $nd ]] || continue
    curl -fsS -m 5 -o /dev/null "http://${ip[$(node_num "$nd")]}:8080/" || ok=no
done
verdict_ok $ok "web answers on the host-mode port 8080 of $web1 and $web2" "web not answering on a node's port 8080"

# --- 4. backup leaves the node --------------------------------------------------------
mysql_node=$(task_node mysql) repo_node=$(task_node backup-repo)
info "mysql on $mysql_node, backup-repo on $repo_node"
mysql_q "CREATE DATABASE e2e; CREATE TABLE e2e.t (id INT PRIMARY KEY, v VARCHAR(255) NOT NULL);
         INSERT INTO e2e.t SELECT seq, CONCAT(SHA2(seq, 256), '-', MD5(seq), '-', seq * 7919 % 100003) FROM e2e.seq_1_to_${CLUSTER_ROWS:-20000};"
rows_before=$(rows_hash)
info "${CLUSTER_ROWS:-20000} rows, content hash $rows_before"
# (75: the scheduled every-minute run is busy with it; try again.)
for _ in 1 2 3 4; do
    rc=0; out=$(sx mysql supctl send mysql nightly-backup 2>"$work/backup.err") || rc=$?
    [[ $rc == 75 ]] || break
    sleep 10
done
backed_epoch=$(date +%s)
dump=$(sed -n 's|^\(/backups/mysql-.*\.sql\.xz\)$|\1|p' <<<"$out" | tail -n1)
snap=$(sed -n 's/^snapshot \([0-9a-f]*\)$/\1/p' <<<"$out" | tail -n1)
if [[ $rc == 0 && -n $dump && -n $snap ]]; then
    pass "supctl send mysql nightly-backup on $mysql_node: $dump, restic snapshot ${snap:0:8}"
else
    fail "nightly-backup with restic push: exit $rc, stdout '$out'"; cat "$work/backup.err"
fi
dump_bytes=$(sx mysql stat -c %s "$dump" 2>/dev/null || echo 0)
bench[dump_bytes]=$dump_bytes
bench[dump_ms]=$(sed -nE 's/.*backup done: .* in ([0-9]+) ms.*/\1/p' "$work/backup.err" | tail -n1)
bench[push_ms]=$(sed -nE 's/.*pushed .* in ([0-9]+) ms.*/\1/p' "$work/backup.err" | tail -n1)
printf '%s\n' "$out" >>"$work/backup.err"
if grep -qF -- "$(cat "$tree/secrets/restic-password")" "$work/backup.err" \
   || grep -qF -- "$(cut -d: -f2- "$tree/secrets/restic-http")" "$work/backup.err"; then
    fail "a password appears in the callback's output"
else
    pass "neither the repository key nor the HTTP password appears in the callback's output"
fi
# In the repository, on the other node: the snapshot file and the data packs.
nsnaps=$(sx backup-repo sh -c 'ls /srv/restic/mysql/snapshots | wc -l' 2>/dev/null || echo 0)
if [[ $repo_node != "$mysql_node" && $nsnaps -ge 1 ]] \
   && sx backup-repo ls /srv/restic/mysql/snapshots | grep -q "^$snap"; then
    pass "snapshot ${snap:0:8} is in the repository on $repo_node ($nsnaps snapshot(s), $(sx backup-repo du -sh /srv/restic/mysql | cut -f1)), not on mysql's $mysql_node"
else
    fail "snapshot ${snap:0:8} not found in the repository on $repo_node (mysql on $mysql_node, $nsnaps snapshots)"
fi
# The REST server got its user and password through its environment, not its argv.
rargs=$(sx backup-repo ps -eo args 2>/dev/null | grep '[r]clone serve' || true)
if [[ -n $rargs ]] && ! grep -qF -- "$(cut -d: -f2- "$tree/secrets/restic-http")" <<<"$rargs" \
   && ! grep -qE -- '--(pass|user|htpasswd)' <<<"$rargs"; then
    pass "rclone serve restic on $repo_node has no credentials on its command line: ${rargs:0:60}..."
else
    fail "rclone's command line: '${rargs:-not running}'"
fi

# --- 5. the services' own schedules (issue 11) ---------------------------------------
if [[ $has_schedule == yes ]]; then
    # The first minute boundary after the manual backup (the same rows; not busy with it).
    due=$(( (backed_epoch / 60 + 1) * 60 ))
    due_text=$(date -u -d "@$due" +%Y-%m-%dT%H:%M)
    sched_run() { [[ -n $(runs_ok mysql nightly-backup | grep "@$mysql_node" | grep "due=$due_text" || true) ]]; }
    sleep $(( due + 5 - $(date +%s) > 0 ? due + 5 - $(date +%s) : 0 ))
    if wait_for 40 sched_run; then
        l=$(runs_ok mysql nightly-backup | grep "@$mysql_node" | grep "due=$due_text" | head -n1)
        pass "mysql's nightly-backup ran by its own schedule on $mysql_node (no scheduler container): ${l##*| }"
        # Its dump (with the rows) went to the repository too: a second snapshot of this host.
        hosts=$(sx mysql supctl send mysql backups 2>/dev/null | grep -c "mysql\.$mysql_node" || true)
        nsnaps=$(sx backup-repo ls /srv/restic/mysql/snapshots 2>/dev/null | wc -l)
        if (( hosts >= 2 )); then
            pass "the scheduled run's dump reached the repository on $repo_node too ($hosts snapshots from mysql.$mysql_node, $nsnaps in all)"
        else
            fail "repository on $repo_node: $hosts snapshots from mysql.$mysql_node after the scheduled run, want >= 2"
        fi
    else
        fail "no scheduled nightly-backup due $due_text on $mysql_node"; svc_logs mysql | tail -n 20
    fi
    w1=$(runs_ok web rotate-logs | grep -c "${stack}_web\.1\." || true)
    w2=$(runs_ok web rotate-logs | grep -c "${stack}_web\.2\." || true)
    ((w1 >= 1 && w2 >= 1)) && pass "web: rotate-logs ran in both replicas (slot 1: $w1, slot 2: $w2 runs)" \
                           || fail "web rotate-logs runs: slot 1 $w1, slot 2 $w2 (want >= 1 each)"
    c1=$(svc_logs web | grep -E 'action=config-test' | grep -c "${stack}_web\.1\." || true)
    c2=$(svc_logs web | grep -E 'action=config-test' | grep -c "${stack}_web\.2\." || true)
    ((c1 >= 1 && c2 == 0)) && pass "web: the SLOT=1 job config-test ran in slot 1 only ($c1 run(s); slot 2: none)" \
                           || fail "SLOT=1 config-test: slot 1 $c1 lines, slot 2 $c2 lines (want >= 1 and 0)"
else
    needs11 "mysql's nightly-backup by its own schedule on the node that runs it"
    needs11 "web: rotate-logs in both replicas"
    needs11 "web: a SLOT=1 job in slot 1 only"
fi

# --- 6. drain mysql's node ------------------------------------------------------------
start=$(now_ns)
drain_epoch=$(date +%s)
mgr node update --availability drain "$mysql_node" >/dev/null
moved=
moved_on() { moved=$(task_node mysql) && [[ $moved != "$mysql_node" ]] && wait_stack 1 >/dev/null 2>&1; }
if wait_for 180 moved_on; then
    bench[drain_healthy_ms]=$(ms_since "$start")
    pass "drained $mysql_node: mysql moved to $moved and is healthy in ${bench[drain_healthy_ms]} ms"
else
    fail "after draining $mysql_node, mysql not healthy elsewhere (on '${moved:-none}')"
    mgr service ps "${stack}_mysql" | head; exit 1
fi
# Its volumes stayed behind: an empty datadir here. Restore from the repository.
if mysql_q "SELECT COUNT(*) FROM e2e.t" >/dev/null 2>&1; then
    info "(unexpected: e2e.t exists on the new node before the restore)"
fi
rc=0; out=$(sx mysql supctl send mysql restore latest 2>"$work/restore.err") || rc=$?
rows_after=$(rows_hash 2>/dev/null || echo none)
bench[fetch_ms]=$(sed -nE 's/.*fetched .* in ([0-9]+) ms.*/\1/p' "$work/restore.err" | tail -n1)
bench[restore_ms]=$(sed -nE 's/.*restored .* in ([0-9]+) ms.*/\1/p' "$work/restore.err" | tail -n1)
if [[ $rc == 0 && $rows_after == "$rows_before" ]]; then
    pass "supctl send mysql restore latest on $moved: the same rows as backed up on $mysql_node ($rows_after)"
else
    fail "restore latest on $moved: exit $rc, rows $rows_after, want $rows_before"; tail -n 20 "$work/restore.err"
fi
if [[ $has_schedule == yes ]]; then
    first_on_new() { [[ -n $(runs_ok mysql nightly-backup | grep "@$moved" || true) ]]; }
    if wait_for 100 first_on_new; then
        # The log line's due time is when the run was due; measured here: drain -> seen.
        bench[drain_run_s]=$(( $(date +%s) - drain_epoch ))
        fresh_run=yes
        pass "the next scheduled nightly-backup fired on $moved (${bench[drain_run_s]} s after the drain)"
    else
        fail "no scheduled nightly-backup on $moved within 100 s of the drain"; svc_logs mysql | tail -n 20
    fi
else
    needs11 "after the drain, the next scheduled run fires on the new node"
fi

# --- 7+8. scale mysql to 0 across a due time (issue 11) while web rolls ----------------
# mysql: just after a run on its node (its state volume there holds that due time), scale
# to 0; back to 1 once a due time has passed unattended: exactly one catch-up run. The
# rolling update of web runs in that window (it takes a minute by itself).
if [[ $has_schedule == yes ]]; then
    now_node=$(task_node mysql)
    # A run that has just ended here (its state is written): stop now, else after the next.
    [[ ${fresh_run:-no} == yes ]] || sleep $(( $(seconds_to_next_minute) + 25 ))
    sleep 2
    mgr service scale "${stack}_mysql=0" >/dev/null 2>&1
    scaled_down=$(date +%s)
    wait_for 30 sh -c "! docker exec $name-node1 docker service ps -f desired-state=running -q ${stack}_mysql | grep -q ."
fi

# Node-side supctl polls each node's shared /run volume (where web's socket lives) while
# `docker service update --force` replaces the replicas one by one (stop-first).
poll=$work/poll.txt
: >"$poll"
touch "$work/polling"
( while [[ -e $work/polling ]]; do
      up=
      for ((i = 1; i <= nodes; i++)); do
          n "$i" supd ctl --socket-dir "/var/lib/docker/volumes/${stack}_run/_data" ping web >/dev/null 2>&1 && up+=" node$i"
      done
      echo "$(date +%s%3N)${up:- NONE}" >>"$poll"
      sleep 0.2
  done ) </dev/null &
poller=$!
start=$(now_ns)
rc=0; mgr service update --force --detach=false "${stack}_web" >"$work/update.log" 2>&1 || rc=$?
update_ms=$(ms_since "$start")
sleep 1; rm -f "$work/polling"; wait "$poller" || true
samples=$(wc -l <"$poll"); down=$(grep -c ' NONE$' "$poll" || true)
if [[ $rc == 0 && $samples -ge 5 && $down == 0 ]]; then
    pass "docker service update --force web ($update_ms ms): a replica served web's socket in all $samples samples"
else
    fail "rolling update: exit $rc, $down of $samples samples with no web socket answering"; tail -n 5 "$work/update.log"
fi

if [[ $has_schedule == yes ]]; then
    # At least one due time while mysql was gone.
    if (( $(date +%s) / 60 == scaled_down / 60 )); then sleep $(( $(seconds_to_next_minute) + 3 )); fi
    mgr service scale "${stack}_mysql=1" >/dev/null 2>&1
    wait_stack 120 || true
    sleep 5
    back=$(task_node mysql || echo none)
    task=$(task_line mysql | cut -d' ' -f2)
    cu_lines=$(svc_logs mysql | grep -F "${task:0:12}" | grep -E ': catch-up ' | grep 'action=nightly-backup' || true)
    cu=$(grep -c . <<<"$cu_lines" || true)
    if [[ $back == "$now_node" && $cu == 1 ]]; then
        pass "mysql scaled to 0 across a due time and back (on $back, its state volume there): exactly one catch-up run: ${cu_lines##*| }"
    else
        fail "scale 0 -> 1 on $back (was $now_node): $cu catch-up lines for nightly-backup, want 1: ${cu_lines:-none}"
        svc_logs mysql | grep -F "${task:0:12}" | grep -E 'catch-up|state|job ' | tail -n 10
    fi
    info "(the state volume is local to a node: a task that comes back elsewhere has no state and no catch-up; docs/cluster.md)"
else
    needs11 "scale to 0 across a due time and back: exactly one catch-up run"
fi
wait_stack 60 >/dev/null || fail "stack not all running again after the update and the scaling"

# --- 9. the central scheduler across nodes --------------------------------------------
sched_node=$(task_node scheduler || echo none)
lost_line() { svc_logs scheduler | grep -E 'job lost' | grep 'service=mysql' | head -n1 || true; }
lost_ok() { [[ -n $(lost_line) ]]; }
if wait_for $(( 60 + 20 )) lost_ok; then
    l=$(lost_line)
    pass "central supd scheduler on $sched_node (mysql elsewhere) logs the run as lost: ${l##*| }"
else
    fail "no 'job lost' for mysql in the central scheduler's log on $sched_node"; svc_logs scheduler | tail -n 10
fi

# --- figures ---------------------------------------------------------------------------
mbps() { [[ -n ${1:-} && -n ${2:-} && $2 -gt 0 ]] && awk -v b="$1" -v ms="$2" 'BEGIN{printf "%.1f", b / 1048576 / (ms / 1000)}' || echo "?"; }
info "figures: deploy->healthy ${bench[deploy_ms]:-?} ms; drain->healthy ${bench[drain_healthy_ms]:-?} ms; drain->first run ${bench[drain_run_s]:-n/a} s"
info "dump ${bench[dump_bytes]:-?} bytes: local dump ${bench[dump_ms]:-?} ms, push $(mbps "${bench[dump_bytes]:-}" "${bench[push_ms]:-}") MB/s (${bench[push_ms]:-?} ms), fetch $(mbps "${bench[dump_bytes]:-}" "${bench[fetch_ms]:-}") MB/s (${bench[fetch_ms]:-?} ms), restore incl. fetch ${bench[restore_ms]:-?} ms"
if [[ -n ${CLUSTER_BENCH:-} ]]; then
    for k in "${!bench[@]}"; do echo "$k=${bench[$k]}"; done >"$CLUSTER_BENCH"
    echo "rows=${CLUSTER_ROWS:-20000}" >>"$CLUSTER_BENCH"
    echo "image_mb=$image_mb" >>"$CLUSTER_BENCH"
    echo "has_schedule=$has_schedule" >>"$CLUSTER_BENCH"
fi

echo
echo "cluster test: $((SECONDS - t0)) s, $nodes nodes"
echo "cluster: $passes passed, $failures failed"
(( failures == 0 )) || exit 1
