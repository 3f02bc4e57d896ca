#!/usr/bin/env bash
# `make down`: stop and remove the stack's containers and network. data/ is kept.
set -euo pipefail
# shellcheck source=scripts/stack-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack-lib.sh"
cd "$STACK_ROOT"
compose down --remove-orphans
