# shellcheck shell=bash
# Shared helpers for housekeeping callbacks.
#
# supd sources this file, then /usr/local/bin/docker-callbacks.sh, in a fresh bash for
# every request, and calls `CB_<action> USER ARG...`. The callback's stdout and stderr
# stream back to the client (supctl, the scheduler) and into supd's log; its exit status
# is the request's result. Convention: results (e.g. a backup's path) on stdout, log
# lines on stderr.
#
# Strict mode: errexit and pipefail, like the legacy listener.sh (set -e). No nounset,
# so legacy callbacks that read unset variables keep working; the helpers below are
# written to be safe under `set -u` for callbacks that turn it on.
set -eo pipefail

SERVICE=${SERVICE:-${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}}

_cb_log() {
    local level=$1; shift
    printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$level" "$SERVICE" "$*" >&2
}
log_info()  { _cb_log INFO "$@"; }
log_warn()  { _cb_log WARN "$@"; }
log_error() { _cb_log ERROR "$@"; }
# Legacy names (listener.sh).
logInfo()  { log_info "$@"; }
logWarn()  { log_warn "$@"; }
logError() { log_error "$@"; }

# die CODE MESSAGE: log and exit the callback with CODE (supctl exits with it too).
die() {
    local code=$1; shift
    log_error "$@"
    exit "$code"
}

# rotate_logs [--dir DIR] [--reload CMD] [LOGROTATE-DIRECTIVE...]
#
# Rotates DIR/*.log (default /var/log/$SERVICE) now, with logrotate: rotate 4, compress,
# delaycompress, missingok, notifempty, sharedscripts, and a postrotate that runs CMD
# (default `kill -USR1 $SUPD_PID`, i.e. `kill -USR1 1` in a container: supd forwards
# SIGUSR1 to the service so it reopens its logs; $SUPD_PID also works where supd is not
# PID 1, e.g. a Kubernetes pod with a shared process namespace). Each extra argument is one more logrotate directive, e.g. 'rotate 8' or
# 'create 0640 www-data adm'. The rotation is forced (-f): a request means "rotate now"
# (the schedule decides when), but empty logs are still left alone (notifempty).
rotate_logs() {
    local dir=/var/log/$SERVICE reload="kill -USR1 ${SUPD_PID:-1}"
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dir) dir=$2; shift 2 ;;
            --reload) reload=$2; shift 2 ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    local statedir=/var/lib/logrotate
    local conf state
    mkdir -p "$statedir"
    conf=$(mktemp "${TMPDIR:-/tmp}/logrotate-$SERVICE.XXXXXX")
    state=$statedir/supd-$SERVICE.state
    # One generated config a run, so the directives always match the callback's code.
    {
        printf '%s/*.log {\n' "$dir"
        printf '    %s\n' 'rotate 4' compress delaycompress missingok notifempty sharedscripts
        local d
        for d in "$@"; do printf '    %s\n' "$d"; done
        if [[ -n $reload ]]; then
            printf '    postrotate\n        %s\n    endscript\n' "$reload"
        fi
        printf '}\n'
    } >"$conf"
    local rc=0
    logrotate -f -s "$state" "$conf" || rc=$?
    rm -f -- "$conf"
    if [[ $rc -ne 0 ]]; then
        log_error "logrotate failed (status $rc) for $dir/*.log"
        return "$rc"
    fi
    log_info "rotated $dir/*.log"
}
# Legacy name (listener.sh): rotateLogs [EXTRA-DIRECTIVE...]
rotateLogs() { rotate_logs "$@"; }
