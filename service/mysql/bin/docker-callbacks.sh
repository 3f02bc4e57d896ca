# shellcheck shell=bash
# Housekeeping callbacks of the mysql service. supd runs `CB_<action> USER ARG...` in a
# fresh bash after sourcing /usr/local/sbin/callbacks-lib.sh (log_*, die, rotate_logs).
#
#   supctl send mysql nightly-backup            -> prints the new dump's path (and, with
#                                                  a restic repository, its snapshot id)
#   supctl send mysql restore FILE              -> FILE: a path or a name in /backups
#   supctl send mysql restore latest|SNAPSHOT   -> from the restic repository (any node)
#   supctl send mysql backups                   -> the repository's snapshots
#   supctl send mysql rotate-logs [now]
#
# Exit codes: 0 ok, 2 usage, 65 checksum mismatch, 66 dump not found, 67 no restic
# repository configured, else the failing tool's status.
#
# Off-node copies (docker-stack.backup.yaml; off when BACKUP_RESTIC_REPOSITORY is unset,
# as in the single-host stack):
#   BACKUP_RESTIC_REPOSITORY             rest:http://HOST:PORT/PATH (no credentials in it)
#   BACKUP_RESTIC_HTTP_CREDENTIALS_FILE  a file holding USER:PASSWORD for the REST server
#   RESTIC_PASSWORD_FILE                 the repository's key (restic reads the file)
# The credentials go into restic's environment only (restic 0.14 takes them in the URL,
# so the URL with them is RESTIC_REPOSITORY, never an argument); what is logged is the
# URL without them.

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
    local name path tmp t0
    t0=$(_ms_now)
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
    log_info "backup done: $(du -h "$path" | cut -f1) $(cut -c1-16 "$path.sha256")... in $(_ms_since "$t0") ms"
    printf '%s\n' "$path"
    if _restic_enabled; then
        _restic_push "$path"
    fi
}

_ms_now() { date +%s%3N; }
_ms_since() { echo $(( $(_ms_now) - $1 )); }

_restic_enabled() { [[ -n ${BACKUP_RESTIC_REPOSITORY:-} ]]; }

# _urlencode STRING: percent-encode everything but unreserved characters (RFC 3986).
_urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# _restic_setup: export restic's environment from the configuration and the secret
# files. Nothing secret is printed, logged or passed as an argument.
_restic_setup() {
    _restic_enabled || die 67 "no restic repository configured (BACKUP_RESTIC_REPOSITORY)"
    local url=$BACKUP_RESTIC_REPOSITORY creds=${BACKUP_RESTIC_HTTP_CREDENTIALS_FILE:-}
    [[ -n ${RESTIC_PASSWORD_FILE:-} && -r $RESTIC_PASSWORD_FILE ]] \
        || die 67 "RESTIC_PASSWORD_FILE '${RESTIC_PASSWORD_FILE:-}' is not a readable file"
    [[ $url != *@* ]] || die 67 "BACKUP_RESTIC_REPOSITORY must not hold credentials: use BACKUP_RESTIC_HTTP_CREDENTIALS_FILE"
    RESTIC_SHOWN_REPOSITORY=$url
    if [[ -n $creds ]]; then
        [[ -r $creds ]] || die 67 "BACKUP_RESTIC_HTTP_CREDENTIALS_FILE '$creds' is not readable"
        local line user pass
        IFS= read -r line <"$creds" || true
        user=${line%%:*} pass=${line#*:}
        [[ -n $user && $line == *:* ]] || die 67 "$creds must hold USER:PASSWORD"
        case $url in
            rest:http://* | rest:https://*)
                local scheme=${url#rest:}; scheme=${scheme%%://*}
                url="rest:$scheme://$(_urlencode "$user"):$(_urlencode "$pass")@${url#rest:*://}" ;;
            *) die 67 "HTTP credentials need a rest:http(s):// repository, not $url" ;;
        esac
    fi
    export RESTIC_REPOSITORY=$url
    export RESTIC_PASSWORD_FILE
    # No cache: the container's root fs is not worth keeping one in, and a restore on a
    # new node has none anyway.
    export RESTIC_CACHE_DIR=/nonexistent
    RESTIC_OPTS=(--no-cache)
}

# _restic_push PATH: copy PATH and PATH.sha256 into the repository (creating it on
# first use), tagged supd-mysql, with this container's host name (the node) as host.
_restic_push() {
    local path=$1 t0 out id size
    _restic_setup
    t0=$(_ms_now)
    if ! restic "${RESTIC_OPTS[@]}" cat config >/dev/null 2>&1; then
        log_info "initialising restic repository $RESTIC_SHOWN_REPOSITORY"
        restic "${RESTIC_OPTS[@]}" init >&2
    fi
    out=$(restic "${RESTIC_OPTS[@]}" backup --json --tag supd-mysql --host "$(hostname)" \
              -- "$path" "$path.sha256" | grep '"message_type":"summary"' || true)
    id=$(sed -nE 's/.*"snapshot_id":"([0-9a-f]+)".*/\1/p' <<<"$out")
    [[ -n $id ]] || die 1 "restic backup to $RESTIC_SHOWN_REPOSITORY gave no snapshot"
    size=$(stat -c %s -- "$path")
    log_info "pushed $(basename "$path") ($size bytes) to $RESTIC_SHOWN_REPOSITORY as snapshot ${id:0:8} in $(_ms_since "$t0") ms"
    printf 'snapshot %s\n' "$id"
}

# backups: the repository's snapshots of the dumps (restic's table).
CB_backups() {
    _restic_setup
    restic "${RESTIC_OPTS[@]}" snapshots --tag supd-mysql
}

# _restic_fetch ID|latest: restore a snapshot's dump and its checksum into BACKUP_DIR;
# prints the dump's path.
_restic_fetch() {
    local id=$1 t0 tmp f
    _restic_setup
    t0=$(_ms_now)
    mkdir -p "$BACKUP_DIR"
    tmp=$(mktemp -d "$BACKUP_DIR/.restore.XXXXXX")
    # shellcheck disable=SC2064  # expanded now: the locals are gone when the trap runs
    trap "rm -rf -- $(printf '%q' "$tmp")" EXIT
    restic "${RESTIC_OPTS[@]}" restore "$id" --tag supd-mysql --target "$tmp" >&2 \
        || die 66 "restic restore $id from $RESTIC_SHOWN_REPOSITORY failed"
    f=$(find "$tmp" -type f -name 'mysql-*.sql.xz' | head -n1)
    [[ -n $f && -f $f.sha256 ]] || die 66 "snapshot $id holds no dump with its .sha256"
    chmod 0640 "$f" "$f.sha256"
    mv -f -- "$f.sha256" "$BACKUP_DIR/$(basename "$f").sha256.fetched"
    mv -f -- "$f" "$BACKUP_DIR/$(basename "$f")"
    mv -f -- "$BACKUP_DIR/$(basename "$f").sha256.fetched" "$BACKUP_DIR/$(basename "$f").sha256"
    rm -rf -- "$tmp"
    trap - EXIT
    log_info "fetched $(basename "$f") ($(stat -c %s "$BACKUP_DIR/$(basename "$f")") bytes) from $RESTIC_SHOWN_REPOSITORY snapshot $id in $(_ms_since "$t0") ms"
    printf '%s\n' "$BACKUP_DIR/$(basename "$f")"
}

# restore USER FILE: verify FILE's checksum, then load it. FILE is a name in
# BACKUP_DIR or a path inside it (nothing outside BACKUP_DIR is read: callbacks run as
# root and FILE comes from a request).
# restore USER latest|SNAPSHOT-ID: fetch that snapshot's dump from the restic repository
# into BACKUP_DIR first (on any node: the repository is elsewhere), then the same.
CB_restore() {
    local file=${2:-} t0
    t0=$(_ms_now)
    [[ -n $file ]] || die 2 "usage: restore FILE (a dump in $BACKUP_DIR) | latest | SNAPSHOT-ID"
    if [[ $file == latest || $file =~ ^[0-9a-f]{8,64}$ ]]; then
        file=$(_restic_fetch "$file")
    fi
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
    log_info "restored $(basename "$real") in $(_ms_since "$t0") ms"
}

# rotate-logs [now]: as /usr/local/conf/logrotate.conf says (now: at once). mariadbd
# does not reopen its logs on SIGUSR1 (it takes SIGHUP as a full reload), so ask it over
# the socket instead of signalling PID 1.
CB_rotate_logs() {
    local -a now=()
    [[ ${2:-} != now ]] || now=(--force)
    rotate_logs "${now[@]}" --reload 'mariadb-admin flush-logs'
}
