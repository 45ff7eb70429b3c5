#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install core, every plugin under plugins/ and, with --test, the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
core="."
packages=()
if [ "${1:-}" = "--test" ]; then
  core=".[test]"
  packages+=(-e tests/testprovider)
fi
for plugin in plugins/*/pyproject.toml; do
  [ -e "$plugin" ] && packages+=(-e "$(dirname "$plugin")")
done
.venv/bin/python -m pip install -q -e "$core" "${packages[@]}"
