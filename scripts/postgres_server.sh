#!/usr/bin/env bash
# A throw-away local PostgreSQL for the sweep integration tests (Debian's postgresql package):
#   scripts/postgres_server.sh install   the package, if its binaries are missing (root: apt-get)
#   scripts/postgres_server.sh up        a fresh data folder, a server on 127.0.0.1, a database;
#                                        prints `export PLOUTOS_PG_DIR=<folder>`, then
#                                        `export PLOUTOS_TEST_POSTGRES=postgresql://...`
#   scripts/postgres_server.sh down      stop it and delete its data
#   scripts/postgres_server.sh status
# State lives in a private folder (0700, the server's user's): $PLOUTOS_PG_DIR if set, else a
# new one under /tmp that `up` makes and remembers (scripts/private_state.sh) so `down` and
# `status` find it. Port $PLOUTOS_PG_PORT (55432).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/private_state.sh"
NAME=ploutos-postgres
PORT="${PLOUTOS_PG_PORT:-55432}"
DATABASE=ploutos
# PostgreSQL refuses to run as root: as root the server (and its folder) is the postgres user's.
OWNER=""
if [[ "$(id -u)" == 0 ]]; then
  OWNER=postgres
fi
STATE="$(state_dir "$NAME" "${PLOUTOS_PG_DIR:-}" "$OWNER")" || exit 1

say() { printf '[postgres] %s\n' "$*" >&2; }

bin_dir() {
  local initdb
  initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)"
  if [[ -z "$initdb" ]]; then
    initdb="$(command -v initdb || true)"
  fi
  [[ -n "$initdb" ]] && dirname "$initdb"
}

# PostgreSQL refuses to run as root: the server runs as the `postgres` user when we are root.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install() {
  if bin_dir >/dev/null; then
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    say "PostgreSQL is not installed and installing needs root: apt-get install postgresql"
    exit 1
  fi
  say "installing postgresql (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

up() {
  install
  local bin
  bin="$(bin_dir)"
  down_quietly
  if [[ -n ${PLOUTOS_PG_DIR:-} ]]; then
    STATE="$(state_dir "$NAME" "$PLOUTOS_PG_DIR" "$OWNER")"
  else
    STATE="$(new_state_dir "$NAME" "$OWNER")"
  fi
  as_owner "$bin/initdb" -D "$STATE/data" -A trust -U postgres --no-instructions >/dev/null
  as_owner "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w \
    -o "-p $PORT -k $STATE -c listen_addresses=127.0.0.1" start >/dev/null
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DATABASE"
  say "up on 127.0.0.1:$PORT (data in $STATE/data, log $STATE/server.log)"
  echo "export PLOUTOS_PG_DIR=$STATE"
  echo "export PLOUTOS_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PORT/$DATABASE"
}

down_quietly() {
  local bin
  [[ -n $STATE ]] || return 0  # no server was made
  if bin="$(bin_dir)" && [[ -f "$STATE/data/postmaster.pid" ]]; then
    as_owner "$bin/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [[ -n ${PLOUTOS_PG_DIR:-} ]]; then
    rm -rf "${STATE:?}"/*  # a folder given to us: emptied, kept
  else
    rm -rf "$STATE"
    forget_state_dir "$NAME"
  fi
  STATE=""
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down_quietly; say "down" ;;
  status)
    if [[ -n $STATE && -f "$STATE/data/postmaster.pid" ]]; then
      as_owner "$(bin_dir)/pg_ctl" -D "$STATE/data" status
    else
      say "not running"
    fi
    ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
