#!/usr/bin/env bash
# The test command: installs what the tests need (Python packages, PostgreSQL, the Telegram
# emulator from npm), starts PostgreSQL, and runs the whole suite on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js for the Telegram emulator..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
(cd tests/support/telegram_emulator && npm ci --no-audit --no-fund --silent)
PG_URL="$(scripts/postgres.sh | tail -n 1)"
exec .venv/bin/python -m pytest --postgres "$PG_URL" "$@"
