#!/usr/bin/env bash
# The whole test suite: install (pinned), lint, type-check, then pytest. Installs Debian's
# Chromium for the browser tests when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the browser tests"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

ruff check .
ruff format --check .
mypy
pytest "$@"
