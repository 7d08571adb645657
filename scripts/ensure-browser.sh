#!/usr/bin/env bash
# Make sure Debian's chromium is installed at /usr/bin/chromium for the
# admin's browser tests (driven by Playwright for Python; Playwright's own
# browser download does not work on these machines, so it is never used).
#
# Quiet when there is nothing to do; safe to run any number of times and
# from several processes at once. Needs root only when it has to install.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

log() { printf 'ensure-browser: %s\n' "$*"; }
die() { printf 'ensure-browser: ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$CHROMIUM" ] && exit 0

# One run at a time: two apt-get runs would fight over dpkg's lock.
lock=/var/lock/container-manager-ensure-browser.lock
[ -d /var/lock ] || lock=/tmp/container-manager-ensure-browser.lock
[ -e "$lock" ] || : >"$lock"
exec 9<"$lock"
flock -w 900 9 || die "timed out waiting for another ensure-browser run"
[ -x "$CHROMIUM" ] && exit 0

[ "$(id -u)" -eq 0 ] || die "$CHROMIUM is missing; run as root to install Debian's chromium"

log "installing chromium with apt-get"
out=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } \
    >"$out" 2>&1 9>&-; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "apt-get could not install chromium"
fi
rm -f "$out"
[ -x "$CHROMIUM" ] || die "chromium was installed but $CHROMIUM does not exist"
log "chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}') installed"
