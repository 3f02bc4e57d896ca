# shellcheck shell=bash disable=SC2034  # the variables are read by entrypoint.sh
# Personality of the backup-repo container: a restic REST repository served by
# `rclone serve restic` over HTTP with basic auth (docker-stack.backup.yaml). The
# credentials come from a file (a Docker secret) into rclone's environment, never its
# command line: rclone reads --user/--pass from RCLONE_USER/RCLONE_PASS.
SERVICE=backup-repo
USER=nobody
GROUP=nogroup
USE_VARLOG=true
REUID=nobody
REGID=nogroup

repo=/srv/restic
creds=${BACKUP_REPO_HTTP_CREDENTIALS_FILE:-/run/secrets/restic-http}
if [[ ! -r $creds ]]; then
    echo "docker-entry-setup[backup-repo]: no credentials file $creds (USER:PASSWORD)" >&2
    exit 78
fi
IFS= read -r line <"$creds"
RCLONE_USER=${line%%:*}
RCLONE_PASS=${line#*:}
unset line
if [[ -z $RCLONE_USER || -z $RCLONE_PASS || $RCLONE_PASS == "$RCLONE_USER" ]]; then
    echo "docker-entry-setup[backup-repo]: $creds must hold USER:PASSWORD" >&2
    exit 78
fi
export RCLONE_USER RCLONE_PASS
install -d -o nobody -g nogroup -m 0700 "$repo"
chown nobody:nogroup "$repo"

COMMAND=/usr/bin/rclone
# --append-only: a client (a compromised mysql container) can add snapshots, never
# delete the old ones. rclone's own config is not needed: the repository is a local dir.
OPTS="serve restic --addr :8000 --append-only --config /dev/null --log-file /var/log/backup-repo/rclone.log
      --log-level INFO $repo"
