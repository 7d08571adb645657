#!/usr/bin/env bash
# Creates the virtual environment, installing Debian's venv support when the
# system Python lacks it (a bare Debian python3 has no ensurepip).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "ensure-python: installing python3 from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    echo "ensure-python: installing python3-venv from Debian"
    rm -rf "$venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
fi
echo "ensure-python: $("$venv/bin/python" --version)"
