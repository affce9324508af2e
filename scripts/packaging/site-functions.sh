# Shell functions shared by the Debian package's postinst and the archive's install.sh: the service user,
# its directories, the settings file, the data upgrade (a backup first) and the service restart.
# POSIX sh; sourced, never run. Installed as /opt/watchkeeper/lib/site-functions.sh.

WK_USER=watchkeeper
WK_PREFIX=/opt/watchkeeper
WK_DATA=/var/lib/watchkeeper
WK_BACKUPS=/var/lib/watchkeeper/backups
WK_LOGS=/var/log/watchkeeper
WK_ETC=/etc/watchkeeper
WK_ENV=/etc/watchkeeper/watchkeeper.env
WK_UNIT=watchkeeper.service
# Written by the package's preinst (or install.sh) when it stopped a running service for the upgrade.
WK_RESTART_MARK=/run/watchkeeper-restart-after-upgrade

wk_say() { echo "watchkeeper: $*" >&2; }

wk_systemd_running() { [ -d /run/systemd/system ]; }

wk_create_user() {
    getent group "$WK_USER" >/dev/null || groupadd --system "$WK_USER"
    getent passwd "$WK_USER" >/dev/null || useradd --system --gid "$WK_USER" --home-dir "$WK_DATA" \
        --no-create-home --shell /usr/sbin/nologin --comment "Watchkeeper service" "$WK_USER"
}

wk_create_dirs() {
    install -d -o "$WK_USER" -g "$WK_USER" -m 0750 "$WK_DATA" "$WK_BACKUPS" "$WK_LOGS"
    install -d -o root -g root -m 0755 "$WK_ETC"
    if [ -f "$WK_ENV" ]; then
        # Settings and secrets: root writes them, the service's group reads them, nobody else.
        chown root:"$WK_USER" "$WK_ENV"
        chmod 0640 "$WK_ENV"
    fi
}

# The value of KEY in the settings file (KEY=VALUE lines, as systemd's EnvironmentFile reads them).
wk_setting() {
    [ -r "$WK_ENV" ] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$WK_ENV" | tail -n 1 | sed 's/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/'
}

wk_admin() { "$WK_PREFIX/bin/watchkeeper-admin" "$@"; }

# After a newer version is installed: back up and migrate a SQLite database; a PostgreSQL database is
# shared by every node and is upgraded by an administrator, once (see the README). Returns 1 when the
# service must not be started again.
wk_upgrade_data() {
    db=$(wk_setting WATCHKEEPER_DB)
    case "$db" in
        postgres*)
            current=$(wk_admin db current 2>&1) || { wk_say "cannot read the database's schema revision: $current"; return 1; }
            case "$current" in
                *"(head)"*) return 0 ;;
            esac
            wk_say "the shared PostgreSQL database needs a schema upgrade: $current"
            wk_say "back it up (pg_dump -Fc), run 'sudo watchkeeper-admin db upgrade' once from one node, then 'systemctl start watchkeeper' on every node"
            return 1
            ;;
    esac
    if ! wk_admin db upgrade --backup-dir "$WK_BACKUPS"; then
        wk_say "the database was not upgraded (see the error above); the service stays stopped."
        wk_say "to go back, install the version you had before; to try again after fixing the cause: dpkg --configure watchkeeper (or run install.sh again)"
        return 1
    fi
    return 0
}

# Start the service again if the upgrade stopped it.
wk_restart_if_it_ran() {
    [ -e "$WK_RESTART_MARK" ] || return 0
    rm -f "$WK_RESTART_MARK"
    if wk_systemd_running; then
        systemctl start "$WK_UNIT" || wk_say "the service did not start again: systemctl status $WK_UNIT"
    fi
}

# Before a newer version replaces the program: stop a running service and remember to start it again.
wk_stop_for_upgrade() {
    if wk_systemd_running && systemctl is-active --quiet "$WK_UNIT"; then
        touch "$WK_RESTART_MARK"
        systemctl stop "$WK_UNIT"
    fi
}
