# shellcheck shell=bash disable=SC2034  # the variables are read by entrypoint.sh
# Personality of the web container (Apache httpd), sourced by entrypoint.sh.
SERVICE=web
# Apache's parent stays root (to bind :80 and open logs) and runs its workers as
# www-data itself (APACHE_RUN_USER), so no REUID here.
USER=root
GROUP=adm
USE_RUNSOCK=true           # /run/web: pid file and mutex/lock files
RUNMODE=0755
USE_VARLOG=true            # /var/log/web: access.log, error.log (rotate-logs rotates them)
LOGMODE=0750

# apache2ctl would source envvars for us, but we exec the daemon directly so that it is
# supd's main child and receives the forwarded signals (USR1 = graceful restart, which
# reopens the logs; TERM = stop).
# shellcheck source=/dev/null
. /etc/apache2/envvars
export APACHE_LOG_DIR=/var/log/web
export APACHE_RUN_DIR=/run/web
export APACHE_PID_FILE=/run/web/apache2.pid
export APACHE_LOCK_DIR=/run/web/lock
mkdir -p "$APACHE_LOCK_DIR"
# /run outlives the container (shared bind mount): an old pid file would only make
# Apache warn about an unclean shutdown.
rm -f "$APACHE_PID_FILE"

COMMAND=/usr/sbin/apache2
OPTS="-DFOREGROUND"
