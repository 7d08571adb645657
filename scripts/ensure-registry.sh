#!/usr/bin/env bash
# Make sure a local Docker registry answers on http://127.0.0.1:5000 and holds
# the test image, for the pull/push tests:
#     127.0.0.1:5000/container-manager-test/busybox:latest
#
#   - runs scripts/ensure-docker.sh first if the engine or the image is missing;
#   - installs Debian's docker-registry if absent;
#   - if nothing answers on 127.0.0.1:5000, starts the registry in the
#     background (it stays up) with its own config and storage under
#     $STATE_DIR/registry, bound to loopback only;
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
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root, cannot install"
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# --- registry ---------------------------------------------------------------
if registry_answers; then
    log "registry already answering on $REG_ADDR"
else
    [ "$(id -u)" -eq 0 ] || die "no registry on $REG_ADDR and not root, cannot start one"
    # Port taken by something that is not a registry: say so rather than
    # waiting for a start that can only fail with "address already in use".
    if command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :5000" | grep -q .; then
        die "port 5000 is in use but no registry answers on http://$REG_ADDR/v2/: $(ss -Hltnp 'sport = :5000' | head -n 1)"
    fi
    mkdir -p "$REG_DIR/data"
    # Own config rather than the package's /etc/docker/registry/config.yml,
    # which listens on all interfaces. Deletion on, for cleanup in tests.
    cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: $REG_ADDR
  # Fixed only to silence the "no HTTP secret" warning; one instance, loopback.
  secret: container-manager-test
EOF
    printf '\n=== %s ensure-registry starting docker-registry ===\n' "$(date -Is)" >>"$REG_LOG"
    # setsid: own session, so the caller's job control does not stop it.
    setsid nohup docker-registry serve "$REG_DIR/config.yml" >>"$REG_LOG" 2>&1 </dev/null 9>&- &
    started_pid=$!
    echo "$started_pid" >"$REG_DIR/registry.pid"
    log "started docker-registry (pid $started_pid), log in $REG_LOG"
    deadline=$((SECONDS + WAIT_SECONDS))
    until registry_answers; do
        problem=
        if ! alive "$started_pid"; then
            problem="docker-registry exited during start-up"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            problem="registry did not answer on http://$REG_ADDR/v2/ within ${WAIT_SECONDS}s"
        fi
        if [ -n "$problem" ]; then
            echo "--- last lines of $REG_LOG ---" >&2
            tail -n 20 "$REG_LOG" >&2 || true
            die "$problem"
        fi
        sleep 0.3
    done
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

log "registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') ready on http://$REG_ADDR"
