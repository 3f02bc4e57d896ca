#!/usr/bin/env bash
# Cluster figures (issue 12): runs tests/e2e/cluster-test.sh with CLUSTER_BENCH and writes
# the "cluster" section of bench/RESULTS.md: docker stack deploy -> healthy, drain ->
# healthy on the new node and -> first scheduled run there, and backup/restore
# throughput to the restic repository on another node next to the local dump.
# FROM=FILE formats an existing figures file instead of running the test.
set -euo pipefail
cd "$(dirname "$0")/.."
figures=${FROM:-$(mktemp)}
if [[ -z ${FROM:-} ]]; then
    CLUSTER_BENCH=$figures tests/e2e/cluster-test.sh || echo "cluster-test failed; writing what was measured" >&2
fi
declare -A f
while IFS='=' read -r k v; do [[ -n $k ]] && f[$k]=$v; done <"$figures"
mbps() { [[ -n ${1:-} && -n ${2:-} && ${2:-0} -gt 0 ]] && awk -v b="$1" -v ms="$2" 'BEGIN{printf "%.1f MB/s", b / 1048576 / (ms / 1000)}' || echo "n/a"; }
section=$(mktemp)
{
    echo "<!-- cluster:begin (bench/cluster.sh; edits here are overwritten) -->"
    echo "## Cluster (Swarm on docker-in-docker nodes)"
    echo
    echo "tests/e2e/cluster-test.sh, $(date -u +%Y-%m-%d), 3 nodes (Debian docker.io 20.10 in each) on one 2-core VM shared with other builds: the figures include that contention. Image ${f[image_mb]:-?} MB; engines' disk at peak ${f[disk_mb]:-?} MB. supd with --schedule (issue 11): ${f[has_schedule]:-?}."
    echo
    echo "| measure | value |"
    echo "|---|---:|"
    echo "| \`docker stack deploy\` -> every service healthy (4 services, 5 tasks) | ${f[deploy_ms]:-n/a} ms |"
    echo "| drain mysql's node -> mysql healthy on another node (empty datadir initialised) | ${f[drain_healthy_ms]:-n/a} ms |"
    if [[ -n ${f[drain_run_s]:-} ]]; then run="${f[drain_run_s]} s"; else run="n/a (needs --schedule, issue 11)"; fi
    echo "| drain -> first scheduled nightly-backup seen on the new node (every-minute job: includes the wait for the next minute) | $run |"
    echo "| dump: ${f[rows]:-?} rows -> ${f[dump_bytes]:-?} bytes xz, local \`mariadb-dump \| xz\` | ${f[dump_ms]:-n/a} ms |"
    echo "| push of that dump to the restic repository on another node (restic backup over HTTP) | ${f[push_ms]:-n/a} ms, $(mbps "${f[dump_bytes]:-}" "${f[push_ms]:-}") |"
    echo "| fetch from the repository on the new node (restic restore) | ${f[fetch_ms]:-n/a} ms, $(mbps "${f[dump_bytes]:-}" "${f[fetch_ms]:-}") |"
    echo "| restore latest: fetch + checksum + \`xz -d \| mariadb\` | ${f[restore_ms]:-n/a} ms |"
    echo
    echo 'MB/s are of the compressed dump. With a ~1 MB dump they are not bandwidth figures: the push is the repository'"'"'s first backup (restic init included) and each restic run pays a fixed cost (key derivation, index, lock, snapshot) of a few seconds on a busy CPU, so the push takes about as long as the local dump + xz itself; the fetch about a third of that. CLUSTER_ROWS=N sets the table size.'
    echo "<!-- cluster:end -->"
} >"$section"
cat "$section"
results=bench/RESULTS.md
touch "$results"
awk -v secfile="$section" '
    /<!-- cluster:begin/ { while ((getline l < secfile) > 0) print l; skip = 1; done = 1; next }
    /<!-- cluster:end/   { skip = 0; next }
    !skip { print }
    END { if (!done) { print ""; while ((getline l < secfile) > 0) print l } }
' "$results" >"$results.tmp" && mv "$results.tmp" "$results"
rm -f "$section"
[[ -n ${FROM:-} ]] || rm -f "$figures"
