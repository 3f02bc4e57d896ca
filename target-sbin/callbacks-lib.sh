# shellcheck shell=bash
# Shared helpers for housekeeping callbacks.
#
# supd sources this file, then /usr/local/bin/docker-callbacks.sh, in a fresh bash for
# every request, and calls `CB_<action> USER ARG...`. The callback's stdout and stderr
# stream back to the client (supctl, the scheduler) and into supd's log; its exit status
# is the request's result. Convention: results (e.g. a backup's path) on stdout, log
# lines on stderr.
#
# The legacy listener.sh environment, which callbacks written for it rely on:
# - `set -Eeuo pipefail`: a failing command (or pipe stage) ends the callback with its
#   status, an unset variable aborts it ("VHOST: unbound variable"), and the ERR trap
#   below is inherited by functions, so the failing file, line and command are logged;
# - the working directory is the image's WORKDIR (/usr/local in the stack): supd runs
#   callbacks in its own working directory, which Docker sets to WORKDIR;
# - $DTS, the request's date-time stamp (see below).
# The helpers below are written to be safe under these options.
set -Eeuo pipefail

SERVICE=${SERVICE:-${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}}

# DTS: the date-time stamp of this request (local time, the container's $TZ), one value
# for the whole callback, for names such as "backup-$DTS.tar". A callbacks file that
# wants another format assigns DTS itself (it is sourced after this file).
DTS=$(date +%Y%m%d-%H%M%S)

# The ERR report: file:line, function and command of the failure, and its status.
_cb_on_err() {
    local status=$1 line=$2 cmd=$3
    _cb_log ERROR "${BASH_SOURCE[1]:-?}:$line: ${FUNCNAME[1]:-main}: '$cmd' failed with status $status"
}
trap '_cb_on_err $? $LINENO "$BASH_COMMAND"' ERR

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
# logError logs and ends the callback with status 1, as the legacy one did, so that
# `[[ -d $dir ]] || logError "no $dir"; rm -rf "$dir"/*` never reaches the rm.
# (log_error only logs; `die CODE MSG` logs and exits with CODE.)
logError() { log_error "$@"; exit 1; }

# die CODE MESSAGE: log and exit the callback with CODE (supctl exits with it too).
die() {
    local code=$1; shift
    log_error "$@"
    exit "$code"
}

# rotate_logs [--dir DIR] [--policy FILE] [--state FILE] [--reload CMD] [--force]
#             [LOGROTATE-DIRECTIVE...]
#
# Rotates DIR/*.log (default $LOGROTATE_DIR, else /var/log/$SERVICE) as the service's
# rotation policy says, with logrotate. The policy is a file in the service's conf dir: FILE, else
# $LOGROTATE_POLICY, else /usr/local/conf/logrotate.conf. No policy file: nothing is
# rotated and no signal is sent (the legacy listener's "no entry: no rotation").
#
# The policy holds logrotate directives, one a line (`weekly`, `rotate 14`, `maxsize 50M`,
# `su redis redis`, even a postrotate ... endscript block), '#' comments, and one line
# that only rotate_logs reads:
#     signal USR1     after a rotation, `kill -USR1 $SUPD_PID`: supd forwards it to the
#                     service's main process, which reopens its logs (`kill -USR1 1` in
#                     a container; $SUPD_PID also works where supd is not PID 1)
#     signal none     no signal (the default): e.g. redis, which has no USR1 handler
# --reload CMD runs CMD after a rotation instead (e.g. 'mariadb-admin flush-logs').
# Extra arguments are extra directives, after the policy's. logrotate decides whether a
# log is due (weekly, minsize, maxsize...), with its state in FILE (--state, else
# $LOGROTATE_STATE, else DIR/.logrotate.state: /var/log outlives the container, so
# "weekly" counts across restarts); --force rotates now whatever the policy's timing.
rotate_logs() {
    local dir=${LOGROTATE_DIR:-/var/log/$SERVICE} reload='' reload_set=false force=()
    local policy=${LOGROTATE_POLICY:-/usr/local/conf/logrotate.conf} state=${LOGROTATE_STATE:-}
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dir) dir=$2; shift 2 ;;
            --policy) policy=$2; shift 2 ;;
            --state) state=$2; shift 2 ;;
            --reload) reload=$2; reload_set=true; shift 2 ;;
            --force) force=(-f); shift ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    if [[ ! -f $policy ]]; then
        log_info "no rotation policy ($policy): $dir/*.log not rotated, no signal sent"
        return 0
    fi
    state=${state:-$dir/.logrotate.state}
    local -a directives=()
    local line word sig='' has_postrotate=false
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r word _ <<<"$line" || true
        [[ -n ${word:-} ]] || continue
        if [[ $word == signal ]]; then
            read -r _ sig _ <<<"$line" || true
            sig=${sig#SIG}
            [[ ${sig,,} != none ]] || sig=''
            if [[ -n $sig ]] && ! kill -l "$sig" >/dev/null 2>&1; then
                log_error "$policy: unknown signal '$sig'"
                return 2
            fi
            continue
        fi
        [[ $word != postrotate ]] || has_postrotate=true
        directives+=("$line")
    done <"$policy"
    $reload_set || { [[ -z $sig ]] || reload="kill -$sig ${SUPD_PID:-1}"; }
    if [[ -n $reload ]] && $has_postrotate; then
        log_error "$policy: has its own postrotate block; drop its 'signal' line (or --reload)"
        return 2
    fi
    local conf
    conf=$(mktemp "${TMPDIR:-/tmp}/logrotate-$SERVICE.XXXXXX")
    # One generated config a run, so the directives always match the policy file.
    {
        printf '%s/*.log {\n' "$dir"
        local d
        for d in "${directives[@]}" "$@"; do printf '    %s\n' "$d"; done
        if [[ -n $reload ]]; then
            printf '    postrotate\n        %s\n    endscript\n' "$reload"
        fi
        printf '}\n'
    } >"$conf"
    local rc=0
    logrotate "${force[@]}" -s "$state" "$conf" || rc=$?
    rm -f -- "$conf"
    if [[ $rc -ne 0 ]]; then
        log_error "logrotate failed (status $rc) for $dir/*.log (policy $policy)"
        return "$rc"
    fi
    log_info "$dir/*.log: rotated where $policy says it is due${reload:+ (then: $reload)}"
}
# Legacy name (listener.sh): rotateLogs [EXTRA-DIRECTIVE...]
rotateLogs() { rotate_logs "$@"; }
