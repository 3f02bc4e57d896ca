#!/usr/bin/env bash
# `make swarm-up`: the stack on a single-node swarm of THIS host's engine.
#   - swarm init only when this engine is in no swarm, on 127.0.0.1 only (advertise and
#     listen: never 0.0.0.0); a marker file remembers that swarm-down may leave it again
#   - the image built as for `make up`, deployed with --resolve-image never (no registry)
#   - docker-stack.yaml alone: nothing published (Swarm cannot bind 127.0.0.1), each
#     service runs its own schedule, the central scheduler at 0 replicas
# Env: SUPD_IMAGE, SWARM_STACK (default supd), UP_TIMEOUT (180).
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack-lib.sh"
cd "$STACK_ROOT"
stack=${SWARM_STACK:-supd}
marker=$STACK_ROOT/data/.swarm-created-by-swarm-up

start=$SECONDS
build_supd
build_images
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
if [[ $state == inactive ]]; then
    say "docker swarm init on 127.0.0.1 (single node)"
    docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
    mkdir -p "$(dirname "$marker")" && : >"$marker"
elif [[ $state != active ]]; then
    say "this engine's swarm state is '$state'"; exit 1
fi
say "docker stack deploy $stack"
docker stack deploy --resolve-image never -c docker-stack.yaml "$stack"
deadline=$((SECONDS + ${UP_TIMEOUT:-180}))
while :; do
    pending=$(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}' \
              | sed 's/ (.*//' | awk '{split($2, r, "/"); if (r[1] != r[2]) print $1 "(" $2 ")"}')
    [[ -z $pending ]] && break
    if ((SECONDS >= deadline)); then
        say "not running after ${UP_TIMEOUT:-180} s: $pending"
        docker stack ps --no-trunc "$stack" | head -n 20 >&2
        exit 1
    fi
    sleep 1
done
docker stack services "$stack"
say "stack $stack healthy in $((SECONDS - start)) s (supctl: docker exec \$(docker ps -q -f label=com.docker.swarm.service.name=${stack}_mysql) supctl list mysql)"
