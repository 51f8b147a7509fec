#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright drives it by path), if it is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: run 'apt-get install chromium' as root (the browser tests need it)" >&2
  exit 1
fi
echo "Chromium is missing; installing Debian's package" >&2
apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
command -v chromium >/dev/null
