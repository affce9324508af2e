#!/usr/bin/env bash
# The packages on a machine that has never seen the build. A fresh Debian 12 root made with debootstrap from
# Debian's packages (minbase, systemd, and the libraries the .deb recommends, as a desktop has them) is booted
# with systemd in a container whose own network namespace has nothing but loopback (systemd-nspawn
# --private-network). The packages come in through a read-only bind mount; nothing is fetched from then on.
#
#   .deb     install the previous version (the same bundle, Debian revision 0); --version; db upgrade on a
#            new SQLite file; every library resolves; the service user, directories and settings; the
#            service disabled; enabled, it runs under systemd as its own user and answers /healthz; an
#            Events API trigger pages; the console starts offscreen for a desktop user; upgrade to this
#            build while the service runs (backup, migration, restart; the incident kept); a version whose
#            migration fails (the database left as it was, the backup named, the service stopped) and back;
#            remove keeps the data, reinstall finds it, purge removes it.
#   .tar.gz  install.sh: install, service, trigger, upgrade in place, a failing migration that puts the
#            previous version back, uninstall (data kept), purge.
#
# Usage (root, after `make dist` and `make package`): scripts/prove-packages.sh
# The debootstrap root is cached in $WATCHKEEPER_CI_CACHE (default /var/cache/watchkeeper-ci), keyed by the
# package list; a new machine builds it first (about a minute and a half). Every run works on a fresh copy.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PKG_DIR=${PKG_DIR:-$REPO/dist/packages}
BUNDLE=${BUNDLE:-$REPO/dist/watchkeeper}
CACHE=${WATCHKEEPER_CI_CACHE:-/var/cache/watchkeeper-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PYTHON:-$REPO/.venv/bin/python}
HOST_PY=$(command -v python3)
URL=http://127.0.0.1:8650

step() { printf '\n== %s  [%ss]\n' "$*" "$SECONDS"; }
fail() {
    echo "PACKAGE PROOF FAILED: $*" >&2
    exit 1
}
expect_in() { # expect_in TEXT NEEDLE WHAT
    case "$1" in
        *"$2"*) ;;
        *) fail "$3: expected '$2' in: $1" ;;
    esac
}

[ "$(id -u)" = 0 ] || fail "run it as root (debootstrap and systemd-nspawn need it)"
[ -x "$BUNDLE/watchkeeper" ] || fail "no bundle at $BUNDLE: run make dist"
[ -x "$PY" ] || fail "no Python at $PY: run make venv"

step "tools"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v desktop-file-validate >/dev/null || missing+=(desktop-file-utils)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in debootstrap systemd-nspawn nsenter flock sha256sum dpkg-deb desktop-file-validate; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

step "artefacts and their checksums"
shopt -s nullglob
debs=("$PKG_DIR"/watchkeeper_*.deb)
tars=("$PKG_DIR"/watchkeeper-*.tar.gz)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || fail "expected one .deb in $PKG_DIR (run make package), found ${#debs[@]}"
[ ${#tars[@]} -eq 1 ] || fail "expected one .tar.gz in $PKG_DIR (run make package), found ${#tars[@]}"
DEB=${debs[0]}
TAR=${tars[0]}
(cd "$PKG_DIR" && sha256sum --check --strict SHA256SUMS) || fail "SHA256SUMS does not match the artefacts"
VERSION=$(dpkg-deb -f "$DEB" Version)
ARCH=$(dpkg-deb -f "$DEB" Architecture)
UPSTREAM=${VERSION%-*}
echo "$(basename "$DEB") ($VERSION), $(basename "$TAR")"

WORK=$(mktemp -d /var/tmp/watchkeeper-proof.XXXXXX)
NSPAWN=""
LEADER=""
cleanup() {
    if [ -n "$LEADER" ] && [ -d "/proc/$LEADER" ]; then
        nsenter -t "$LEADER" -a -- /bin/systemctl poweroff >/dev/null 2>&1 || true
    fi
    if [ -n "$NSPAWN" ]; then
        for _ in $(seq 1 100); do
            kill -0 "$NSPAWN" 2>/dev/null || break
            sleep 0.2
        done
        kill "$NSPAWN" 2>/dev/null || true
        wait "$NSPAWN" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
dpkg-deb --fsys-tarfile "$DEB" | tar -xOf - ./usr/share/applications/watchkeeper.desktop >"$WORK/watchkeeper.desktop"
desktop-file-validate "$WORK/watchkeeper.desktop" || fail "the desktop entry does not validate"

step "package variants: the previous version, and one whose migration fails"
HEAD=$("$PY" -c 'from engine.migrate import head_revision; print(head_revision())')
mkdir -p "$WORK/in" "$WORK/prev" "$WORK/failing"
"$PY" scripts/package.py --bundle "$BUNDLE" --out "$WORK/prev" --only deb --fast \
    --deb-version "$UPSTREAM-0" >/dev/null
cp -al "$BUNDLE" "$WORK/bundle-failing"
versions=$(find "$WORK/bundle-failing" -path '*/engine/migrations/versions' -type d)
[ -n "$versions" ] || fail "no engine/migrations/versions in the bundle"
cat >"$versions/9999_proof_fails.py" <<EOF
"""A migration that fails half-way: what a site sees when an upgrade goes wrong."""
import sqlalchemy as sa
from alembic import op

revision = "9999_proof_fails"
down_revision = "$HEAD"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("proof_half_done", sa.Column("id", sa.Integer, primary_key=True))
    raise RuntimeError("the proof's migration fails on purpose")


def downgrade() -> None:
    pass
EOF
"$PY" scripts/package.py --bundle "$WORK/bundle-failing" --out "$WORK/failing" --fast \
    --deb-version "$VERSION+proof.failing" >/dev/null
for f in "$DEB" "$TAR" "$WORK"/prev/*.deb; do
    cp -l "$f" "$WORK/in/" 2>/dev/null || cp "$f" "$WORK/in/"
done
cp -l "$WORK"/failing/*.deb "$WORK/in/failing.deb" 2>/dev/null || cp "$WORK"/failing/*.deb "$WORK/in/failing.deb"
cp -l "$WORK"/failing/*.tar.gz "$WORK/in/failing.tar.gz" 2>/dev/null || cp "$WORK"/failing/*.tar.gz "$WORK/in/failing.tar.gz"
cp resources/samples/example.yaml "$WORK/in/policies.yaml"
cat >"$WORK/in/check-libraries.sh" <<'EOF'
# Every ELF file of the installed bundle, with the bundle's own folders on the library path as its loader
# sees them: what ldd cannot find on this system.
cd /opt/watchkeeper
dirs=$(find "$PWD" -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')
find . -type f \( -name '*.so*' -o -name watchkeeper \) | while read -r f; do
    LD_LIBRARY_PATH=$dirs ldd "$f" >/tmp/ldd.out 2>&1 || continue  # not a dynamic executable (data)
    echo "checked $f" >>/tmp/ldd.checked
    grep 'not found' /tmp/ldd.out | sed "s|^|$f: |"
done
exit 0
EOF
PREV_DEB=/proof/$(basename "$WORK"/prev/*.deb)
THIS_DEB=/proof/$(basename "$DEB")

step "Debian 12 root (debootstrap from $MIRROR)"
# The root has what a Debian 12 desktop has of the package's dependencies: its Depends come with any
# Debian system; its Recommends (first alternative of each) are the desktop libraries, installed by apt
# without their own recommendations, so the root has less than a desktop, not more.
recommends=$(dpkg-deb -f "$DEB" Recommends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep -v '^$' | tr '\n' ' ')
KEY=$(printf '%s\n%s\n%s\n' bookworm "$ARCH" "$recommends" | sha256sum | cut -c1-16)
BASE="$CACHE/debian12-$ARCH-$KEY"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # two runs on one machine: one builds the root, the other waits for it
if [ ! -f "$BASE/.complete" ]; then
    echo "building $BASE (cached for later runs on this machine)"
    rm -rf "$BASE.partial"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$BASE.partial" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    # shellcheck disable=SC2086 # one word per package
    systemd-nspawn --quiet --directory="$BASE.partial" --register=no --keep-unit -- /bin/sh -c \
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $recommends && apt-get clean" \
        >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log"; fail "installing the desktop libraries in the root failed"; }
    rm -rf "$BASE.partial/var/lib/apt/lists/"*
    touch "$BASE.partial/.complete"
    rm -rf "$BASE"
    mv "$BASE.partial" "$BASE"
else
    echo "cached: $BASE"
fi
cp -a "$BASE" "$WORK/root"
flock -u 9
rm -f "$WORK/root/.complete"

step "boot it with systemd, networking cut (own network namespace, loopback only)"
systemd-nspawn --quiet --boot --directory="$WORK/root" --private-network --register=no --keep-unit \
    --machine=watchkeeper-proof --bind-ro="$WORK/in:/proof" >"$WORK/boot.log" 2>&1 &
NSPAWN=$!
for _ in $(seq 1 100); do
    LEADER=$(pgrep -P "$NSPAWN" | head -1 || true)
    [ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] && break
    LEADER=""
    sleep 0.1
done
[ -n "$LEADER" ] || { cat "$WORK/boot.log"; fail "the container did not boot systemd"; }

in_root() {
    nsenter -t "$LEADER" -a -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}
# A client on the host's Python, inside the container's network namespace (the root has no HTTP client).
in_net() { nsenter -t "$LEADER" -n -- "$HOST_PY" "$@"; }
http() { # http METHOD PATH [JSON] -> "status body"
    in_net - "$URL$2" "$1" "${3:-}" <<'PY'
import sys, urllib.error, urllib.request
url, method, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"} if body else {})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode())
except OSError as exc:
    print(0, exc)
PY
}
json_field() { "$HOST_PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

state=""
for _ in $(seq 1 150); do
    state=$(in_root systemctl is-system-running 2>/dev/null || true)
    case "$state" in running | degraded) break ;; esac
    sleep 0.2
done
case "$state" in running | degraded) echo "systemd: $state" ;; *) fail "systemd in the container: '$state'" ;; esac
interfaces=$(in_root cat /proc/net/dev | sed -n 's/^ *\([^:]*\):.*/\1/p' | tr '\n' ' ')
[ "$interfaces" = "lo " ] || fail "the container has network interfaces other than loopback: $interfaces"
if in_net -c "import socket; socket.create_connection(('151.101.2.132', 80), timeout=3)" 2>/dev/null; then
    fail "the container reached the internet"
fi
if in_root getent hosts deb.debian.org >/dev/null 2>&1; then fail "the container resolved deb.debian.org"; fi
echo "network interfaces: $interfaces(no route out, no DNS)"

healthy() { # wait until /healthz answers 200 with status ok
    local reply=""
    for _ in $(seq 1 150); do
        reply=$(http GET /healthz)
        case "$reply" in "200 "*'"status": "ok"'* | "200 "*'"status":"ok"'*) echo "healthz: 200 ok"; return 0 ;; esac
        sleep 0.2
    done
    in_root journalctl -u watchkeeper --no-pager -n 30 || true
    fail "/healthz did not answer 200 ok: $reply"
}
main_pid() { in_root systemctl show -p MainPID --value watchkeeper.service; }
trigger() { # trigger ROUTING_KEY DEDUP_KEY
    local reply
    reply=$(http POST /v2/enqueue "{\"routing_key\": \"$1\", \"event_action\": \"trigger\", \"dedup_key\": \"$2\", \"payload\": {\"summary\": \"Proof: $2\", \"source\": \"proof\", \"severity\": \"critical\"}}")
    expect_in "$reply" "202 " "Events API trigger"
}
paged() { # paged DEDUP_KEY: wait for a delivered page of that incident
    local show=""
    for _ in $(seq 1 100); do
        show=$(in_root watchkeeper-admin show "$1" --json 2>/dev/null || true)
        if [ -n "$show" ] && [ "$(printf '%s' "$show" | json_field 'sum(1 for m in d["messages"] if m["kind"] == "page" and m["status"] in ("delivered", "sent"))')" -gt 0 ]; then
            echo "incident $1: $(printf '%s' "$show" | json_field '[(m["channel"], m["status"]) for m in d["messages"]]')"
            return 0
        fi
        sleep 0.3
    done
    fail "no page for $1: $show"
}
has_incident() { # has_incident DEDUP_KEY WHEN
    local show
    show=$(in_root watchkeeper-admin show "$1" --json) || fail "$2: incident $1 is gone"
    [ "$(printf '%s' "$show" | json_field 'd["key"]')" = "$1" ] || fail "$2: incident $1 not found"
    echo "$2: incident $1 is there"
}
setup_site() { # policies from the sample configuration, a routing key; prints the key
    # No network here: the site rehearses with every channel simulated, a choice made in its settings file.
    in_root grep -q '^WATCHKEEPER_SIMULATED_CHANNELS=' /etc/watchkeeper/watchkeeper.env ||
        in_root sh -c 'echo WATCHKEEPER_SIMULATED_CHANNELS=all >> /etc/watchkeeper/watchkeeper.env'
    in_root watchkeeper-admin import /proof/policies.yaml >/dev/null
    in_root watchkeeper-admin keys create --policy critical-incidents --label proof --json | json_field 'd["secret"]'
}

# ------------------------------------------------------------------------------------------------------------
step ".deb: install the previous version ($(basename "$PREV_DEB")) with no network"
out=$(in_root dpkg -i "$PREV_DEB" 2>&1) || { echo "$out"; fail "dpkg -i of the previous version"; }
expect_in "$out" "The service is not enabled" "first install"
# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
[ "$(in_root dpkg-query -W -f '${Status} ${Version}' watchkeeper)" = "install ok installed $UPSTREAM-0" ] ||
    fail "the previous version is not installed"

step "--version, db upgrade on a new SQLite file"
v=$(in_root watchkeeper --version)
echo "$v"
expect_in "$v" "watchkeeper $UPSTREAM (built " "--version"
out=$(in_root watchkeeper db upgrade --db /tmp/new-site.db)
expect_in "$out" "upgraded from empty to $HEAD (head)" "db upgrade"

step "every library of the bundle resolves in this root"
unresolved=$(in_root sh /proof/check-libraries.sh)
[ -z "$unresolved" ] || fail "libraries not found on this Debian 12 root:
$unresolved"
checked=$(in_root sh -c 'wc -l < /tmp/ldd.checked')
[ "$checked" -gt 100 ] || fail "only $checked files were checked with ldd"
echo "$checked programs and libraries checked with ldd: none misses a library"

step "what the package put where"
for path in /opt/watchkeeper/watchkeeper /usr/bin/watchkeeper /usr/sbin/watchkeeper-admin \
    /usr/lib/systemd/system/watchkeeper.service /usr/share/applications/watchkeeper.desktop \
    /usr/share/icons/hicolor/scalable/apps/watchkeeper.svg /usr/share/icons/hicolor/48x48/apps/watchkeeper.png \
    /usr/share/doc/watchkeeper/README.md; do
    in_root test -e "$path" || fail "$path is missing"
done
[ "$(in_root stat -c '%a %U:%G' /etc/watchkeeper/watchkeeper.env)" = "640 root:watchkeeper" ] ||
    fail "settings file permissions: $(in_root stat -c '%a %U:%G' /etc/watchkeeper/watchkeeper.env)"
[ "$(in_root stat -c '%a %U:%G' /var/lib/watchkeeper)" = "750 watchkeeper:watchkeeper" ] || fail "/var/lib/watchkeeper"
in_root getent passwd watchkeeper | grep -q ':/var/lib/watchkeeper:/usr/sbin/nologin$' || fail "service user"
[ "$(in_root systemctl is-enabled watchkeeper.service 2>&1 || true)" = disabled ] || fail "the service is enabled at install"
[ "$(in_root systemctl is-active watchkeeper.service 2>&1 || true)" = inactive ] || fail "the service runs at install"
in_root grep -q '^Exec=watchkeeper$' /usr/share/applications/watchkeeper.desktop || fail "desktop entry Exec"
echo "files, user, directories in place; service installed disabled and stopped"

step "the service under systemd, as its own user"
ROUTING_KEY=$(setup_site)
in_root systemctl enable --now watchkeeper.service >/dev/null 2>&1 || fail "systemctl enable --now"
healthy
pid_before=$(main_pid)
[ "$(in_root stat -c %U "/proc/$pid_before")" = watchkeeper ] || fail "the service does not run as watchkeeper"
echo "MainPID $pid_before runs as watchkeeper"

step "an Events API trigger pages"
trigger "$ROUTING_KEY" proof-before-upgrade
paged proof-before-upgrade

step "the console starts offscreen for a desktop user"
in_root useradd --create-home dispatcher
out=$(in_root runuser -u dispatcher -- env QT_QPA_PLATFORM=offscreen watchkeeper --smoke-test 2>&1) ||
    { echo "$out"; fail "watchkeeper --smoke-test"; }
echo "${out:-smoke test passed}" | tail -3

step "upgrade to $(basename "$DEB") while the service runs"
out=$(in_root dpkg -i "$THIS_DEB" 2>&1) || { echo "$out"; fail "dpkg -i of this build"; }
echo "$out" | grep -E 'backed up|already at|upgraded' || true
expect_in "$out" "backed up the database to /var/lib/watchkeeper/backups/watchkeeper-before-upgrade-" "upgrade backup"
expect_in "$out" "backed up the intake spool to /var/lib/watchkeeper/backups/watchkeeper-before-upgrade-" "spool backup"
[ "$(in_root systemctl is-active watchkeeper.service)" = active ] || fail "the service did not start again"
pid_after=$(main_pid)
[ "$pid_after" != "$pid_before" ] || fail "the service was not restarted"
healthy
has_incident proof-before-upgrade "after the upgrade"
# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
[ "$(in_root dpkg-query -W -f '${Version}' watchkeeper)" = "$VERSION" ] || fail "not upgraded to $VERSION"

step "a version whose migration fails"
if out=$(in_root dpkg -i /proof/failing.deb 2>&1); then
    echo "$out"
    fail "the failing migration was not reported"
fi
echo "$out" | grep -E '^(error|watchkeeper):' || true
expect_in "$out" "the proof's migration fails on purpose" "failed migration"
expect_in "$out" "unchanged at revision $HEAD" "failed migration"
backup=$(printf '%s' "$out" | sed -n 's/.*copy taken just before the upgrade is at \(\/[^ ]*\.db\).*/\1/p' | head -1)
if [ -z "$backup" ] || ! in_root test -s "$backup"; then
    fail "the backup named by the failure is not there: '$backup'"
fi
[ "$(in_root systemctl is-active watchkeeper.service 2>&1 || true)" != active ] || fail "the service runs on a failed upgrade"
echo "reported; backup at $backup; service stopped"
out=$(in_root dpkg -i "$THIS_DEB" 2>&1) || { echo "$out"; fail "going back to $VERSION"; }
[ "$(in_root systemctl is-active watchkeeper.service)" = active ] || fail "the service did not start after going back"
healthy
has_incident proof-before-upgrade "back on $VERSION"
expect_in "$(in_root watchkeeper-admin db current)" "$HEAD (head)" "revision after going back"

step "remove keeps the data; reinstall finds it; purge removes it"
in_root dpkg -r watchkeeper >/dev/null 2>&1 || fail "dpkg -r"
in_root test ! -e /opt/watchkeeper/watchkeeper || fail "/opt/watchkeeper left after remove"
in_root test ! -e /usr/bin/watchkeeper || fail "/usr/bin/watchkeeper left after remove"
in_root test -s /var/lib/watchkeeper/watchkeeper.db || fail "remove took the database"
in_root test -s /etc/watchkeeper/watchkeeper.env || fail "remove took the settings"
if [ "$(in_root systemctl is-active watchkeeper.service 2>&1 || true)" = active ]; then fail "the service runs after remove"; fi
out=$(in_root dpkg -i "$THIS_DEB" 2>&1) || { echo "$out"; fail "reinstall"; }
has_incident proof-before-upgrade "after remove and reinstall"
in_root dpkg -P watchkeeper >/dev/null 2>&1 || fail "dpkg -P"
for path in /var/lib/watchkeeper /etc/watchkeeper /var/log/watchkeeper /opt/watchkeeper; do
    in_root test ! -e "$path" || fail "$path left after purge"
done
echo "removed (data kept), reinstalled (data found), purged (data gone)"

# ------------------------------------------------------------------------------------------------------------
step ".tar.gz: install.sh"
TOP=$(basename "$TAR" .tar.gz)
in_root sh -c "mkdir -p /tmp/tar && tar -xzf /proof/$(basename "$TAR") -C /tmp/tar && tar -xzf /proof/failing.tar.gz -C /tmp && mv /tmp/$TOP /tmp/failing"
out=$(in_root /tmp/tar/"$TOP"/install.sh 2>&1) || { echo "$out"; fail "install.sh"; }
expect_in "$out" "installed watchkeeper $UPSTREAM (built " "install.sh"
for path in /opt/watchkeeper/watchkeeper /usr/local/bin/watchkeeper /usr/local/sbin/watchkeeper-admin \
    /etc/systemd/system/watchkeeper.service /usr/local/share/applications/watchkeeper.desktop \
    /usr/local/share/icons/hicolor/scalable/apps/watchkeeper.svg; do
    in_root test -e "$path" || fail "$path is missing"
done
[ "$(in_root stat -c '%a %U:%G' /etc/watchkeeper/watchkeeper.env)" = "640 root:watchkeeper" ] || fail "settings file"
[ "$(in_root systemctl is-enabled watchkeeper.service 2>&1 || true)" = disabled ] || fail "enabled by install.sh"
ROUTING_KEY=$(setup_site)
in_root systemctl enable --now watchkeeper.service >/dev/null 2>&1 || fail "systemctl enable --now"
healthy
trigger "$ROUTING_KEY" proof-tar-before-upgrade
paged proof-tar-before-upgrade
pid_before=$(main_pid)

step "install.sh again: an upgrade in place while the service runs"
out=$(in_root /tmp/tar/"$TOP"/install.sh 2>&1) || { echo "$out"; fail "install.sh upgrade"; }
expect_in "$out" "backed up the database to /var/lib/watchkeeper/backups/watchkeeper-before-upgrade-" "install.sh upgrade"
[ "$(in_root systemctl is-active watchkeeper.service)" = active ] || fail "not started again"
[ "$(main_pid)" != "$pid_before" ] || fail "not restarted"
healthy
has_incident proof-tar-before-upgrade "after install.sh upgrade"

step "install.sh of a version whose migration fails puts the previous one back"
if out=$(in_root /tmp/failing/install.sh 2>&1); then
    echo "$out"
    fail "install.sh did not report the failed migration"
fi
expect_in "$out" "unchanged at revision $HEAD" "install.sh failed migration"
expect_in "$out" "the previous version is back in /opt/watchkeeper" "install.sh failed migration"
in_root test ! -e /opt/watchkeeper/_internal/engine/migrations/versions/9999_proof_fails.py ||
    fail "the failing version is still in /opt/watchkeeper"
[ "$(in_root systemctl is-active watchkeeper.service)" = active ] || fail "the service did not start again"
healthy
has_incident proof-tar-before-upgrade "after the failed install.sh upgrade"

step "install.sh --uninstall keeps the data; --purge removes it"
in_root /tmp/tar/"$TOP"/install.sh --uninstall >/dev/null 2>&1 || fail "install.sh --uninstall"
in_root test ! -e /opt/watchkeeper || fail "/opt/watchkeeper left after --uninstall"
in_root test ! -e /usr/local/bin/watchkeeper || fail "/usr/local/bin/watchkeeper left"
in_root test ! -e /etc/systemd/system/watchkeeper.service || fail "unit left"
in_root test -s /var/lib/watchkeeper/watchkeeper.db || fail "--uninstall took the database"
in_root /tmp/tar/"$TOP"/install.sh --purge >/dev/null 2>&1 || fail "install.sh --purge"
for path in /var/lib/watchkeeper /etc/watchkeeper /var/log/watchkeeper; do
    in_root test ! -e "$path" || fail "$path left after --purge"
done

step "package proof passed"
echo "sizes: $(du -h "$DEB" | cut -f1) $(basename "$DEB"), $(du -h "$TAR" | cut -f1) $(basename "$TAR"), installed $(du -sh "$BUNDLE" | cut -f1)"
echo "package proof passed in ${SECONDS}s"
