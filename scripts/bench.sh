#!/usr/bin/env bash
# What `make bench` runs: the benchmark suite of docs/performance.md.
#
# Installs the benchmark-only extra (the peers: PgQueuer, Procrastinate,
# django-tasks, django-tasks-db) into the venv, makes sure PostgreSQL and the
# Docker engine with the test image are up, then runs bench/run.py, which
# creates and drops its own database (cm_bench). Arguments are passed on:
#
#     make bench                       # the full suite, under 15 minutes
#     bash scripts/bench.sh --quick    # a smoke run, about a minute
#
# A peer that fails to install is reported as "not measured" in the table.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python

log() { printf 'bench: %s\n' "$*"; }

[ -x "$PY" ] || { echo "bench: no venv at $VENV (run: make venv)" >&2; exit 1; }

if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[bench]'; then
    log "WARNING: installing the [bench] extra failed; the peers that are missing will be reported as not measured"
fi

bash scripts/ensure-postgres.sh
if ! bash scripts/ensure-docker.sh; then
    log "WARNING: no Docker engine; the container figures will be reported as not measured"
fi

start=$SECONDS
"$PY" -m bench.run "$@"
log "finished in $((SECONDS - start)) s"
