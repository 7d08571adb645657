#!/usr/bin/env bash
# `make demo`: queue a handful of jobs in a fresh SQLite database (demo/db.sqlite3),
# run a worker until they are done, and print what happened.
#
# The Makefile's venv step has installed everything. Jobs run on the local
# Docker engine when `docker version` answers (and the demo image exists),
# else as local processes. Nothing else is needed: no PostgreSQL, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

# The demo always uses its own SQLite file, whatever the shell exports.
unset DATABASE_URL
export DJANGO_SETTINGS_MODULE=demo.settings
# The worker prints what it does; keep warnings (the expected launch failure) out.
export CONTAINER_MANAGER_LOG_LEVEL=${CONTAINER_MANAGER_LOG_LEVEL:-ERROR}

rm -f demo/db.sqlite3 demo/db.sqlite3-journal
"$PY" manage.py migrate --noinput -v 0
exec "$PY" demo/run_demo.py
