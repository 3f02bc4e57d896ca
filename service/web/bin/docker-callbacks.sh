# shellcheck shell=bash
# Housekeeping callbacks of the web service (see callbacks-lib.sh for the helpers).
#
#   supctl send web rotate-logs [now]   rotate /var/log/web/*.log as
#                                       /usr/local/conf/logrotate.conf says (now: at
#                                       once); Apache reopens them
#   supctl send web config-test         apache2 -t with the running configuration

# The policy's `signal USR1` makes rotate_logs run `kill -USR1 $SUPD_PID`: supd forwards
# SIGUSR1 to Apache's parent (only), whose graceful restart reopens the logs.
CB_rotate_logs() {
    local -a now=()
    [[ ${2:-} != now ]] || now=(--force)
    rotate_logs "${now[@]}"
}

CB_config_test() {
    # Debian's envvars reads variables that may be unset (APACHE_CONFDIR): source it
    # without the callbacks' nounset.
    set +u
    # shellcheck source=/dev/null
    . /etc/apache2/envvars
    set -u
    export APACHE_LOG_DIR=/var/log/web APACHE_RUN_DIR=/run/web \
           APACHE_PID_FILE=/run/web/apache2.pid APACHE_LOCK_DIR=/run/web/lock
    /usr/sbin/apache2 -t 2>&1
}
