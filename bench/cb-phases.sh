#!/usr/bin/env bash
# bench/cb-phases.sh: where the time of a no-op callback through `supctl send` goes,
# phase by phase, next to the same callback run as `bash -c 'source lib; source cb;
# CB_noop root'` (bench/lean.sh's callback rows).
#
#   bench/cb-phases.sh              # build the release supd, N=60 pairs, print the table
#   N=200 SUPD=/path/supd bench/cb-phases.sh
#
# Kernel tracepoints (ftrace: sched_process_{fork,exec,exit} and a few syscalls), not
# strace: ptrace stops every syscall and makes the 64 rt_sigaction calls of the child's
# clean-slate reset look like milliseconds. The two commands alternate, N times each;
# every row is the median over the N runs of the gap between two events. Then, with
# hyperfine, the same commands' wall medians (as in bench/lean.sh), and
# bench/fork-vs-vfork.c: what the spawn would cost with clone(CLONE_VM|CLONE_VFORK).
# Needs root, tracefs (mounted at /sys/kernel/tracing if it is not), python3, gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-60}
MUSL=x86_64-unknown-linux-musl
if [ -z "${SUPD:-}" ]; then
    cargo build --release --target "$MUSL" >&2
    SUPD=$PWD/target/$MUSL/release/supd
fi
T=/sys/kernel/tracing
[ -e $T/trace ] || mount -t tracefs nodev $T
LIB=$PWD/target-sbin/callbacks-lib.sh
work=$(mktemp -d /tmp/supd-cb-phases.XXXXXX)
supd_pid=
cleanup() {
    echo 0 >$T/tracing_on; echo 0 >$T/events/enable; echo >$T/trace
    [ -n "$supd_pid" ] && kill -TERM "$supd_pid" 2>/dev/null && wait "$supd_pid" || true
    rm -rf "$work"
}
trap cleanup EXIT
printf 'CB_noop() { :; }\n' >"$work/callbacks.sh"
mkdir -p "$work/run"
ln -s "$SUPD" "$work/supctl"
export SERVICE=bench
"$SUPD" -q --service bench --socket-dir "$work/run" --callbacks "$work/callbacks.sh" \
    --callback-lib "$LIB" -- sleep infinity &
supd_pid=$!
for _ in $(seq 200); do [ -S "$work/run/bench-request.sock" ] && break; sleep 0.01; done
for _ in $(seq 10); do "$work/supctl" --socket-dir "$work/run" send bench noop >/dev/null; done

echo 0 >$T/tracing_on; echo >$T/trace; echo mono >$T/trace_clock; echo 32768 >$T/buffer_size_kb
for e in sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit \
    syscalls/sys_enter_connect syscalls/sys_exit_accept4 syscalls/sys_enter_sendto \
    syscalls/sys_exit_recvfrom syscalls/sys_exit_wait4 syscalls/sys_enter_execve \
    syscalls/sys_enter_fork syscalls/sys_exit_fork \
    syscalls/sys_enter_clone syscalls/sys_exit_clone; do
    echo 1 >$T/events/$e/enable
done
echo 1 >$T/tracing_on
for _ in $(seq "$N"); do
    echo "MARK direct" >$T/trace_marker
    bash -c "source $LIB; source $work/callbacks.sh; CB_noop root" >/dev/null 2>&1
    echo "MARK via" >$T/trace_marker
    "$work/supctl" --socket-dir "$work/run" send bench noop >/dev/null 2>&1
    echo "MARK end" >$T/trace_marker
    sleep 0.02
done
echo 0 >$T/tracing_on
cat $T/trace >"$work/trace.txt"

# supd's threads (the request server runs on its own): trace events carry thread ids.
python3 - "$work/trace.txt" $(ls /proc/$supd_pid/task) <<'PY'
import re, statistics, sys
line_re = re.compile(r'^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+):? ?(.*)$')
supd_threads = {int(tid) for tid in sys.argv[2:]}
runs, cur = [], None
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m:
        continue
    pid, t, ev, rest = int(m[2]), float(m[3]) * 1e6, m[4], m[5]
    if ev == 'tracing_mark_write':
        kind = rest.split()[1]
        cur = None if kind == 'end' else {'kind': kind, 'ev': []}
        if cur:
            runs.append(cur)
        continue
    if cur is not None:
        cur['ev'].append((t, pid, ev, rest))

def at(evs, pred, after=0.0):
    return next((e[0] for e in evs if e[0] >= after and pred(e)), None)

def child_of(rest):
    return int(re.search(r'child_pid=(\d+)', rest)[1])

phases = {'direct': [], 'via': []}
for run in runs:
    evs, p = run['ev'], {}
    fork = next((e for e in evs if e[2] == 'sched_process_fork'), None)
    if not fork:
        continue
    client = child_of(fork[3])
    p['fork'] = fork[0]
    p['exec'] = at(evs, lambda e: e[1] == client and e[2] == 'sched_process_exec')
    p['exit'] = at(evs, lambda e: e[1] == client and e[2] == 'sched_process_exit')
    p['waited'] = at(evs, lambda e: e[2] == 'sys_wait4' and e[3] == '-> 0x%x' % client)
    bash = client
    if run['kind'] == 'via':
        p['connect'] = at(evs, lambda e: e[1] == client and e[2] == 'sys_connect')
        p['accept'] = at(evs, lambda e: e[1] in supd_threads and e[2] == 'sys_accept4'
                         and not e[3].startswith('-> 0xfff'))
        p['request'] = at(evs, lambda e: e[1] in supd_threads and e[2] == 'sys_recvfrom'
                          and not e[3].startswith('-> 0xfff'), p['accept'] or 0)
        # fork(2) (std's Command with pre_exec) or clone(CLONE_VM|CLONE_VFORK) (posix_spawn:
        # the parent returns from it only once the child has exec'd).
        spawns = ('sys_fork', 'sys_clone')
        p['fork_enter'] = at(evs, lambda e: e[1] in supd_threads and e[2] in spawns and '(' in e[3])
        p['fork_exit'] = at(evs, lambda e: e[1] in supd_threads and e[2] in spawns and '->' in e[3])
        bfork = next(e for e in evs if e[1] in supd_threads and e[2] == 'sched_process_fork')
        bash = child_of(bfork[3])
        p['child'] = bfork[0]
        p['execve'] = at(evs, lambda e: e[1] == bash and e[2] == 'sys_execve')
        p['reaped'] = at(evs, lambda e: e[1] in supd_threads and e[2] == 'sys_wait4'
                         and e[3] == '-> 0x%x' % bash)
        sends = [e[0] for e in evs if e[1] in supd_threads and e[2] == 'sys_sendto']
        recvs = [e[0] for e in evs if e[1] == client and e[2] == 'sys_recvfrom']
        p['last_send'] = sends[-1] if sends else None
        p['last_recv'] = recvs[-1] if recvs else None
    p['bash_exec'] = at(evs, lambda e: e[1] == bash and e[2] == 'sched_process_exec')
    p['bash_exit'] = at(evs, lambda e: e[1] == bash and e[2] == 'sched_process_exit')
    phases[run['kind']].append(p)

def median(kind, a, b):
    gaps = [p[b] - p[a] for p in phases[kind] if p.get(a) is not None and p.get(b) is not None]
    return (statistics.median(gaps), len(gaps)) if gaps else (float('nan'), 0)

rows = [
    ('direct', 'fork', 'exec', 'runner fork -> bash exec done'),
    ('direct', 'exec', 'bash_exit', 'bash: exec -> exit (sourcing, `date`, CB_noop)'),
    ('direct', 'bash_exit', 'waited', 'bash exit -> runner wait4'),
    ('direct', 'fork', 'waited', '**total** (fork -> wait4)'),
    ('via', 'fork', 'exec', 'runner fork -> supctl exec done'),
    ('via', 'exec', 'connect', 'supctl start (exec -> connect)'),
    ('via', 'connect', 'accept', 'connect -> supd accept'),
    ('via', 'accept', 'request', 'accept -> request read'),
    ('via', 'request', 'fork_enter', 'request -> fork/clone (parse, verdict, command, pipes)'),
    ('via', 'fork_enter', 'child', 'fork/clone -> child exists'),
    ('via', 'fork_enter', 'fork_exit', 'supd in fork/clone (a vfork returns after the exec)'),
    ('via', 'child', 'execve', 'child: exists -> execve (clean slate)'),
    ('via', 'execve', 'bash_exec', 'child: execve -> bash exec done'),
    ('via', 'bash_exec', 'bash_exit', 'bash: exec -> exit (sourcing, `date`, CB_noop)'),
    ('via', 'bash_exit', 'reaped', 'bash exit -> supd wait4 (signalfd wakeup)'),
    ('via', 'reaped', 'last_send', 'reap -> `exit` event sent (pipes EOF, relay)'),
    ('via', 'last_send', 'last_recv', 'sent -> supctl read'),
    ('via', 'last_recv', 'exit', 'supctl read -> supctl exit'),
    ('via', 'exit', 'waited', 'supctl exit -> runner wait4'),
    ('via', 'fork', 'waited', '**total** (fork -> wait4)'),
]
print('| run | phase | median µs |')
print('|---|---|---|')
for kind, a, b, label in rows:
    m, n = median(kind, a, b)
    print(f'| {kind} | {label} | {m:.0f} |')
print(f'\n{len(phases["direct"])} + {len(phases["via"])} runs.')
PY

printf 'int main(void) { return 0; }\n' >"$work/true.c"
gcc -O2 -static -o "$work/true" "$work/true.c"
gcc -O2 -Wall -static -o "$work/fork-vs-vfork" bench/fork-vs-vfork.c
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 20 --runs "${RUNS:-200}" --export-json "$work/hf.json" \
        "bash -c 'source $LIB; source $work/callbacks.sh; CB_noop root'" \
        "$work/supctl --socket-dir $work/run send bench noop" \
        "$work/supctl --socket-dir $work/run ping bench" "$work/true" >/dev/null 2>&1
    printf '\n| hyperfine -N | median µs |\n|---|---|\n'
    jq -r --arg work "$work/" --arg lib "$LIB" '.results[]
        | "| `\(.command | gsub($work; "") | gsub($lib; "lib"))` | \(.median * 1e6 | floor) |"' \
        "$work/hf.json"
fi
echo
"$work/fork-vs-vfork" "$work/true"
