#!/usr/bin/env bash
# The whole test suite: lint, then the tests on SQLite, then on PostgreSQL
# with the real Docker engine and browser. Called by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PATH="$PWD/$VENV/bin:$PATH"
export PGUSER=postgres
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/container_manager}

bash scripts/ensure-postgres.sh
bash scripts/ensure-docker.sh
bash scripts/ensure-browser.sh
bash scripts/ensure-registry.sh

echo "== lint"
ruff check .
ruff format --check .
mypy

echo "== tests on SQLite (no PostgreSQL, Docker or browser parts)"
DATABASE_URL="sqlite:///:memory:" pytest -m "not postgres and not docker and not browser" -p no:cacheprovider "$@"

echo "== tests on PostgreSQL, with every part"
DATABASE_URL="$PG_URL" pytest -p no:cacheprovider "$@"
