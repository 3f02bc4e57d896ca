# shellcheck shell=bash
# Helpers shared by scripts/stack-up.sh, scripts/stack-down.sh and tests/e2e/stack-test.sh.
# Source it; it sets nothing but functions and the defaults below (and COMPOSE_FILE
# for STACK_LAYOUT=own-jobs).

STACK_ROOT=${STACK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SUPD_BASE=${SUPD_BASE:-supd-base:bookworm}
SUPD_IMAGE=${SUPD_IMAGE:-supd-stack:latest}
MUSL_TARGET=x86_64-unknown-linux-musl
export SUPD_IMAGE

# STACK_LAYOUT=own-jobs: each service runs its own jobs (docker-compose.own-jobs.yaml
# on top, no scheduler container); default "central" (the scheduler container).
# COMPOSE_FILE is read by docker-compose v1 and `docker compose` v2 alike.
case ${STACK_LAYOUT:-central} in
    central) ;;
    own-jobs) export COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.yaml:docker-compose.own-jobs.yaml} ;;
    *) printf 'STACK_LAYOUT must be central or own-jobs, not %s\n' "$STACK_LAYOUT" >&2; exit 2 ;;
esac

say() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }

# compose ARGS...: docker-compose v1 when installed (Debian's package), else `docker compose`.
# SUPD_COMPOSE=v1 or v2 picks one (tests/e2e/stack-test.sh runs under both).
compose() {
    case ${SUPD_COMPOSE:-} in
        v1) docker-compose "$@"; return ;;
        v2) docker compose "$@"; return ;;
    esac
    if command -v docker-compose >/dev/null 2>&1; then
        docker-compose "$@"
    else
        docker compose "$@"
    fi
}

# build_supd: the static musl release binary, staged as build/supd for the Dockerfile.
# SUPD_BINARY=path skips cargo and stages that file instead.
build_supd() {
    local bin
    if [[ -n ${SUPD_BINARY:-} ]]; then
        bin=$SUPD_BINARY
    else
        if ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
            say "adding rust target $MUSL_TARGET"
            rustup target add "$MUSL_TARGET"
        fi
        say "cargo build --release --target $MUSL_TARGET"
        local log
        log=$(mktemp)
        if ! (cd "$STACK_ROOT" && cargo build --release --target "$MUSL_TARGET") >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            rm -f "$log"
            say "cargo build failed"
            return 1
        fi
        rm -f "$log"
        bin=$STACK_ROOT/target/$MUSL_TARGET/release/supd
    fi
    [[ -x $bin ]] || { say "no supd binary at $bin"; return 1; }
    # A dynamically linked binary would not start in the image (different libc).
    if command -v file >/dev/null 2>&1 && ! file -L "$bin" | grep -qE 'static(ally linked|-pie linked)'; then
        say "$bin is not statically linked: $(file -L "$bin")"
        return 1
    fi
    mkdir -p "$STACK_ROOT/build"
    install -m 0755 "$bin" "$STACK_ROOT/build/supd"
}

# build_images: base (offline debootstrap, only when missing and local) and the stack image.
build_images() {
    if ! docker image inspect "$SUPD_BASE" >/dev/null 2>&1; then
        if [[ $SUPD_BASE == supd-base:* ]]; then
            "$STACK_ROOT/scripts/build-base-image.sh" "$SUPD_BASE"
        else
            say "base $SUPD_BASE will be pulled by docker build"
        fi
    fi
    say "docker build -t $SUPD_IMAGE (base $SUPD_BASE)"
    # Output only on failure (the legacy builder also warns that it is deprecated).
    local log
    log=$(mktemp)
    if ! docker build --build-arg BASE="$SUPD_BASE" -t "$SUPD_IMAGE" "$STACK_ROOT" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        say "docker build failed"
        return 1
    fi
    rm -f "$log"
}

# make_data_dirs DIR: the bind-mount sources compose would otherwise create as root dirs
# anyway, created up front so their absence never changes behaviour.
make_data_dirs() {
    mkdir -p "$1"/data/{run,log,backups,mysql}
}

# wait_healthy TIMEOUT COMPOSE-ARGS...: until every container of the project is healthy.
# Fails early when one exits, and prints which one is not healthy on timeout.
wait_healthy() {
    local timeout=$1; shift
    local deadline=$((SECONDS + timeout)) ids id state health restarts name pending
    while :; do
        mapfile -t ids < <(compose "$@" ps -q)
        pending=
        for id in "${ids[@]}"; do
            [[ -n $id ]] || continue
            read -r name state health restarts < <(docker inspect -f \
                '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$id")
            # A crash loop (restart: on-failure) never turns healthy: say so early.
            if [[ $state == exited || $state == dead ]] || ((restarts >= 3)); then
                say "${name#/} is $state after $restarts restarts (last exit $(docker inspect -f '{{.State.ExitCode}}' "$id"))"
                docker logs --tail 30 "$id" >&2 || true
                return 1
            fi
            case $state/$health in
                running/healthy | running/none) ;;
                *) pending+=" ${name#/}($state/$health)" ;;
            esac
        done
        [[ ${#ids[@]} -gt 0 && -z $pending ]] && return 0
        if ((SECONDS >= deadline)); then
            say "not healthy after ${timeout}s:$pending"
            return 1
        fi
        sleep 1
    done
}
