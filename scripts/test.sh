#!/usr/bin/env bash
# The whole test suite: lint, then the tests on SQLite, then on PostgreSQL
# with the real Docker engine and browser, on Python 3.11 with Django 5.2
# and again on Python 3.12 with Django 6.0. Called by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PATH="$PWD/$VENV/bin:$PATH"
export PGUSER=postgres
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/container_manager}
VENV_DJANGO6=${VENV_DJANGO6:-.venv-django6}

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

echo "== Django 6.0 on Python 3.12"
if ! python312=$(bash scripts/find-python.sh 3.12); then
  if [ -n "${CI:-}" ]; then
    echo "Python 3.12 is required under CI (for Django 6.0) but was not found" >&2
    exit 1
  fi
  echo "Python 3.12 not found: the Django 6.0 run is skipped (it is required under CI)"
  exit 0
fi
bash scripts/ensure-python.sh "$python312" "$VENV_DJANGO6"
if [ ! -f "$VENV_DJANGO6/.installed" ] || [ pyproject.toml -nt "$VENV_DJANGO6/.installed" ]; then
  "$VENV_DJANGO6/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]' 'Django>=6.0,<6.1'
  touch "$VENV_DJANGO6/.installed"
fi
"$VENV_DJANGO6/bin/python" -c "import django, sys; print('django', django.get_version(), 'on python', sys.version.split()[0])"
echo "== Django 6.0: tests on SQLite"
DATABASE_URL="sqlite:///:memory:" "$VENV_DJANGO6/bin/pytest" -m "not postgres and not docker and not browser" -p no:cacheprovider "$@"
echo "== Django 6.0: tests on PostgreSQL, with every part (the 'once' tests ran above)"
# The tests marked `once` (tests/conftest.py: real worker processes, fault
# injection, wheel builds) do not depend on Django's version; they ran in the
# first pass, and are left out here to keep the whole suite short.
DATABASE_URL="$PG_URL" "$VENV_DJANGO6/bin/pytest" -m "not once" -p no:cacheprovider "$@"
