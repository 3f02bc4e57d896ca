# shellcheck shell=bash
# Housekeeping callbacks of the mysql service. supd runs `CB_<action> USER ARG...` in a
# fresh bash after sourcing /usr/local/sbin/callbacks-lib.sh (log_*, die, rotate_logs).
#
#   supctl send mysql nightly-backup            -> prints the new dump's path
#   supctl send mysql restore FILE              -> FILE: a path or a name in /backups
#   supctl send mysql rotate-logs [now]
#
# Exit codes: 0 ok, 2 usage, 65 checksum mismatch, 66 dump not found, else the failing
# tool's status.

BACKUP_DIR=${BACKUP_DIR:-/backups}
BACKUP_KEEP_DAYS=${BACKUP_KEEP_DAYS:-14}
# Databases never dumped: the server's own. Accounts live in `mysql` and are not part
# of the nightly dump (they are created by the deployment, not by the application).
_MYSQL_SYSTEM_DBS='information_schema|performance_schema|mysql|sys'

_app_databases() {
    mariadb -N -B -e 'SHOW DATABASES' | grep -vxE "$_MYSQL_SYSTEM_DBS" || true
}

CB_nightly_backup() {
    local user=${1:-root}
    local -a dbs
    mapfile -t dbs < <(_app_databases)
    if [[ ${#dbs[@]} -eq 0 ]]; then
        log_warn "no application database to back up"
        return 0
    fi
    mkdir -p "$BACKUP_DIR"
    local name path tmp
    name=mysql-$(date -u +%Y%m%dT%H%M%SZ).sql.xz
    path=$BACKUP_DIR/$name
    # Written under a dot-name then renamed: a dump that exists under its real name is
    # complete, and its .sha256 (renamed last) proves it.
    tmp=$BACKUP_DIR/.$name.partial
    # The names are expanded now: the EXIT trap runs after this function's locals are
    # gone, and under the callbacks' nounset "$tmp" would abort the cleanup itself.
    # shellcheck disable=SC2064
    trap "rm -f -- $(printf '%q %q' "$tmp" "$tmp.sha256")" EXIT
    log_info "dumping ${dbs[*]} to $path"
    # --single-transaction: a consistent InnoDB snapshot without locking the tables.
    mariadb-dump --single-transaction --routines --events --triggers --hex-blob \
            --databases "${dbs[@]}" \
        | xz -T1 -6 >"$tmp"
    (cd "$BACKUP_DIR" && sha256sum "$(basename "$tmp")") \
        | sed "s|  .*|  $name|" >"$tmp.sha256"
    # The dump belongs to the requesting user when that user exists here (legacy).
    if id "$user" >/dev/null 2>&1; then
        chown "$user" "$tmp" "$tmp.sha256"
    fi
    chmod 0640 "$tmp" "$tmp.sha256"
    sync -- "$tmp" "$tmp.sha256"
    mv -f -- "$tmp" "$path"
    mv -f -- "$tmp.sha256" "$path.sha256"
    trap - EXIT

    # Retention: dumps older than BACKUP_KEEP_DAYS days, their checksums, and partial
    # files a killed run left behind.
    find "$BACKUP_DIR" -maxdepth 1 -type f \
        \( -name 'mysql-*.sql.xz' -o -name 'mysql-*.sql.xz.sha256' -o -name '.mysql-*.partial*' \) \
        -mtime +"$BACKUP_KEEP_DAYS" -print -delete | sed 's/^/removed old backup: /' >&2
    log_info "backup done: $(du -h "$path" | cut -f1) $(cut -c1-16 "$path.sha256")..."
    printf '%s\n' "$path"
}

# restore USER FILE: verify FILE's checksum, then load it. FILE is a name in
# BACKUP_DIR or a path inside it (nothing outside BACKUP_DIR is read: callbacks run as
# root and FILE comes from a request).
CB_restore() {
    local file=${2:-}
    [[ -n $file ]] || die 2 "usage: restore FILE (a dump in $BACKUP_DIR)"
    [[ $file == */* ]] || file=$BACKUP_DIR/$file
    local real dir
    real=$(realpath -e -- "$file" 2>/dev/null) || die 66 "no such dump: $file"
    dir=$(realpath -e -- "$BACKUP_DIR")
    [[ $real == "$dir"/* ]] || die 66 "refusing $file: not in $BACKUP_DIR"
    [[ -f $real.sha256 ]] || die 65 "no checksum file $real.sha256: refusing to restore"
    (cd "$(dirname "$real")" && sha256sum --quiet --strict -c "$(basename "$real").sha256" >&2) \
        || die 65 "checksum mismatch for $real: refusing to restore"
    log_info "restoring $real"
    xz -dc -- "$real" | mariadb
    log_info "restored $(basename "$real")"
}

# rotate-logs [now]: as /usr/local/conf/logrotate.conf says (now: at once). mariadbd
# does not reopen its logs on SIGUSR1 (it takes SIGHUP as a full reload), so ask it over
# the socket instead of signalling PID 1.
CB_rotate_logs() {
    local -a now=()
    [[ ${2:-} != now ]] || now=(--force)
    rotate_logs "${now[@]}" --reload 'mariadb-admin flush-logs'
}
