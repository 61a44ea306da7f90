#!/usr/bin/env bash
# Makes a Python virtual environment with the Postgres drivers the driver test uses
# (psycopg 3, psycopg2, asyncpg) and prints its python. Idempotent: a second run
# only checks the imports.
set -euo pipefail
VENV="${CAIRN_PYDRIVERS:-$HOME/.cache/cairn/pydrivers}"
if ! "$VENV/bin/python" -c "import psycopg, psycopg2, asyncpg" >/dev/null 2>&1; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "psycopg[binary]==3.2.*" "psycopg2-binary==2.9.*" "asyncpg==0.30.*" >&2
fi
echo "$VENV/bin/python"
