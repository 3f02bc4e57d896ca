#!/usr/bin/env bash
# Run every benchmark in one go; each script writes its own section of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for part in init control scheduler docker-stop cluster; do
    if [ -x "bench/$part.sh" ]; then
        echo "== bench/$part.sh" >&2
        "bench/$part.sh"
    fi
done
