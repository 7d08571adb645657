#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 and lets the user
# "postgres" in without a password (trust auth), which is what the test
# settings expect.
#
#   - server answering already: only checks, takes well under a second;
#   - installed but stopped:    starts the cluster listening on port 5432;
#   - not installed at all:     installs Debian's "postgresql", switches the
#                               loopback host lines of *that new* cluster's
#                               pg_hba.conf to trust, and starts it.
#
# Needs root for the install/start paths. Safe to run any number of times.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
WAIT_SECONDS=${ENSURE_POSTGRES_WAIT:-30}

NAME=ensure-postgres
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$HOST" -p "$PORT"; }

# "VERSION NAME" of the cluster configured for $PORT, else of the newest one.
find_cluster() {
    local c
    c=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p { print $1, $2; exit }')
    if [ -z "$c" ]; then
        c=$(pg_lsclusters -h 2>/dev/null | sort -V | awk 'END { if (NR) print $1, $2 }')
    fi
    printf '%s' "$c"
}

take_lock

installed_here=0

if ready; then
    log "server already answering on $HOST:$PORT"
else
    [ "$(id -u)" -eq 0 ] || die "no server on $HOST:$PORT and not root, cannot start or install one"

    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls -A /etc/postgresql 2>/dev/null)" ]; then
        log "PostgreSQL not installed; installing Debian package postgresql"
        apt_install postgresql
        installed_here=1
        # Normally the package creates "main"; create_main_cluster=false in
        # postgresql-common would skip that.
        if [ -z "$(find_cluster)" ]; then
            ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
            quiet pg_createcluster --port "$PORT" "$ver" main
        fi
    fi

    cluster=$(find_cluster)
    [ -n "$cluster" ] || die "PostgreSQL is installed but has no cluster (see pg_lsclusters)"
    read -r ver name <<<"$cluster"

    if [ "$installed_here" -eq 1 ]; then
        # Debian defaults loopback TCP logins to scram-sha-256; the tests log in
        # as "postgres" with no password. Only done for a cluster we just
        # created, never to a server someone else configured.
        hba=/etc/postgresql/$ver/$name/pg_hba.conf
        sed -i -E 's#^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' "$hba"
        grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba" \
            || printf 'host    all             all             127.0.0.1/32            trust\n' >>"$hba"
        log "set trust auth for loopback TCP in $hba"
    fi

    # pg_ctlcluster exits non-zero if the cluster is already up (it may be up
    # but listening elsewhere, or still starting), so only start a stopped one.
    if pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n && $4 ~ /online/ { f = 1 } END { exit !f }'; then
        if [ "$installed_here" -eq 1 ]; then
            # The package may have started it already, with the old pg_hba.conf.
            quiet pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
        fi
        log "cluster $ver/$name is up but not answering yet on $HOST:$PORT; waiting"
    else
        quiet pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
        log "started cluster $ver/$name"
    fi

    deadline=$((SECONDS + WAIT_SECONDS))
    until ready; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "/var/log/postgresql/postgresql-$ver-$name.log" >&2 2>/dev/null || true
            die "PostgreSQL did not answer on $HOST:$PORT within ${WAIT_SECONDS}s (cluster $ver/$name)"
        fi
        sleep 0.5
    done
fi

# -w: never prompt; fails at once if the server wants a password.
if ! version=$(psql -w -X -q -At -h "$HOST" -p "$PORT" -U postgres -d postgres -c 'show server_version' 2>&1); then
    die "cannot log in as postgres on $HOST:$PORT without a password: $version
(the tests need 'host all all 127.0.0.1/32 trust' in pg_hba.conf)"
fi
log "PostgreSQL $version ready on $HOST:$PORT (user postgres, trust auth)"
