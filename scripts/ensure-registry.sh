#!/usr/bin/env bash
# Make sure a local Docker registry answers on http://127.0.0.1:5000 and holds
# the test image, for the pull/push tests:
#     127.0.0.1:5000/container-manager-test/busybox:latest
# and that a second one, with htpasswd authentication, answers on
# http://127.0.0.1:5001 (user cm-test, password cm-test-secret), for the
# tests of registry credentials, and a third, read-only (the distribution's
# maintenance mode: it serves pulls and refuses every upload), answers on
# http://127.0.0.1:5002, for the test of a push the registry refuses.
#
#   - runs scripts/ensure-docker.sh first if the engine or the image is missing;
#   - installs Debian's docker-registry (and apache2-utils, for htpasswd) if absent;
#   - if nothing answers on 127.0.0.1:5000, starts the registry in the
#     background (it stays up) with its own config and storage under
#     $STATE_DIR/registry, bound to loopback only;
#   - the same for 127.0.0.1:5001 under $STATE_DIR/registry-auth, with a
#     bcrypt htpasswd file;
#   - the same for 127.0.0.1:5002 under $STATE_DIR/registry-readonly, with
#     storage: maintenance: readonly: enabled: true (empty storage: it only
#     has to refuse);
#   - pushes the test image when the registry lacks it (or holds an older
#     build), then checks a pull of it works.
#
# Plain HTTP is fine: the engine treats registries on 127.0.0.0/8 as
# insecure-allowed without any daemon configuration.
# Needs root for the install/start paths. Safe to run any number of times.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=/var/lib/container-manager-test
REG_DIR=$STATE_DIR/registry
REG_LOG=/var/log/container-manager-registry.log
REG_ADDR=127.0.0.1:5000
AUTH_DIR=$STATE_DIR/registry-auth
AUTH_LOG=/var/log/container-manager-registry-auth.log
AUTH_ADDR=127.0.0.1:5001
AUTH_USER=cm-test
AUTH_PASSWORD=cm-test-secret
RO_DIR=$STATE_DIR/registry-readonly
RO_LOG=/var/log/container-manager-registry-readonly.log
RO_ADDR=127.0.0.1:5002
SOCK=unix:///var/run/docker.sock
TEST_IMAGE=container-manager-test/busybox:latest
REMOTE_IMAGE=$REG_ADDR/$TEST_IMAGE
WAIT_SECONDS=${ENSURE_REGISTRY_WAIT:-30}

NAME=ensure-registry
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock

unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
dk() { docker -H "$SOCK" "$@"; }

# Alive and not a zombie (kill -0 succeeds on a zombie).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
registry_answers() { curl -fsS -m 2 -o /dev/null "http://$REG_ADDR/v2/" 2>/dev/null; }
# The registry with authentication answers 401 to anyone else, 200 to the test user.
auth_registry_answers() {
    curl -fsS -m 2 -o /dev/null -u "$AUTH_USER:$AUTH_PASSWORD" "http://$AUTH_ADDR/v2/" 2>/dev/null
}
readonly_registry_answers() { curl -fsS -m 2 -o /dev/null "http://$RO_ADDR/v2/" 2>/dev/null; }
# The read-only registry refuses to start an upload: 405 (Allow: GET, HEAD).
# (A writable one would answer 202 and start one, left to its upload purge.)
readonly_registry_refuses_uploads() {
    [ "$(curl -sS -m 2 -o /dev/null -w '%{http_code}' -X POST \
        "http://$RO_ADDR/v2/container-manager-test/readonly-probe/blobs/uploads/" 2>/dev/null)" = 405 ]
}
readonly_registry_ready() { readonly_registry_answers && readonly_registry_refuses_uploads; }
# True when the registry's manifest for the tag points at the same image
# (its config digest is the local image ID), so a rebuilt image is re-pushed.
image_in_registry() {
    local id manifest
    id=$(dk image inspect --format '{{.Id}}' "$TEST_IMAGE") || return 1
    manifest=$(curl -fsS -m 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REG_ADDR/v2/${TEST_IMAGE%:*}/manifests/${TEST_IMAGE##*:}" 2>/dev/null) || return 1
    [[ $manifest == *"$id"* ]]
}

# --- engine and test image ---------------------------------------------------
if ! command -v docker >/dev/null 2>&1 || ! dk image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    bash "$HERE/ensure-docker.sh" 9>&-
fi

# --- packages ---------------------------------------------------------------
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root, cannot install"
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# --- registries -------------------------------------------------------------
# start_registry ADDR DIR LOG READY_CHECK [AUTH_YAML [STORAGE_YAML]]: start
# docker-registry on ADDR (loopback) in the background, with its config and
# storage under DIR, and wait until READY_CHECK succeeds. STORAGE_YAML goes
# under storage: (indented by two spaces).
start_registry() {
    local addr=$1 dir=$2 reg_log=$3 ready=$4 auth_yaml=${5:-} storage_yaml=${6:-}
    local port=${addr##*:} started_pid deadline problem
    [ "$(id -u)" -eq 0 ] || die "no registry on $addr and not root, cannot start one"
    # Port taken by something that is not a registry: say so rather than
    # waiting for a start that can only fail with "address already in use".
    if command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :$port" | grep -q .; then
        die "port $port is in use but no registry answers on http://$addr/v2/: $(ss -Hltnp "sport = :$port" | head -n 1)"
    fi
    mkdir -p "$dir/data"
    # Own config rather than the package's /etc/docker/registry/config.yml,
    # which listens on all interfaces. Deletion on, for cleanup in tests.
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
$storage_yaml
http:
  addr: $addr
  # Fixed only to silence the "no HTTP secret" warning; one instance, loopback.
  secret: container-manager-test
$auth_yaml
EOF
    printf '\n=== %s ensure-registry starting docker-registry ===\n' "$(date -Is)" >>"$reg_log"
    # setsid: own session, so the caller's job control does not stop it.
    setsid nohup docker-registry serve "$dir/config.yml" >>"$reg_log" 2>&1 </dev/null 9>&- &
    started_pid=$!
    echo "$started_pid" >"$dir/registry.pid"
    log "started docker-registry on $addr (pid $started_pid), log in $reg_log"
    deadline=$((SECONDS + WAIT_SECONDS))
    until "$ready"; do
        problem=
        if ! alive "$started_pid"; then
            problem="docker-registry on $addr exited during start-up"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            problem="registry did not answer on http://$addr/v2/ within ${WAIT_SECONDS}s"
        fi
        if [ -n "$problem" ]; then
            echo "--- last lines of $reg_log ---" >&2
            tail -n 20 "$reg_log" >&2 || true
            die "$problem"
        fi
        sleep 0.3
    done
}

if registry_answers; then
    log "registry already answering on $REG_ADDR"
else
    start_registry "$REG_ADDR" "$REG_DIR" "$REG_LOG" registry_answers
fi

if auth_registry_answers; then
    log "registry with authentication already answering on $AUTH_ADDR"
else
    [ "$(id -u)" -eq 0 ] || die "no registry on $AUTH_ADDR and not root, cannot start one"
    mkdir -p "$AUTH_DIR"
    # bcrypt (-B): the only hash docker-registry's htpasswd backend accepts.
    quiet htpasswd -Bbc "$AUTH_DIR/htpasswd" "$AUTH_USER" "$AUTH_PASSWORD"
    start_registry "$AUTH_ADDR" "$AUTH_DIR" "$AUTH_LOG" auth_registry_answers "auth:
  htpasswd:
    realm: container-manager-test
    path: $AUTH_DIR/htpasswd"
fi

if readonly_registry_answers; then
    readonly_registry_refuses_uploads ||
        die "a registry answers on http://$RO_ADDR/v2/ but accepts uploads: it is not the read-only one"
    log "read-only registry already answering on $RO_ADDR"
else
    start_registry "$RO_ADDR" "$RO_DIR" "$RO_LOG" readonly_registry_ready "" "  maintenance:
    readonly:
      enabled: true"
fi

# --- test image in the registry --------------------------------------------
if image_in_registry; then
    log "image $REMOTE_IMAGE present"
else
    quiet dk tag "$TEST_IMAGE" "$REMOTE_IMAGE"
    quiet dk push "$REMOTE_IMAGE"
    # Prove the round trip: drop the local tag, pull it back over plain HTTP.
    quiet dk rmi "$REMOTE_IMAGE"
    quiet dk pull "$REMOTE_IMAGE"
    dk image inspect "$REMOTE_IMAGE" >/dev/null 2>&1 || die "pull of $REMOTE_IMAGE did not produce an image"
    log "pushed $REMOTE_IMAGE and pulled it back"
fi

log "registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') ready on http://$REG_ADDR, with authentication on http://$AUTH_ADDR, read-only on http://$RO_ADDR"
