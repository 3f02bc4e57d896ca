#!/usr/bin/env bash
# How long does `docker stop` take, and with which exit code, for the same image and
# workload under different PID 1s: none (the workload itself is PID 1), tini, tini -g
# (signal the whole process group) and supd? Prints a markdown table and writes it as
# the "docker stop" section of bench/RESULTS.md.
#
# Workloads:
#   sleep        `sleep infinity`: dies on TERM (unless it is PID 1, which has no
#                default signal actions)
#   ignore-term  a bash entrypoint that ignores TERM (`trap "" TERM`) and runs sleep:
#                only a SIGKILL ends it, from the init's grace period or Docker's 10 s
#   apache       the stack's web personality (apache2 -DFOREGROUND via entrypoint.sh)
#
# tini is the host's static build (apt-get install tini: /usr/bin/tini-static), copied
# into a throw-away image derived from supd-stack. Not run by `make test` (it takes
# ~2 min): `make bench` or bench/docker-stop.sh. Env: REPS (3), SUPD_IMAGE.
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/stack-lib.sh"
cd "$STACK_ROOT"

reps=${REPS:-3}
bench_image=supd-bench-stop:$$
prefix=supd-bench-stop-$$
ctx=$(mktemp -d)
cleanup() {
    docker ps -aq --filter "name=^$prefix" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker image rm "$bench_image" >/dev/null 2>&1 || true
    rm -rf "$ctx"
}
trap cleanup EXIT

if [[ ! -x /usr/bin/tini-static ]]; then
    say "installing tini (for /usr/bin/tini-static)"
    apt-get install -y --no-install-recommends tini >/dev/null
fi
# The stack image, with the current binary when one was built.
if [[ -x target/$MUSL_TARGET/release/supd ]]; then
    SUPD_BINARY=${SUPD_BINARY:-target/$MUSL_TARGET/release/supd}
fi
build_supd
build_images
cp /usr/bin/tini-static "$ctx/tini"
printf 'FROM %s\nCOPY tini /usr/bin/tini\n' "$SUPD_IMAGE" >"$ctx/Dockerfile"
docker build -q -t "$bench_image" "$ctx" >/dev/null

web_mounts=(-v "$STACK_ROOT/target-sbin:/usr/local/sbin:ro"
            -v "$STACK_ROOT/service/web/bin:/usr/local/bin:ro"
            -v "$STACK_ROOT/service/web/conf:/usr/local/conf:ro"
            -v "$STACK_ROOT/service/web/htdocs:/var/www/html:ro"
            --tmpfs /run --tmpfs /var/log)

# run_one INIT WORKLOAD -> "milliseconds exit-code"
run_one() {
    local init=$1 workload=$2 name=$prefix-$RANDOM$RANDOM
    local -a ep cmd mounts=() ready
    case $workload in
        sleep)       cmd=(sleep infinity); ready=(pgrep -x sleep) ;;
        ignore-term) cmd=(bash -c 'trap "" TERM; sleep infinity'); ready=(pgrep -x sleep) ;;
        apache)      cmd=(/usr/local/sbin/entrypoint.sh); mounts=("${web_mounts[@]}" --hostname web)
                     ready=(test -s /run/web/apache2.pid) ;;
    esac
    case $init in
        none)    ep=("${cmd[0]}"); cmd=("${cmd[@]:1}") ;;
        tini)    ep=(/usr/bin/tini); cmd=(-- "${cmd[@]}") ;;
        tini-g)  ep=(/usr/bin/tini); cmd=(-g -- "${cmd[@]}") ;;
        supd)    ep=(/usr/sbin/supd); cmd=(-- "${cmd[@]}") ;;
        supd-g2) ep=(/usr/sbin/supd); cmd=(--grace 2s -- "${cmd[@]}") ;;
    esac
    docker run -d --name "$name" --network none "${mounts[@]}" \
        --entrypoint "${ep[0]}" "$bench_image" "${cmd[@]}" >/dev/null
    for _ in $(seq 1 100); do
        docker exec "$name" "${ready[@]}" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local t0 ms code
    t0=$(date +%s%N)
    docker stop -t 10 "$name" >/dev/null
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
    docker rm -f "$name" >/dev/null
    echo "$ms $code"
}

label() {
    case $1 in tini-g) echo "tini -g" ;; supd-g2) echo "supd --grace 2s" ;; *) echo "$1" ;; esac
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

table=$(mktemp)
{
    echo "| workload | PID 1 | docker stop (median of $reps) | exit code |"
    echo "|---|---|---:|---:|"
} >"$table"
for workload in sleep ignore-term apache; do
    for init in none tini tini-g supd supd-g2; do
        times=() codes=()
        for _ in $(seq 1 "$reps"); do
            read -r ms code < <(run_one "$init" "$workload")
            times+=("$ms"); codes+=("$code")
        done
        med=$(printf '%s\n' "${times[@]}" | median)
        uniq_codes=$(printf '%s\n' "${codes[@]}" | sort -u | paste -sd/)
        printf '| %s | %s | %s ms | %s |\n' "$workload" "$(label "$init")" "$med" "$uniq_codes" | tee -a "$table" >&2
    done
done

section=$(mktemp)
{
    echo "<!-- docker-stop:begin (bench/docker-stop.sh; edits here are overwritten) -->"
    echo "## docker stop"
    echo
    echo "Same image ($SUPD_IMAGE + static tini), \`docker stop -t 10\`, $(nproc) cores, $(date -u +%Y-%m-%d)."
    echo "supd's grace period is its default 8 s; Docker sends SIGKILL after 10 s. 137 = SIGKILL,"
    echo "143 = SIGTERM. A TERM-ignoring service lasts supd's grace period (8 s, or --grace),"
    echo "against Docker's full 10 s with tini, which waits for the kill from outside."
    echo
    cat "$table"
    echo "<!-- docker-stop:end -->"
} >"$section"
cat "$table"
results=bench/RESULTS.md
touch "$results"
# Replace our section in place, or append it: other bench scripts own the rest.
awk -v secfile="$section" '
    /<!-- docker-stop:begin/ { while ((getline l < secfile) > 0) print l; skip = 1; done = 1; next }
    /<!-- docker-stop:end/   { skip = 0; next }
    !skip { print }
    END { if (!done) { print ""; while ((getline l < secfile) > 0) print l } }
' "$results" >"$results.tmp" && mv "$results.tmp" "$results"
rm -f "$table" "$section"
