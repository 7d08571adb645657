# Shared helpers of the ensure-*.sh scripts. Source it after setting NAME:
#     NAME=ensure-docker; . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() { printf '%s: ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

# Run a noisy command with its output kept aside; show it only on failure.
quiet() {
    local out
    out=$(mktemp)
    # 9>&-: the lock must not leak into anything that outlives this script.
    if ! "$@" >"$out" 2>&1 9>&-; then
        tail -n 40 "$out" >&2
        rm -f "$out"
        die "command failed: $*"
    fi
    rm -f "$out"
}

# Install Debian packages, waiting for a dpkg lock held by another apt run
# instead of failing.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get -o DPkg::Lock::Timeout=300 update -qq
    quiet apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}

# One run at a time: make targets may call a script concurrently, and two
# runs racing to install or start the same service would trip over each
# other. (Read-only fd: flock does not need write access, so a non-root
# caller can still take a lock file that root created.)
take_lock() {
    local lock=/var/lock/container-manager-$NAME.lock
    [ -d /var/lock ] || lock=/tmp/container-manager-$NAME.lock  # /run/lock not set up
    [ -e "$lock" ] || : >"$lock"
    exec 9<"$lock"
    if ! flock -n 9; then
        log "another $NAME run is in progress; waiting for it"
        flock -w 600 9 || die "timed out waiting for the other $NAME run"
    fi
}
