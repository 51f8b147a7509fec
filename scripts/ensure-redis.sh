#!/usr/bin/env bash
# Start the local Redis the Celery tests use as broker and result backend (127.0.0.1:6379),
# installing Debian's package first if it is missing.
set -euo pipefail
host="${REDIS_HOST:-127.0.0.1}"
port="${REDIS_PORT:-6379}"
answers() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = "PONG" ]; }
if answers; then
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Redis is missing: run 'apt-get install redis-server' as root (the Celery tests need it)" >&2
    exit 1
  fi
  echo "Redis is missing; installing Debian's package" >&2
  apt-get install -y -q redis-server >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
fi
echo "Redis is down; starting it on $host:$port" >&2
# No persistence: the tests' broker state is throw-away.
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no
for _ in $(seq 1 30); do
  answers && exit 0
  sleep 1
done
echo "Redis is not reachable on $host:$port" >&2
exit 1
