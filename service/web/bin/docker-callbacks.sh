# shellcheck shell=bash
# Housekeeping callbacks of the web service (see callbacks-lib.sh for the helpers).
#
#   supctl send web rotate-logs     rotate /var/log/web/*.log; Apache reopens them
#   supctl send web config-test     apache2 -t with the running configuration

# Apache's parent reopens its logs on a graceful restart (SIGUSR1). `kill -USR1 1`
# (rotate_logs' default) asks supd, PID 1, to forward SIGUSR1 to Apache.
CB_rotate_logs() {
    rotate_logs
}

CB_config_test() {
    # shellcheck source=/dev/null
    . /etc/apache2/envvars
    export APACHE_LOG_DIR=/var/log/web APACHE_RUN_DIR=/run/web \
           APACHE_PID_FILE=/run/web/apache2.pid APACHE_LOCK_DIR=/run/web/lock
    /usr/sbin/apache2 -t 2>&1
}
