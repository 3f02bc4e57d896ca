# shellcheck shell=bash
# Housekeeping callbacks of the backup-repo service (the restic REST repository).
#   supctl send backup-repo usage      size of each repository under /srv/restic
CB_usage() {
    du -sh /srv/restic/* 2>/dev/null || echo "no repository yet"
}
