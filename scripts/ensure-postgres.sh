#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server the test suite can use (trust auth), starting one if needed.
#
# 1. WATCHKEEPER_TEST_PG_URL if set, else postgres@127.0.0.1:5432 if it answers without a password.
# 2. Otherwise a private throwaway cluster in .pgdata/ on port 54329 (installing PostgreSQL from Debian's
#    packages first if it is missing), so a fresh machine needs no database set-up by hand.
# Exits non-zero with a message when no server can be had: the PostgreSQL tests are required, not optional.
set -euo pipefail
url="${WATCHKEEPER_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
if command -v psql >/dev/null 2>&1 && psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "$url"; exit 0
fi
if [ -n "${WATCHKEEPER_TEST_PG_URL:-}" ]; then
  echo "error: PostgreSQL at WATCHKEEPER_TEST_PG_URL=$url does not answer" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "Installing PostgreSQL from Debian's packages for the test suite…" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
here=$(cd "$(dirname "$0")/.." && pwd)
data="$here/.pgdata"
port=54329
private="postgresql://postgres@127.0.0.1:$port/postgres"
run_as=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: the cluster belongs to the postgres system user.
  run_as=(runuser -u postgres --)
fi
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  "${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null
fi
if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
fi
if psql "$private" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "$private"; exit 0
fi
echo "error: could not start a PostgreSQL server for the tests (see $data/server.log)" >&2
exit 1
