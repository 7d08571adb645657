#!/usr/bin/env bash
# Make sure a Docker engine answers on unix:///var/run/docker.sock and that
# the test image exists; installs and starts what is missing.
#
#   - installs Debian's docker.io (plus busybox-static and openssl) if absent;
#   - makes a throwaway CA, server and client certificate once, in $TLS_DIR;
#   - if no engine answers, starts dockerd in the background (it stays up),
#     listening on the unix socket and, with TLS, on tcp://127.0.0.1:2376 for
#     the remote-engine tests:
#         DOCKER_HOST=tcp://127.0.0.1:2376 DOCKER_TLS_VERIFY=1 \
#         DOCKER_CERT_PATH=/var/lib/container-manager-test/tls
#   - builds the test image from the host's static busybox (no registry).
#
# The default image of the test suite is the one built here:
#     container-manager-test/busybox:latest
#
# An engine that is already running is never restarted or killed, even if it
# was started some other way; the TLS listener is then only reported on.
# Needs root for the install/start paths. Safe to run any number of times.
set -euo pipefail

STATE_DIR=/var/lib/container-manager-test
TLS_DIR=$STATE_DIR/tls
DOCKERD_LOG=/var/log/container-manager-dockerd.log
SOCK=unix:///var/run/docker.sock
TLS_HOST=tcp://127.0.0.1:2376
TEST_IMAGE=container-manager-test/busybox:latest
# Bump when the image recipe below changes, so existing images get rebuilt.
IMAGE_REVISION=1
WAIT_SECONDS=${ENSURE_DOCKER_WAIT:-60}

NAME=ensure-docker
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock

# The caller's DOCKER_HOST / context must not redirect what this script checks.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
dk() { docker -H "$SOCK" "$@"; }
dk_tls() {
    docker -H "$TLS_HOST" --tlsverify --tlscacert "$TLS_DIR/ca.pem" \
        --tlscert "$TLS_DIR/cert.pem" --tlskey "$TLS_DIR/key.pem" "$@"
}
engine_answers() { dk version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# --- packages ---------------------------------------------------------------
# /usr/local/bin/docker may be a client only; the daemon is what matters.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
# The image is built from /bin/busybox, so it must be the static build (a
# dynamic one, from package "busybox", would find no libc in the image).
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    missing+=(busybox-static)
fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root, cannot install"
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi
command -v docker >/dev/null 2>&1 || die "no docker client on PATH after install"

# --- TLS material for tcp://127.0.0.1:2376 ----------------------------------
make_certs() {
    local tmp
    tmp=$(mktemp -d)
    # EC keys: instant to generate, accepted by Go (dockerd) and OpenSSL (Python).
    cat >"$tmp/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = container-manager-test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
    printf '%s\n' 'basicConstraints = CA:FALSE' 'keyUsage = critical,digitalSignature' \
        'extendedKeyUsage = serverAuth' 'subjectAltName = IP:127.0.0.1,DNS:localhost' >"$tmp/server.ext"
    printf '%s\n' 'basicConstraints = CA:FALSE' 'keyUsage = critical,digitalSignature' \
        'extendedKeyUsage = clientAuth' >"$tmp/client.ext"
    (
        cd "$tmp"
        umask 077
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
        openssl req -x509 -new -config ca.cnf -extensions v3_ca -key ca-key.pem \
            -sha256 -days 3650 -out ca.pem
        for who in server client; do
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$who-key.pem"
            openssl req -new -key "$who-key.pem" -subj "/CN=container-manager-test $who" -out "$who.csr"
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
                -sha256 -days 3650 -extfile "$who.ext" -out "$who-cert.pem"
        done
    ) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; die "certificate generation failed"; }
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    # Names follow the Docker client's DOCKER_CERT_PATH convention; the CA key
    # is not kept, nothing else is ever signed with it.
    install -m 644 "$tmp/ca.pem" "$TLS_DIR/ca.pem"
    install -m 644 "$tmp/server-cert.pem" "$TLS_DIR/server-cert.pem"
    install -m 600 "$tmp/server-key.pem" "$TLS_DIR/server-key.pem"
    install -m 644 "$tmp/client-cert.pem" "$TLS_DIR/cert.pem"
    install -m 600 "$tmp/client-key.pem" "$TLS_DIR/key.pem"
    rm -rf "$tmp"
}

have_certs=1
for f in ca.pem server-cert.pem server-key.pem cert.pem key.pem; do
    [ -s "$TLS_DIR/$f" ] || have_certs=0
done
if [ "$have_certs" -eq 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "no TLS material in $TLS_DIR and not root"
    make_certs
    log "created test CA and certificates in $TLS_DIR"
fi

# --- engine -----------------------------------------------------------------
# Alive and not a zombie: PID 1 on these machines is slow to reap orphans,
# and kill -0 succeeds on a zombie.
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# The pid in pidfile $1 if that process is alive and is named $2.
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
        printf '%s' "$pid"
}

if engine_answers; then
    log "engine already answering on $SOCK"
else
    [ "$(id -u)" -eq 0 ] || die "no engine on $SOCK and not root, cannot start one"
    started_pid=
    if pid=$(live_pid /var/run/docker.pid dockerd); then
        # Running but not answering yet (still starting): don't start a second.
        log "dockerd (pid $pid) is running but not answering yet; waiting"
    else
        # --bridge=none/--iptables=false/--ip6tables=false: the engine leaves
        # the host's network alone (no docker0, no netfilter rules). Containers
        # then get loopback only, even without --network none; the tests need
        # no more.
        # --tlsverify applies to every tcp:// host, so there is one TCP
        # listener, with TLS; the unix socket is unaffected.
        # A dockerd that died uncleanly leaves pidfiles behind (/run is not a
        # tmpfs here, so they even outlive a reboot). dockerd refuses to start
        # while its pidfile names any existing process, zombies included, and
        # waits in vain on a containerd pidfile naming a zombie.
        for entry in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
            file=${entry%:*}
            if [ -e "$file" ] && ! live_pid "$file" "${entry##*:}" >/dev/null; then
                rm -f "$file"
                log "removed stale $file"
            fi
        done
        mkdir -p "$(dirname "$DOCKERD_LOG")"
        printf '\n=== %s ensure-docker starting dockerd ===\n' "$(date -Is)" >>"$DOCKERD_LOG"
        # setsid: own session, so the caller's job control (make, CI, Ctrl-C)
        # does not take the daemon down with it; it is meant to stay up.
        setsid nohup dockerd \
            --bridge=none --iptables=false --ip6tables=false \
            -H "$SOCK" -H "$TLS_HOST" \
            --tlsverify --tlscacert "$TLS_DIR/ca.pem" \
            --tlscert "$TLS_DIR/server-cert.pem" --tlskey "$TLS_DIR/server-key.pem" \
            >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
        started_pid=$!
        log "started dockerd (pid $started_pid), log in $DOCKERD_LOG"
    fi
    deadline=$((SECONDS + WAIT_SECONDS))
    until engine_answers; do
        problem=
        if [ -n "$started_pid" ] && ! alive "$started_pid"; then
            problem="dockerd exited during start-up"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            problem="Docker engine did not answer on $SOCK within ${WAIT_SECONDS}s"
        fi
        if [ -n "$problem" ]; then
            echo "--- last lines of $DOCKERD_LOG ---" >&2
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "$problem"
        fi
        sleep 0.5
    done
fi

if dk_tls version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    log "TLS endpoint $TLS_HOST answers (certs in $TLS_DIR)"
else
    # Not fatal: an engine started some other way has no TLS listener, and
    # only the remote-engine tests need it.
    log "WARNING: TLS endpoint $TLS_HOST does not answer with the certs in $TLS_DIR" \
        "(engine not started by this script?)"
fi

# --- test image -------------------------------------------------------------
image_revision() {
    dk image inspect --format '{{index .Config.Labels "container-manager-test.revision"}}' \
        "$TEST_IMAGE" 2>/dev/null
}

if [ "$(image_revision || true)" = "$IMAGE_REVISION" ]; then
    log "image $TEST_IMAGE present"
else
    # A root filesystem holding only a static busybox, every applet linked to
    # it, plus the few files programs expect; imported as a single layer.
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/usr"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    ln -s bin "$root/sbin"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    if ! out=$(tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
        dk import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' \
            -c "LABEL container-manager-test.revision=$IMAGE_REVISION" - "$TEST_IMAGE" 2>&1); then
        rm -rf "$root"
        die "docker import of $TEST_IMAGE failed: $out"
    fi
    rm -rf "$root"
    # Fail here, with the engine's own words, if containers cannot run at all.
    if ! out=$(dk run --rm --network none "$TEST_IMAGE" echo ok 2>&1) || [ "$out" != ok ]; then
        die "a container from $TEST_IMAGE does not run: $out"
    fi
    log "built image $TEST_IMAGE ($(/bin/busybox | head -n 1 | cut -d' ' -f1-2))"
fi

log "Docker engine $(dk version --format '{{.Server.Version}}') ready on $SOCK"
