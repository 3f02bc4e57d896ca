# shellcheck shell=bash disable=SC2034  # the variables are read by entrypoint.sh
# Personality of the mysql container, sourced by /usr/local/sbin/entrypoint.sh.
SERVICE=mysql
USER=mysql
GROUP=mysql
USE_VARLOG=true            # /var/log/mysql, mode 0750: error log
LOGMODE=0750
USE_RUNSOCK=true           # /run/mysqld: the server's socket and pid file
RUNDIR=/run/mysqld
RUNMODE=0755
REUID=mysql                # mariadbd runs as mysql, never as root
REGID=mysql

datadir=/var/lib/mysql
defaults=/usr/local/conf/mysqld.cnf
COMMAND=/usr/sbin/mariadbd
# Unix socket only (--skip-networking): other containers reach it through the shared /run.
OPTS="--defaults-extra-file=$defaults --datadir=$datadir --skip-networking
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid
      --log-error=/var/log/mysql/error.log"

# /run is shared by every container and survives restarts: a socket or pid file left by
# a server that was killed would be stale. mariadbd itself replaces the socket; the
# pid file we remove, since only this container runs mariadbd.
rm -f /run/mysqld/mysqld.pid

# The datadir is a bind mount (./data/mysql) owned by whoever created it first.
install -d -m 0750 "$datadir"
chown mysql:mysql "$datadir"

# First start: an empty datadir gets the system tables. root@localhost and
# mysql@localhost authenticate by unix socket (the OS user), so no password exists
# anywhere; callbacks run as root inside this container and connect as root.
if [[ ! -d $datadir/mysql ]]; then
    install -d -o mysql -g mysql -m 0750 /var/log/mysql
    echo "docker-entry-setup[mysql]: initialising $datadir" >&2
    setpriv --reuid=mysql --regid=mysql --init-groups \
        mariadb-install-db --defaults-extra-file="$defaults" --datadir="$datadir" \
            --auth-root-authentication-method=socket --skip-test-db \
            >/var/log/mysql/install-db.log 2>&1 \
        || { echo "mariadb-install-db failed, see /var/log/mysql/install-db.log:" >&2
             tail -n 20 /var/log/mysql/install-db.log >&2; exit 1; }
fi
