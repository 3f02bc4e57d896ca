#!/usr/bin/env bash
# `make swarm-down`: remove the stack of `make swarm-up` and wait until its containers
# are gone; leave the swarm only when swarm-up created it. Volumes are kept (as `make
# down` keeps data/); PURGE=1 removes the stack's volumes too.
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack-lib.sh"
cd "$STACK_ROOT"
stack=${SWARM_STACK:-supd}
marker=$STACK_ROOT/data/.swarm-created-by-swarm-up
if [[ $(docker info -f '{{.Swarm.LocalNodeState}}') == active ]]; then
    docker stack rm "$stack" >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
        [[ -z $(docker ps -aq -f "label=com.docker.stack.namespace=$stack") ]] && break
        sleep 1
    done
    for _ in $(seq 1 20); do
        [[ -z $(docker network ls -q -f "label=com.docker.stack.namespace=$stack") ]] && break
        sleep 1
    done
fi
if [[ ${PURGE:-0} == 1 ]]; then
    docker volume ls -q -f "label=com.docker.stack.namespace=$stack" | xargs -r docker volume rm >/dev/null
    docker volume ls -q -f "name=^$stack-web-state-" | xargs -r docker volume rm >/dev/null
fi
if [[ -e $marker ]]; then
    say "leaving the single-node swarm swarm-up created"
    docker swarm leave --force >/dev/null
    # The swarm's host bridge outlives `swarm leave`; it is ours to remove (unused now).
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    rm -f "$marker"
fi
say "stack $stack removed"
