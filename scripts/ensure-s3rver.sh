#!/usr/bin/env bash
# Install the S3 server the tests run beside moto (s3rver: it checks SigV4 signatures, their
# expiry and per-bucket CORS) into .cache/s3rver, from the pinned package-lock.json, if it is not
# there already. Safe to run from several test workers at once (flock). Needs node 20+ and npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="$root/photo_pipeline_tests/s3rver"
cache="$root/.cache/s3rver"
stamp="$cache/node_modules/.installed-from"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are missing: install Node.js 20 or later (the S3 signature tests run s3rver on it)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "node $(node --version) is too old: s3rver needs Node.js 20 or later" >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache.lock"
flock 9
wanted="$(cat "$source_dir/package.json" "$source_dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
echo "installing s3rver (pinned in photo_pipeline_tests/s3rver/package-lock.json) into .cache/s3rver" >&2
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$cache/"
(cd "$cache" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
echo "$wanted" >"$stamp"
