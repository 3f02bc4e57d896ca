#!/usr/bin/env bash
# Render deploy/ (kustomize) and validate every object against the Kubernetes schemas,
# offline: `kubectl kustomize` (Debian's kubectl) and kubernetes-validate (PyPI, schemas
# bundled). Then the layout the manifests promise: no scheduler container, every supd
# container runs its own jobs (SUPD_SCHEDULE) with its slot from the StatefulSet ordinal.
# Usage: scripts/k8s-check.sh [KUBERNETES-VERSION]   (default 1.31.0)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${1:-${K8S_VERSION:-1.31.0}}
out=$(mktemp "${TMPDIR:-/var/tmp}/supd-k8s.XXXXXX.yaml")
trap 'rm -f "$out"' EXIT
kubectl kustomize --load-restrictor LoadRestrictionsNone "$root/deploy" >"$out"
objects=$(grep -c '^kind: ' "$out")
kubernetes-validate --strict --quiet -k "$version" "$out"
echo "k8s: deploy/ renders $objects objects, all valid against Kubernetes $version (strict)"
fail=0
if grep -qE 'args: *\[?"?scheduler' "$out"; then
    echo "k8s: FAIL: a container runs the central scheduler"; fail=1
fi
containers=$(grep -cE '^ +image: registry.example.com/supd-stack' "$out")
schedules=$(grep -cE 'name: SUPD_SCHEDULE$' "$out")
slots=$(grep -cE "fieldPath: metadata.labels\['apps.kubernetes.io/pod-index'\]" "$out")
echo "k8s: $containers supd containers; $schedules with their own schedule, $slots with a slot"
# mysql and web run jobs; backup-repo has none.
(( schedules == containers - 1 && slots == schedules )) || { echo "k8s: FAIL: want every container but backup-repo with SUPD_SCHEDULE and SUPD_SLOT"; fail=1; }
if (( fail == 0 )); then echo "k8s: 1 passed, 0 failed"; else echo "k8s: 0 passed, 1 failed"; exit 1; fi
