#!/usr/bin/env bash
# Start the local PostgreSQL cluster the tests need, if it is not already accepting connections.
set -euo pipefail
host="${PGHOST:-127.0.0.1}"
port="${PGPORT:-5432}"
if pg_isready -q -h "$host" -p "$port"; then
  exit 0
fi
if [ -d /etc/postgresql ]; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "PostgreSQL is down; starting cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h "$host" -p "$port" && exit 0
  sleep 1
done
echo "PostgreSQL is not reachable on $host:$port" >&2
exit 1
