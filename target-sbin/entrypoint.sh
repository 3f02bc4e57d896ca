#!/usr/bin/env bash
# The shared entrypoint: the "personality contract" every service container follows.
# supd (PID 1) runs this when the container has no CMD. It sources the service's
# /usr/local/bin/docker-entry-setup.sh, which sets:
#
#   SERVICE          service name (defaults to the host name, as supd does)
#   COMMAND, OPTS    what to run: exec ${SETPRIV} ${COMMAND} ${OPTS} (OPTS is word-split,
#                    as in the legacy script: no quoting inside OPTS)
#   USER, GROUP      owner of the run and log directories (default root:root)
#   USE_RUNSOCK      true: create RUNDIR (default /run/$SERVICE) owned USER:GROUP, RUNMODE
#   USE_VARLOG       true: create LOGDIR (default /var/log/$SERVICE) likewise, LOGMODE
#   RUNMODE, LOGMODE directory modes (default 0755; LOGMODE defaults to RUNMODE)
#   REUID, REGID     drop privileges before exec: setpriv --reuid --regid --init-groups
#
# Unchanged from the legacy tini + supervisor.py stack, so existing setup files work;
# RUNDIR, LOGDIR and LOGMODE are optional additions. Arguments given to this script are
# appended to OPTS.
set -eo pipefail   # no -u while sourcing: legacy setup files may read unset variables

log() { printf 'entrypoint[%s]: %s\n' "${SERVICE:-?}" "$*" >&2; }

setup=/usr/local/bin/docker-entry-setup.sh
if [[ ! -r $setup ]]; then
    log "missing $setup (is ./service/<svc>/bin mounted at /usr/local/bin?)"
    exit 78   # EX_CONFIG
fi
# shellcheck source=/dev/null
. "$setup"
set -u

SERVICE=${SERVICE:-${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}}
USER=${USER:-root}
GROUP=${GROUP:-$(id -gn "$USER" 2>/dev/null || echo root)}
RUNMODE=${RUNMODE:-0755}
LOGMODE=${LOGMODE:-$RUNMODE}
RUNDIR=${RUNDIR:-/run/$SERVICE}
LOGDIR=${LOGDIR:-/var/log/$SERVICE}
export SERVICE

if [[ -z ${COMMAND:-} ]]; then
    log "$setup did not set COMMAND"
    exit 78
fi

# /run and /var/log are bind mounts shared by all containers, so these directories may
# already exist from a previous run (or another uid mapping): always re-apply owner/mode.
if [[ ${USE_RUNSOCK:-false} == true ]]; then
    install -d -o "$USER" -g "$GROUP" -m "$RUNMODE" "$RUNDIR"
    chown "$USER:$GROUP" "$RUNDIR"; chmod "$RUNMODE" "$RUNDIR"
fi
if [[ ${USE_VARLOG:-false} == true ]]; then
    install -d -o "$USER" -g "$GROUP" -m "$LOGMODE" "$LOGDIR"
    chown "$USER:$GROUP" "$LOGDIR"; chmod "$LOGMODE" "$LOGDIR"
fi

SETPRIV=
if [[ -n ${REUID:-} || -n ${REGID:-} ]]; then
    SETPRIV="setpriv --reuid=${REUID:-$USER} --regid=${REGID:-$GROUP} --init-groups"
fi

# One line in the log even when OPTS spans several.
read -r -d '' -a argv <<<"${SETPRIV} ${COMMAND} ${OPTS:-}" || true
log "exec ${argv[*]} $*"
# exec: the service itself becomes supd's main child, so signals forwarded by supd reach
# it directly and its exit status becomes the container's.
# shellcheck disable=SC2086  # word splitting of SETPRIV/COMMAND/OPTS is the contract
exec ${SETPRIV} ${COMMAND} ${OPTS:-} "$@"
