#!/bin/sh
# Watchkeeper from this archive, for Linux systems without the Debian package (glibc 2.36 or newer).
#
#   sudo ./install.sh              install, or upgrade the copy in /opt/watchkeeper (its data is backed up
#                                  and migrated; a failed migration puts the previous version back)
#   sudo ./install.sh --uninstall  remove the program; keep the data, backups, settings and logs
#   sudo ./install.sh --purge      remove the program and its data, backups, settings and logs
#
# It puts: the program in /opt/watchkeeper, `watchkeeper` in /usr/local/bin, `watchkeeper-admin` in
# /usr/local/sbin, the menu entry and icon under /usr/local/share, the systemd unit (disabled) in
# /etc/systemd/system, settings in /etc/watchkeeper, data in /var/lib/watchkeeper, logs in /var/log/watchkeeper.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/packaging/site-functions.sh
. "$HERE/system/site-functions.sh"
BIN_LINK=/usr/local/bin/watchkeeper
ADMIN_LINK=/usr/local/sbin/watchkeeper-admin
APPS=/usr/local/share/applications
ICONS=/usr/local/share/icons/hicolor
DOCS=/usr/local/share/doc/watchkeeper
UNIT_FILE=/etc/systemd/system/$WK_UNIT

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }

if [ "$(id -u)" -ne 0 ]; then
    wk_say "run it as root: sudo $0 ${1:-}"
    exit 1
fi
for tool in useradd groupadd runuser install getent; do
    command -v "$tool" >/dev/null 2>&1 || { wk_say "this system has no '$tool', which install.sh needs"; exit 1; }
done

refresh_menus() {
    if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$APPS" || true; fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1; then gtk-update-icon-cache -q -t "$ICONS" || true; fi
}

remove_program() {
    if wk_systemd_running; then
        systemctl disable --now "$WK_UNIT" 2>/dev/null || true
    fi
    rm -f "$UNIT_FILE" /etc/systemd/system/multi-user.target.wants/"$WK_UNIT"
    rm -f "$BIN_LINK" "$ADMIN_LINK" "$APPS/watchkeeper.desktop"
    if [ -d "$ICONS" ]; then
        find "$ICONS" \( -name watchkeeper.png -o -name watchkeeper.svg \) -exec rm -f {} +
    fi
    rm -rf "$WK_PREFIX" "$WK_PREFIX.previous" "$WK_PREFIX.new" "$DOCS"
    if wk_systemd_running; then systemctl daemon-reload || true; fi
    refresh_menus
}

case "${1:-}" in
    --uninstall)
        remove_program
        wk_say "removed; the data in $WK_DATA, the settings in $WK_ETC and the logs in $WK_LOGS are kept"
        exit 0
        ;;
    --purge)
        remove_program
        rm -rf "$WK_DATA" "$WK_LOGS" "$WK_ETC"
        rm -f "$WK_RESTART_MARK"
        wk_say "removed with its data, backups, settings and logs (the system user $WK_USER is kept)"
        exit 0
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    "") ;;
    *)
        usage >&2
        exit 2
        ;;
esac

# The new program beside the old one first, so an upgrade swaps directories instead of overwriting files.
install -d -m 0755 "$(dirname "$WK_PREFIX")"
rm -rf "$WK_PREFIX.new"
cp -a "$HERE/watchkeeper" "$WK_PREFIX.new"
install -d -m 0755 "$WK_PREFIX.new/lib" "$WK_PREFIX.new/bin"
install -m 0644 "$HERE/system/site-functions.sh" "$WK_PREFIX.new/lib/site-functions.sh"
install -m 0755 "$HERE/system/watchkeeper-admin" "$WK_PREFIX.new/bin/watchkeeper-admin"

upgrade=""
if [ -e "$WK_PREFIX/watchkeeper" ]; then
    upgrade=yes
    wk_stop_for_upgrade
    rm -rf "$WK_PREFIX.previous"
    mv "$WK_PREFIX" "$WK_PREFIX.previous"
fi
mv "$WK_PREFIX.new" "$WK_PREFIX"

wk_create_user
install -d -m 0755 "$WK_ETC"
if [ ! -e "$WK_ENV" ]; then
    install -m 0640 "$HERE/system/watchkeeper.env" "$WK_ENV"
elif ! cmp -s "$HERE/system/watchkeeper.env" "$WK_ENV"; then
    # The site's own settings stay; the new default is put beside them for comparison.
    install -m 0640 "$HERE/system/watchkeeper.env" "$WK_ENV.new-default"
fi
wk_create_dirs
install -d -m 0755 "$(dirname "$BIN_LINK")" "$(dirname "$ADMIN_LINK")" "$APPS" "$DOCS" /etc/systemd/system
ln -sfn "$WK_PREFIX/watchkeeper" "$BIN_LINK"
ln -sfn "$WK_PREFIX/bin/watchkeeper-admin" "$ADMIN_LINK"
install -m 0644 "$HERE/system/watchkeeper.service" "$UNIT_FILE"
install -m 0644 "$HERE/system/watchkeeper.desktop" "$APPS/watchkeeper.desktop"
(cd "$HERE/system/icons" && find . -type f) | while read -r icon; do
    install -D -m 0644 "$HERE/system/icons/$icon" "$ICONS/$icon"
done
install -m 0644 "$HERE/doc/"* "$DOCS/"
refresh_menus
if wk_systemd_running; then systemctl daemon-reload || true; fi

if [ -n "$upgrade" ]; then
    if wk_upgrade_data; then
        rm -rf "$WK_PREFIX.previous"
        wk_restart_if_it_ran
        wk_say "upgraded to $("$WK_PREFIX/watchkeeper" --version)"
    else
        # The database is as it was: put back the program that can use it.
        rm -rf "$WK_PREFIX"
        mv "$WK_PREFIX.previous" "$WK_PREFIX"
        wk_restart_if_it_ran
        wk_say "the previous version is back in $WK_PREFIX: $("$WK_PREFIX/watchkeeper" --version)"
        exit 1
    fi
else
    wk_say "installed $("$WK_PREFIX/watchkeeper" --version). The service is not enabled; see $DOCS/README.md, 'Install at an offline site'"
fi
