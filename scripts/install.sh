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
# The dashboard's browser tests (tests/browser) drive Debian's chromium; install it where apt-get can.
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo="sudo -n"; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    $sudo apt-get update -q && $sudo apt-get install -y -q chromium \
      || echo "install.sh: could not install chromium; the browser tests will skip" >&2
  else
    echo "install.sh: not root and no sudo: 'apt-get install chromium' for the browser tests" >&2
  fi
fi
