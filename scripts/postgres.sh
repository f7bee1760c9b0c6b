#!/usr/bin/env bash
# Starts a private PostgreSQL for the tests and prints its SQLAlchemy URL on stdout:
#
#   export VOICEPLANE_TEST_POSTGRES_URL="$(./scripts/postgres.sh)"
#
# Safe to run again: it installs Debian's postgresql only if missing, creates the cluster
# only once, starts it only if it is not running, and creates the role and the database only
# if missing. The cluster is our own (initdb in VOICEPLANE_TEST_PG_DIR, default
# /tmp/voiceplane-pg), never Debian's default one nor a systemd unit: it listens on
# 127.0.0.1 only, on VOICEPLANE_TEST_PG_PORT (default 55432), with its unix socket in that
# directory, and trusts local TCP connections, so it is for tests only. As root (CI) the
# cluster belongs to and runs as the `postgres` OS user, because initdb and postgres refuse
# to run as root; as anyone else it runs as that user.
#
# `./scripts/postgres.sh stop` stops it (`start` is the default). Logs go to stderr and to
# DIR/postgresql.log.
set -euo pipefail

dir="$(realpath -m "${VOICEPLANE_TEST_PG_DIR:-/tmp/voiceplane-pg}")"
port="${VOICEPLANE_TEST_PG_PORT:-55432}"
role="voiceplane"
database="voiceplane_test"
data="$dir/data"
logfile="$dir/postgresql.log"

log() { echo "postgres.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

action="${1:-start}"
case "$action:$#" in
  start:0 | start:1 | stop:1) ;;
  *) die "usage: postgres.sh [start|stop]" ;;
esac
case "$port" in
  '' | *[!0-9]*) die "VOICEPLANE_TEST_PG_PORT must be a port number, got '$port'" ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  die "VOICEPLANE_TEST_PG_PORT out of range: $port"
fi

# The postgres user may not be able to enter the caller's working directory.
cd /

if [ "$(id -u)" -eq 0 ]; then
  as_owner() { runuser -u postgres -- "$@"; }
  owner="postgres"
else
  as_owner() { "$@"; }
  owner="$(id -un)"
fi

# Running means: the PID in postmaster.pid is a process whose working directory is our data
# directory (the postmaster's is). pg_ctl only asks whether that PID exists, and after a
# killed run or a reboot it may be an unrelated process that pg_ctl would then signal.
running() {
  local pid
  pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$data" ]
}

installed_bin() {
  # The newest installed major version's programs.
  local found
  found="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
    sort -V | tail -n 1)"
  [ -n "$found" ] && dirname "$found"
}

bin="$(installed_bin || true)"
if [ -z "$bin" ]; then
  log "installing Debian's postgresql"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  bin="$(installed_bin)" || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
fi
major="$(basename "$(dirname "$bin")")"

# One run at a time (several test runs may start together). The lock is released when this
# script exits; the server must not inherit it, hence "9>&-" where pg_ctl starts it.
lock="$dir.lock"
exec 9>>"$lock" || die "cannot open the lock file $lock: set VOICEPLANE_TEST_PG_DIR"
flock -w 120 9 || die "another postgres.sh holds $lock"

if [ "$action" = "stop" ]; then
  if running; then
    as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w >&2
  else
    log "not running ($data)"
  fi
  exit 0
fi

if [ "$owner" = "postgres" ] && ! id postgres >/dev/null 2>&1; then
  die "no 'postgres' OS user (Debian's postgresql-common creates it)"
fi

# The directory holds the data, the socket and the log; only its owner may enter it.
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir"
  chmod 700 "$dir"
fi
dir_owner="$(stat -c %U "$dir")"
[ "$dir_owner" = "$owner" ] ||
  die "$dir belongs to $dir_owner, not $owner: set VOICEPLANE_TEST_PG_DIR (and a free VOICEPLANE_TEST_PG_PORT)"

if [ ! -f "$data/PG_VERSION" ]; then
  if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
    die "$data is not empty and holds no cluster: remove it and run again"
  fi
  log "creating a PostgreSQL $major cluster in $data"
  as_owner "$bin/initdb" -D "$data" --username=postgres --auth-local=peer --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 --no-sync >&2
fi
cluster_major="$(cat "$data/PG_VERSION")"
[ "$cluster_major" = "$major" ] ||
  die "$data holds a PostgreSQL $cluster_major cluster, the programs are $major: remove it"

# Rewritten on every run, so a changed port or directory takes effect at the next start.
# fsync and friends are off: a test database need not survive a power cut, and it is faster.
as_owner tee "$data/voiceplane.conf" >/dev/null <<EOF
# Written by voiceplane's scripts/postgres.sh: a private cluster for the tests.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
grep -qxF "include_if_exists = 'voiceplane.conf'" "$data/postgresql.conf" ||
  echo "include_if_exists = 'voiceplane.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; }

if ! running && [ -e "$data/postmaster.pid" ]; then
  log "removing the lock files of a server that is gone"
  # The directory is this cluster's alone, so its socket files are stale too.
  as_owner rm -f "$data/postmaster.pid" "$dir"/.s.PGSQL.*
fi

if running; then
  # Line 4 of postmaster.pid is the port the server listens on.
  if [ "$(sed -n 4p "$data/postmaster.pid")" != "$port" ]; then
    log "running on another port: restarting it on 127.0.0.1:$port"
    as_owner "$bin/pg_ctl" restart -D "$data" -l "$logfile" -m fast -w -t 60 >&2 9>&-
  fi
else
  log "starting PostgreSQL $major on 127.0.0.1:$port"
  as_owner "$bin/pg_ctl" start -D "$data" -l "$logfile" -w -t 60 >&2 9>&- ||
    {
      tail -n 20 "$logfile" >&2 || true
      die "PostgreSQL did not start (log: $logfile)"
    }
fi

for _ in $(seq 1 60); do
  ready && break
  sleep 0.5
done
ready || die "PostgreSQL does not accept connections on 127.0.0.1:$port (log: $logfile)"

psql_admin() {
  "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA "$@"
}
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ]; then
  log "creating role $role"
  # CREATEDB: the test fixtures give each test a database of its own.
  psql_admin -c "CREATE ROLE $role LOGIN CREATEDB"
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
  log "creating database $database"
  psql_admin -c "CREATE DATABASE $database OWNER $role"
fi

echo "postgresql+psycopg://$role@127.0.0.1:$port/$database"
