#!/usr/bin/env bash
# Prints the path of a Python of the version given (e.g. 3.12): on PATH as
# python3.12, or installed by pyenv. Exits 1, printing nothing, when there is none.
set -euo pipefail
version=${1:?usage: find-python.sh 3.12}
candidates=("$(command -v "python$version" 2>/dev/null || true)")
for root in "${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv /opt/pyenv; do
  for found in "$root"/versions/"$version".*/bin/python"$version"; do
    candidates+=("$found")
  done
done
for python in "${candidates[@]}"; do
  # A pyenv shim answers even when the version is not installed: ask it.
  if [ -n "$python" ] && [ -x "$python" ] &&
    "$python" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" 2>/dev/null; then
    echo "$python"
    exit 0
  fi
done
exit 1
