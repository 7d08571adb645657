#!/usr/bin/env bash
# What `make chaos` runs: the chaos suite of docs/chaos.md.
#
# Installs what the suite needs and is missing (Debian's docker.io for
# dockerd, busybox-static for the test image, postgresql for initdb), then
# runs the driver, which starts its own PostgreSQL cluster (127.0.0.1:55432)
# and its own dockerd (a unix socket in its work directory), never the
# machine's shared ones, and stops both by PID at the end. Arguments are
# passed on:
#
#     make chaos                                   # 400 jobs, 4 workers, both executors
#     make chaos ARGS="--jobs 60 --workers 2 --seed 7"
#     bash scripts/chaos.sh --executor process --jobs 100
#
# Exit status: 0 every invariant is 0; 1 some invariant is not; 2 the run
# itself failed (set-up, the duration limit, Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

NAME=chaos
# shellcheck source=lib.sh
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || die "needs root (it starts a dockerd of its own)"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    missing+=(busybox-static)
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# The driver's own services only: nothing of the caller's engine or database.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DATABASE_URL
exec "$VENV/bin/python" -m chaos "$@"
