#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and benchmarks, from Debian's postgresql-15 binaries.
#   pg_cluster.sh start DIR   creates DIR (removing an old cluster there), initdb, starts the server on a
#                             free loopback port (127.0.0.1 only, its unix socket in DIR, trust auth for
#                             the user postgres), writes DIR/dsn (postgresql://postgres@127.0.0.1:PORT/postgres)
#   pg_cluster.sh stop DIR    stops the server and removes DIR (nothing to do if there is none)
# Environment: PG_BIN (/usr/lib/postgresql/15/bin), PG_CLUSTER_SHARED_BUFFERS (128MB),
# PG_CLUSTER_FSYNC (off: a throw-away cluster for tests; the benchmark sets on).
# initdb and the server refuse to run as root: as root, they run as the postgres system user and DIR
# is owned by it.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

free_port() { # a port nobody listens on now (the start retries if it is taken meanwhile)
  local p
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % 22000)) # below the ephemeral range (32768-60999 by default)
    if ! command -v ss >/dev/null || ! ss -Htln "sport = :$p" | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  echo "pg_cluster.sh: no free port found" >&2
  return 1
}

start() {
  for b in initdb pg_ctl postgres; do
    if [ ! -x "$PG_BIN/$b" ]; then
      echo "pg_cluster.sh: $PG_BIN/$b not found: install postgresql-15 (./dev installs it)" >&2
      exit 1
    fi
  done
  stop
  mkdir -p "$dir/data"
  chmod 700 "$dir/data"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "pg_cluster.sh: running as root needs the postgres system user" >&2; exit 1; }
    chown -R postgres:postgres "$dir"
  fi
  if ! as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
      >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    echo "pg_cluster.sh: initdb failed in $dir" >&2
    exit 1
  fi
  local fsync=${PG_CLUSTER_FSYNC:-off}
  cat >>"$dir/data/postgresql.conf" <<EOF
# pg_cluster.sh: a throw-away cluster on loopback
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = ${PG_CLUSTER_SHARED_BUFFERS:-128MB}
fsync = $fsync
full_page_writes = $fsync
max_wal_size = 4GB
EOF
  local port
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 120 start >/dev/null 2>&1; then
      echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$dir/dsn"
      echo "$port" >"$dir/port"
      echo "pg_cluster.sh: PostgreSQL running in $dir on 127.0.0.1:$port"
      return 0
    fi
    # Taken meanwhile (could not bind): another port. Anything else: give up with the log.
    if ! grep -q "could not bind\|Address already in use" "$dir/server.log" 2>/dev/null; then break; fi
    echo "pg_cluster.sh: port $port taken (attempt $attempt), trying another" >&2
  done
  cat "$dir/server.log" >&2 2>/dev/null || true
  echo "pg_cluster.sh: the server did not start in $dir" >&2
  stop
  exit 1
}

case "$cmd" in
  start) start ;;
  stop)
    stop
    echo "pg_cluster.sh: stopped and removed $dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
