#!/usr/bin/env bash
# Start the local PostgreSQL cluster the tests need, if it is not already accepting connections,
# and give it room for the suite's four xdist workers (max_connections, below).
set -euo pipefail
host="${PGHOST:-127.0.0.1}"
port="${PGPORT:-5432}"
user="${PGUSER:-postgres}"
# Each worker runs daemons, code servers, run workers and API servers with pools of their own at
# the same time: peaks of about 100 connections were seen with 4 workers, PostgreSQL's default limit.
min_connections="${PHOTO_TEST_PG_MAX_CONNECTIONS:-300}"

cluster_version() {
  ls /etc/postgresql | sort -V | tail -n 1
}

wait_until_ready() {
  for _ in $(seq 1 30); do
    pg_isready -q -h "$host" -p "$port" && return 0
    sleep 1
  done
  echo "PostgreSQL is not reachable on $host:$port" >&2
  return 1
}

if ! pg_isready -q -h "$host" -p "$port"; then
  if [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down; starting cluster $(cluster_version)/main" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(cluster_version)" main start
  fi
  wait_until_ready
fi

current="$(psql -h "$host" -p "$port" -U "$user" -d postgres -Atc 'SHOW max_connections')"
if [ "$current" -lt "$min_connections" ]; then
  if [ ! -d /etc/postgresql ]; then
    echo "PostgreSQL allows $current connections; the test suite needs $min_connections (set max_connections and restart it)" >&2
    exit 1
  fi
  # Only ever raised, never lowered; the setting takes effect on a restart only.
  echo "PostgreSQL allows $current connections; raising max_connections to $min_connections and restarting cluster $(cluster_version)/main" >&2
  psql -h "$host" -p "$port" -U "$user" -d postgres -qc "ALTER SYSTEM SET max_connections = $min_connections"
  pg_ctlcluster --skip-systemctl-redirect "$(cluster_version)" main restart
  wait_until_ready
fi
